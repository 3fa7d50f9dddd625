// What `crucible serve` tells its operator: one log line per request, Prometheus /metrics,
// /v1/models/{id} and the model id a run's checkpoint is served under. A tiny random model;
// every expected count follows from the requests sent (ignore_eos makes each sample exactly
// max_tokens long; the byte tokenizer makes a prompt of k ASCII bytes k tokens).
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "model_util.h"
#include "serve/server.h"
#include "test_util.h"

namespace crucible {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct ServeMetrics : ::testing::Test {
    testutil::TempDir tmp;
    std::unique_ptr<Server> server;
    std::thread runner;
    std::mutex mu;
    std::vector<std::string> log;

    void start(const fs::path& dir, const std::string& name = "") {
        ServerOptions o;
        o.model_dir = dir;
        o.port = 0;
        o.served_model_name = name;
        o.request_log = [this](const std::string& line) {
            std::lock_guard<std::mutex> lock(mu);
            log.push_back(line);
        };
        server = std::make_unique<Server>(o);
        runner = std::thread([this] { server->run(); });
    }
    void TearDown() override {
        if (server) server->stop();
        if (runner.joinable()) runner.join();
    }
    httplib::Result get(const std::string& path) {
        httplib::Client http("127.0.0.1", server->port());
        return http.Get(path.c_str());
    }
    httplib::Result post(const std::string& path, const std::string& body) {
        httplib::Client http("127.0.0.1", server->port());
        http.set_read_timeout(60, 0);
        return http.Post(path.c_str(), body, "application/json");
    }
    // The unlabelled samples of a Prometheus text page.
    static std::map<std::string, double> samples(const std::string& page) {
        std::map<std::string, double> out;
        std::istringstream in(page);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#' || line.find('{') != std::string::npos) continue;
            const size_t sp = line.find(' ');
            out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
        }
        return out;
    }
};

TEST_F(ServeMetrics, MetricsAndLogLinesCountWhatWasServed) {
    testutil::write_byte_model(tmp.path() / "tiny", 128);
    start(tmp.path() / "tiny");
    // Two completions (prompts of 5 and 3 bytes; 2 samples of 7 tokens, 1 of 4), one chat
    // streamed, one refused.
    auto a = post("/v1/completions",
                  R"({"prompt": "hello", "max_tokens": 7, "n": 2, "ignore_eos": true})");
    auto b = post("/v1/completions", R"({"prompt": "abc", "max_tokens": 4, "ignore_eos": true})");
    auto c = post("/v1/chat/completions",
                  R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                      "ignore_eos": true, "stream": true})");
    auto bad = post("/v1/completions", R"({"prompt": "x", "temperature": 9})");
    ASSERT_TRUE(a && b && c && bad);
    ASSERT_EQ(a->status, 200);
    ASSERT_EQ(bad->status, 400);
    // The chat prompt: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" is three
    // specials and "user\n" (5) + "hi" (2) + "\n" (1) + "assistant\n" (10) bytes: 21 tokens.
    const int64_t chat_prompt = 21;

    auto m = get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->status, 200);
    EXPECT_NE(m->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    const auto v = samples(m->body);
    EXPECT_EQ(v.at("crucible_requests_total"), 3);
    EXPECT_EQ(v.at("crucible_requests_answered_total"), 3);
    EXPECT_EQ(v.at("crucible_requests_rejected_total"), 1);
    EXPECT_EQ(v.at("crucible_prompt_tokens_total"), 5 + 3 + chat_prompt);
    EXPECT_EQ(v.at("crucible_completion_tokens_total"), 2 * 7 + 4 + 3);
    EXPECT_EQ(v.at("crucible_queue_length"), 0);
    EXPECT_EQ(v.at("crucible_running_sequences"), 0);
    EXPECT_EQ(v.at("crucible_kv_usage"), 0);  // everything finished and freed
    EXPECT_GT(v.at("crucible_kv_blocks"), 0);
    EXPECT_EQ(v.at("crucible_kv_blocks_free"), v.at("crucible_kv_blocks"));
    EXPECT_GE(v.at("crucible_engine_steps_total"), 7);
    EXPECT_GT(v.at("crucible_request_seconds_total"), 0);
    EXPECT_NE(m->body.find("crucible_model_info{model=\"tiny\",max_model_len=\"128\"} 1"),
              std::string::npos);

    // One log line per request, in the order answered (requests were sent one at a time).
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(log.size(), 4u);
    const std::string id_a = json::parse(a->body)["id"];
    EXPECT_EQ(log[0].rfind(id_a + " completions 200 prompt=5 completion=14 n=2 ", 0), 0u) << log[0];
    EXPECT_NE(log[0].find(" finish=length"), std::string::npos) << log[0];
    EXPECT_NE(log[1].find(" completions 200 prompt=3 completion=4 n=1 "), std::string::npos);
    EXPECT_NE(log[2].find(" chat 200 prompt=21 completion=3 n=1 stream "), std::string::npos)
        << log[2];
    EXPECT_EQ(log[3].rfind("- completions 400 prompt=0 completion=0", 0), 0u) << log[3];
    EXPECT_NE(log[3].find("error=\"temperature: "), std::string::npos) << log[3];
}

TEST_F(ServeMetrics, AClientCannotForgeALogLine) {
    testutil::write_byte_model(tmp.path() / "tiny", 128);
    start(tmp.path() / "tiny");
    // The unknown model's name is quoted in the error: a newline and a quote in it must not
    // start a new line or close the error field.
    auto r = post("/v1/completions",
                  R"({"model": "x\"\ncmpl-1 completions 200 prompt=1\r", "prompt": "a"})");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].find('\n'), std::string::npos) << log[0];
    EXPECT_EQ(log[0].find('\r'), std::string::npos) << log[0];
    EXPECT_NE(log[0].find("'x\\\" cmpl-1 completions 200 prompt=1 '"), std::string::npos) << log[0];
}

TEST_F(ServeMetrics, AModelIsFoundByItsIdAndARunsCheckpointByRunAndStep) {
    const fs::path ckpt = tmp.path() / "rl-math" / "checkpoints" / "step-300";
    testutil::write_byte_model(ckpt, 64);
    start(ckpt);
    EXPECT_EQ(server->model_name(), "rl-math/step-300");
    auto one = get("/v1/models/rl-math/step-300");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->status, 200);
    const json m = json::parse(one->body);
    EXPECT_EQ(m["id"], "rl-math/step-300");
    EXPECT_EQ(m["object"], "model");
    EXPECT_EQ(m["max_model_len"], 64);
    auto other = get("/v1/models/step-300");
    ASSERT_TRUE(other);
    EXPECT_EQ(other->status, 404);
    EXPECT_EQ(json::parse(other->body)["error"]["code"], "model_not_found");
    // Requests name it so.
    auto r =
        post("/v1/completions", R"({"model": "rl-math/step-300", "prompt": "a", "max_tokens": 1})");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(ServeMetrics, AFolderThatIsNotACheckpointIsServedUnderItsName) {
    testutil::write_byte_model(tmp.path() / "my-model" / "", 64);
    start(tmp.path() / "my-model" / "");  // a trailing slash changes nothing
    EXPECT_EQ(server->model_name(), "my-model");
}

}  // namespace
}  // namespace crucible
