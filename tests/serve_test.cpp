// `crucible serve` over real HTTP on 127.0.0.1: our OpenAI client, plain httplib, curl and a
// raw socket against a Server running in-process on an ephemeral port with a tiny random model
// (byte tokenizer, ChatML). Expected outputs come from the reference generator (full
// recompute per token) and the trainer's forward, not from the server's own engine. Queueing
// and disconnects are made deterministic by pausing the engine thread after a given step.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "engine/reference_generate.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "serve/openai_client.h"
#include "serve/server.h"
#include "test_util.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_tokenizer.h"

extern char** environ;

namespace crucible {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kContext = 128;

// A text as a JSON response carries it: invalid UTF-8 (random models emit any byte) replaced.
std::string as_served(const std::string& text) {
    return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace))
        .get<std::string>();
}

// Pauses the engine thread after step `from` (and every later one) until opened.
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    int64_t from = INT64_MAX;
    bool open = false;
    void wait(int64_t step) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return open || step < from; });
    }
    void close_after(int64_t step) {
        std::lock_guard<std::mutex> lock(mu);
        from = step;
        open = false;
    }
    void release() {
        {
            std::lock_guard<std::mutex> lock(mu);
            open = true;
        }
        cv.notify_all();
    }
};

// Polls `cond` (server state changing on other threads) for up to 30 s.
template <typename F>
bool eventually(F cond) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return cond();
}

struct Serve : ::testing::Test {
    testutil::TempDir tmp;
    fs::path dir = tmp.path() / "tiny";
    std::unique_ptr<Model> model = testutil::write_byte_model(dir, kContext, 3);
    Gate gate;
    std::unique_ptr<Server> server;
    std::thread runner;

    void start(ServerOptions o = {}) {
        o.model_dir = dir;
        o.port = 0;
        o.served_model_name = "tiny";
        o.after_step = [this](int64_t step) { gate.wait(step); };
        server = std::make_unique<Server>(o);
        runner = std::thread([this] { server->run(); });
    }
    void TearDown() override {
        gate.release();
        if (server) server->stop();
        if (runner.joinable()) runner.join();
        server.reset();
    }
    std::string base() const { return "http://127.0.0.1:" + std::to_string(server->port()); }
    OpenAIClient client(int concurrency = 16) const {
        ClientOptions o;
        o.base_url = base() + "/v1";
        o.api_key_env = "CRUCIBLE_TEST_NO_SUCH_KEY";
        o.timeout_s = 60;
        o.max_retries = 0;
        o.max_concurrency = concurrency;
        return OpenAIClient(o);
    }
    // POST with plain httplib: (status, parsed body).
    std::pair<int, json> post(const std::string& path, const std::string& body) const {
        httplib::Client http("127.0.0.1", server->port());
        http.set_read_timeout(60, 0);
        auto res = http.Post(path.c_str(), body, "application/json");
        if (!res) return {-1, json()};
        return {res->status, json::parse(res->body, nullptr, false)};
    }
    // The greedy continuation (ids) and its text: stops after the first eos id (256 or 258),
    // which is not text.
    std::pair<std::vector<int32_t>, std::string> greedy(const std::vector<int32_t>& prompt,
                                                        int max_tokens) const {
        std::vector<int32_t> ids = greedy_generate_reference(*model, {prompt}, max_tokens, -1)[0];
        std::vector<int32_t> shown;
        for (size_t i = 0; i < ids.size(); i++) {
            if (ids[i] == ByteTokenizer::kEndOfText || ids[i] == ByteTokenizer::kImEnd) {
                ids.resize(i + 1);
                break;
            }
            shown.push_back(ids[i]);
        }
        return {ids, as_served(BpeTokenizer(dir / "tokenizer.json").decode(shown))};
    }
};

std::string run_curl(const std::string& args) {
    const std::string cmd = "curl -s -S --max-time 60 " + args;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return "";
    std::string out;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    pclose(p);
    return out;
}

// The data payloads of a server-sent event stream, in order.
std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at < body.size()) {
        size_t nl = body.find('\n', at);
        if (nl == std::string::npos) nl = body.size();
        const std::string line = body.substr(at, nl - at);
        if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
        at = nl + 1;
    }
    return out;
}

TEST_F(Serve, GreedyCompletionIsTheReferenceContinuation) {
    start();
    const ByteTokenizer bt;
    const std::string prompt = "2 5 7>17:";
    const auto [ids, text] = greedy(bt.encode(prompt), 12);
    OpenAIClient c = client();
    CompletionRequest r;
    r.model = "tiny";
    r.prompt = prompt;
    r.max_tokens = 12;
    r.temperature = 0;
    const CompletionResult got = c.complete(r);
    ASSERT_EQ(got.choices.size(), 1u);
    EXPECT_EQ(got.choices[0].text, text);
    EXPECT_EQ(got.choices[0].finish_reason, ids.size() < 12 ? "stop" : "length");
    EXPECT_EQ(got.usage.prompt_tokens, (int64_t)prompt.size());
    EXPECT_EQ(got.usage.completion_tokens, (int64_t)ids.size());
    EXPECT_EQ(got.model, "tiny");

    // The same through curl, and with the prompt as token ids (the model name left out).
    const std::string body = run_curl(
        "-H 'Content-Type: application/json' -d '{\"model\": \"tiny\", \"prompt\": \"2 5 "
        "7>17:\", \"max_tokens\": 12, \"temperature\": 0}' " +
        base() + "/v1/completions");
    const json j = json::parse(body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << body;
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["choices"][0]["text"], text);
    EXPECT_EQ(j["usage"]["total_tokens"], (int)(prompt.size() + ids.size()));
    const auto [status, k] =
        post("/v1/completions",
             json{{"prompt", bt.encode(prompt)}, {"max_tokens", 12}, {"temperature", 0}}.dump());
    EXPECT_EQ(status, 200);
    EXPECT_EQ(k["choices"][0]["text"], text);

    EXPECT_EQ(c.models(), std::vector<std::string>{"tiny"});
    EXPECT_EQ(json::parse(run_curl(base() + "/health"))["status"], "ok");
}

TEST_F(Serve, ChatGoesThroughTheModelsChatTemplate) {
    start();
    const std::string rendered =
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n";
    const auto [ids, text] = greedy(ByteTokenizer().encode(rendered), 20);
    ChatRequest r;
    r.model = "tiny";
    r.messages = {{"system", "Be brief."}, {"user", "hi"}};
    r.max_tokens = 20;
    r.temperature = 0;
    const ChatResult got = client().chat(r);
    ASSERT_EQ(got.choices.size(), 1u);
    EXPECT_EQ(got.choices[0].text, text);
    EXPECT_EQ(got.usage.prompt_tokens, (int64_t)ByteTokenizer().encode(rendered).size());
    EXPECT_EQ(got.usage.completion_tokens, (int64_t)ids.size());
}

TEST_F(Serve, StreamedChunksConcatenateToTheWholeText) {
    start();
    OpenAIClient c = client();
    ChatRequest r;
    r.model = "tiny";
    r.messages = {{"user", "tell me"}};
    r.max_tokens = 40;
    r.temperature = 1.0;
    r.seed = 11;
    r.n = 3;
    r.stop = {"e"};  // stop strings are cut from the text, streamed or not
    const ChatResult whole = c.chat(r);
    std::vector<std::string> pieces(3);
    int deltas = 0;
    const ChatResult streamed = c.chat_stream(r, [&](const ChatDelta& d) {
        ASSERT_LT(d.index, 3);
        pieces[d.index] += d.content;
        deltas++;
    });
    ASSERT_EQ(whole.choices.size(), 3u);
    ASSERT_EQ(streamed.choices.size(), 3u);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(pieces[i], whole.choices[i].text) << i;
        EXPECT_EQ(streamed.choices[i].text, whole.choices[i].text) << i;
        EXPECT_EQ(streamed.choices[i].finish_reason, whole.choices[i].finish_reason) << i;
        EXPECT_EQ(whole.choices[i].text.find('e'), std::string::npos);
    }
    EXPECT_GE(deltas, 3);
    EXPECT_EQ(streamed.usage.completion_tokens, whole.usage.completion_tokens);  // include_usage
    EXPECT_EQ(streamed.usage.prompt_tokens, whole.usage.prompt_tokens);

    // Completions streamed through curl: OpenAI's chunk shape, usage last, then [DONE].
    const std::string body = run_curl(
        "-N -H 'Content-Type: application/json' -d '{\"model\": \"tiny\", \"prompt\": \"abc\", "
        "\"max_tokens\": 30, \"temperature\": 0.9, \"seed\": 5, \"stream\": true, "
        "\"stream_options\": {\"include_usage\": true}}' " +
        base() + "/v1/completions");
    const auto events = sse_data(body);
    ASSERT_GE(events.size(), 3u) << body;
    EXPECT_EQ(events.back(), "[DONE]");
    std::string text;
    std::string finish;
    for (size_t i = 0; i + 2 < events.size(); i++) {
        const json chunk = json::parse(events[i]);
        EXPECT_EQ(chunk["object"], "text_completion");
        EXPECT_TRUE(chunk["usage"].is_null());
        text += chunk["choices"][0]["text"].get<std::string>();
        if (!chunk["choices"][0]["finish_reason"].is_null())
            finish = chunk["choices"][0]["finish_reason"];
    }
    const json usage_chunk = json::parse(events[events.size() - 2]);
    EXPECT_TRUE(usage_chunk["choices"].empty());
    const auto [status, plain] = post(
        "/v1/completions", R"({"prompt": "abc", "max_tokens": 30, "temperature": 0.9, "seed": 5})");
    ASSERT_EQ(status, 200);
    EXPECT_EQ(text, plain["choices"][0]["text"]);
    EXPECT_EQ(finish, plain["choices"][0]["finish_reason"]);
    EXPECT_EQ(usage_chunk["usage"], plain["usage"]);
}

TEST_F(Serve, SeededSamplingIsReproducibleAndNGivesDistinctSamples) {
    start();
    const std::string body =
        R"({"prompt": "xyz", "max_tokens": 24, "temperature": 1.0, "top_p": 0.95, "top_k": 50,
            "min_p": 0.01, "n": 4, "seed": 1234})";
    const auto [s1, a] = post("/v1/completions", body);
    const auto [s2, b] = post("/v1/completions", body);
    ASSERT_EQ(s1, 200);
    ASSERT_EQ(s2, 200);
    ASSERT_EQ(a["choices"].size(), 4u);
    std::set<std::string> distinct;
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(a["choices"][i]["index"], i);
        EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);
        distinct.insert(a["choices"][i]["text"].get<std::string>());
    }
    EXPECT_GT(distinct.size(), 1u);
    json other = json::parse(body);
    other["seed"] = 1235;
    const auto [s3, c] = post("/v1/completions", other.dump());
    EXPECT_NE(c["choices"], a["choices"]);
    EXPECT_EQ(a["usage"]["prompt_tokens"], 3);  // the prompt counts once, not once per sample
}

TEST_F(Serve, LogprobsAreTheTrainersForward) {
    start();
    const std::vector<int32_t> prompt = ByteTokenizer().encode("q: 1+1");
    const auto [status, j] = post(
        "/v1/completions",
        json{{"prompt", "q: 1+1"}, {"max_tokens", 10}, {"temperature", 0}, {"logprobs", 2}}.dump());
    ASSERT_EQ(status, 200);
    const std::vector<int32_t> ids = greedy(prompt, 10).first;
    // The trainer's forward over prompt + completion, packed alone as the server packs it.
    std::vector<int32_t> seq(prompt);
    seq.insert(seq.end(), ids.begin(), ids.end());
    PackedBatch batch;
    batch.add_sequence(std::vector<int32_t>(seq.begin(), seq.end() - 1),
                       std::vector<int32_t>(seq.begin() + 1, seq.end()),
                       std::vector<float>(seq.size() - 1, 0.0f));
    model->forward(batch);
    const json& lp = j["choices"][0]["logprobs"];
    ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
    for (size_t t = 0; t < ids.size(); t++) {
        const float want = -model->token_losses()[prompt.size() - 1 + t];
        EXPECT_EQ(lp["token_logprobs"][t].get<float>(), want) << t;
        EXPECT_GE(lp["top_logprobs"][t].size(), 1u);  // two ids may share a text ('?')
        EXPECT_LE(lp["top_logprobs"][t].size(), 2u);
        // Greedy: the sampled token is the most likely one.
        float best = -INFINITY;
        for (const auto& [token, value] : lp["top_logprobs"][t].items())
            best = std::max(best, value.get<float>());
        EXPECT_NEAR(best, want, 1e-5);
    }
    // Chat logprobs, streamed and not, parsed by our client.
    OpenAIClient c = client();
    ChatRequest r;
    r.messages = {{"user", "hi"}};
    r.max_tokens = 6;
    r.temperature = 0;
    r.logprobs = true;
    r.top_logprobs = 3;
    const ChatResult whole = c.chat(r);
    const ChatResult streamed = c.chat_stream(r, [](const ChatDelta&) {});
    ASSERT_TRUE(whole.choices[0].logprobs.has_value());
    ASSERT_TRUE(streamed.choices[0].logprobs.has_value());
    const auto& a = *whole.choices[0].logprobs;
    const auto& b = *streamed.choices[0].logprobs;
    ASSERT_EQ(a.size(), (size_t)whole.usage.completion_tokens);
    ASSERT_EQ(a.size(), b.size());
    for (size_t t = 0; t < a.size(); t++) {
        EXPECT_EQ(a[t].logprob, b[t].logprob);
        EXPECT_EQ(a[t].top.size(), 3u);
        EXPECT_NEAR(a[t].top[0].second, a[t].logprob, 1e-5);  // greedy: the sampled is the best
    }
    EXPECT_EQ(streamed.choices[0].text, whole.choices[0].text);
}

TEST_F(Serve, BadRequestsAnswer400WithOpenAIErrorBodies) {
    start();
    struct Case {
        const char* path;
        std::string body;
        const char* param;  // nullptr: null
        const char* says;
    };
    const std::string long_prompt(kContext, 'a');
    const std::vector<Case> cases = {
        {"/v1/completions", "{\"prompt\": \"a\",", nullptr, "could not parse the JSON body"},
        {"/v1/completions", "[1, 2]", nullptr, "must be a JSON object"},
        {"/v1/completions", R"({"model": "gpt-4", "prompt": "a"})", "model",
         "The model 'gpt-4' does not exist"},
        {"/v1/completions", R"({"model": 5, "prompt": "a"})", "model", "expected a string"},
        {"/v1/completions", R"({"max_tokens": 4})", "prompt", "Missing required parameter"},
        {"/v1/completions", R"({"prompt": 17})", "prompt", "expected a string, a list"},
        {"/v1/completions", R"({"prompt": [1, 999]})", "prompt", "999 is not a token id"},
        {"/v1/completions", R"({"prompt": "a", "max_tokens": "9"})", "max_tokens",
         "Invalid type for 'max_tokens': expected an integer, but got a string"},
        {"/v1/completions", R"({"prompt": "a", "max_tokens": 0})", "max_tokens",
         "Invalid value for 'max_tokens'"},
        {"/v1/completions", R"({"prompt": "a", "n": 0})", "n", "Invalid value for 'n'"},
        {"/v1/completions", R"({"prompt": "a", "temperature": "hot"})", "temperature",
         "expected a number"},
        {"/v1/completions", R"({"prompt": "a", "temperature": 3})", "temperature",
         "Invalid value for 'temperature'"},
        {"/v1/completions", R"({"prompt": "a", "top_p": 0})", "top_p", "'top_p'"},
        {"/v1/completions", R"({"prompt": "a", "stop": [1]})", "stop", "Invalid type for 'stop'"},
        {"/v1/completions", R"({"prompt": "a", "stream": "yes"})", "stream", "expected a boolean"},
        {"/v1/completions", R"({"prompt": "a", "logprobs": true})", "logprobs",
         "expected an integer"},
        {"/v1/completions", R"({"prompt": "a", "seed": 1.5})", "seed", "expected an integer"},
        {"/v1/completions", R"({"prompt": "a", "stream_options": {"include_usage": true}})",
         "stream_options", "requires 'stream'"},
        {"/v1/completions", json{{"prompt", long_prompt}}.dump(), "prompt",
         "maximum context length is 128 tokens"},
        {"/v1/completions", R"({"prompt": "abc", "max_tokens": 126})", "max_tokens",
         "you requested 129 tokens (3 in the prompt, 126 for the completion)"},
        {"/v1/chat/completions", R"({"model": "tiny"})", "messages", "Missing required"},
        {"/v1/chat/completions", R"({"messages": "hi"})", "messages", "expected an array"},
        {"/v1/chat/completions", R"({"messages": []})", "messages", "at least one message"},
        {"/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})",
         "messages[0].role", "'robot' is not one of"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 5}]})",
         "messages[0].content", "expected a string or an array of text parts"},
        {"/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs",
         "requires 'logprobs' to be true"},
    };
    for (const Case& k : cases) {
        const auto [status, j] = post(k.path, k.body);
        EXPECT_EQ(status, 400) << k.body;
        ASSERT_TRUE(j.is_object() && j.contains("error")) << k.body;
        const json& e = j["error"];
        EXPECT_EQ(e["type"], "invalid_request_error") << k.body;
        EXPECT_NE(e["message"].get<std::string>().find(k.says), std::string::npos)
            << k.body << " -> " << e["message"];
        if (k.param) {
            EXPECT_EQ(e["param"], k.param) << k.body;
        } else {
            EXPECT_TRUE(e["param"].is_null()) << k.body;
        }
        EXPECT_TRUE(e.contains("code")) << k.body;
    }
    // Through curl, and our client reports the server's message.
    const std::string body = run_curl("-H 'Content-Type: application/json' -d '{\"prompt\": ' " +
                                      base() + "/v1/completions");
    EXPECT_NE(body.find("invalid_request_error"), std::string::npos) << body;
    CompletionRequest r;
    r.model = "nope";
    r.prompt = "a";
    const std::string msg = testutil::error_of([&] { client().complete(r); });
    EXPECT_NE(msg.find("400"), std::string::npos) << msg;
    EXPECT_NE(msg.find("The model 'nope' does not exist"), std::string::npos) << msg;
    // Unknown routes answer 404 with the same body shape.
    const auto [status, j] = post("/v1/embeddings", "{}");
    EXPECT_EQ(status, 404);
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
}

TEST_F(Serve, SixtyFourConcurrentRequestsAreBatchedAndAllCorrect) {
    gate.close_after(1);  // the first request's first step, then wait for the others
    start();
    const int kClients = 64;
    std::vector<std::string> prompts;
    std::vector<std::vector<int32_t>> encoded;
    for (int i = 0; i < kClients; i++) {
        std::string prompt = std::to_string(i * 37 % 101);
        prompt.insert(prompt.begin(), 'p');  // not "p" + ...: GCC 12's -Wrestrict misfires
        prompts.push_back(prompt + ':');
        encoded.push_back(ByteTokenizer().encode(prompts.back()));
    }
    OpenAIClient c = client(kClients);
    std::vector<std::future<CompletionResult>> answers;
    for (int i = 0; i < kClients; i++) {
        answers.push_back(std::async(std::launch::async, [&, i] {
            CompletionRequest r;
            r.prompt = prompts[i];
            r.max_tokens = 8;
            r.temperature = 0;
            return c.complete(r);
        }));
    }
    // Every request is in: some ran the first step, the rest wait for the paused engine.
    const bool all_in = eventually([&] { return server->stats().requests == kClients; });
    if (!all_in) {
        gate.release();
        for (auto& a : answers) {
            try {
                a.get();
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                break;
            }
        }
    }
    ASSERT_TRUE(all_in) << server->stats().requests;
    gate.release();
    for (int i = 0; i < kClients; i++) {
        const CompletionResult got = answers[i].get();
        EXPECT_EQ(got.choices.at(0).text, greedy(encoded[i], 8).second) << prompts[i];
    }
    const ServerStats st = server->stats();
    // Those of the first step ran together, and so did the ones waiting: one group has half.
    EXPECT_GE(st.max_step_sequences, kClients / 2);
    EXPECT_EQ(st.requests, kClients);
    EXPECT_EQ(st.free_kv_blocks, st.kv_blocks);
}

TEST_F(Serve, FullQueueAnswers429WithRetryAfter) {
    gate.close_after(1);
    ServerOptions o;
    o.max_queue = 2;
    o.max_batch_seqs = 1;
    start(o);
    auto send = [&](const std::string& prompt) {
        return std::async(std::launch::async, [this, prompt] {
            return post("/v1/completions",
                        json{{"prompt", prompt}, {"max_tokens", 20}, {"temperature", 0}}.dump())
                .first;
        });
    };
    auto a = send("a");
    ASSERT_TRUE(eventually([&] { return server->stats().running == 1; }));
    auto b = send("b");
    auto c2 = send("c");
    ASSERT_TRUE(eventually([&] { return server->stats().waiting == 2; }));
    httplib::Client http("127.0.0.1", server->port());
    auto res = http.Post("/v1/completions", R"({"prompt": "d"})", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 429);
    EXPECT_EQ(res->get_header_value("Retry-After"), "1");
    const json e = json::parse(res->body);
    EXPECT_NE(e["error"]["message"].get<std::string>().find("busy"), std::string::npos);
    const std::string msg = testutil::error_of([&] {
        CompletionRequest r;
        r.prompt = "e";
        r.max_tokens = 4;
        client().complete(r);
    });
    EXPECT_NE(msg.find("429"), std::string::npos) << msg;
    gate.release();
    EXPECT_EQ(a.get(), 200);
    EXPECT_EQ(b.get(), 200);
    EXPECT_EQ(c2.get(), 200);
    EXPECT_EQ(server->stats().requests, 3);
}

TEST_F(Serve, AClientThatDisconnectsMidStreamFreesItsSequences) {
    gate.close_after(1);  // one token, then the engine waits
    ServerOptions o;
    o.heartbeat_s = 0.02;
    start(o);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string body =
        R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100, "n": 2,
            "temperature": 1, "stream": true, "ignore_eos": true})";  // neither sample may end
    const std::string request =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(write(fd, request.data(), request.size()), (ssize_t)request.size());
    std::string got;
    char buf[4096];
    while (got.find("data: ") == std::string::npos) {  // the role chunk
        const ssize_t n = read(fd, buf, sizeof buf);
        ASSERT_GT(n, 0);
        got.append(buf, n);
    }
    EXPECT_NE(got.find("200 OK"), std::string::npos);
    ASSERT_TRUE(eventually([&] { return server->stats().running == 2; }));  // two samples
    EXPECT_LT(server->stats().free_kv_blocks, server->stats().kv_blocks);
    close(fd);
    ASSERT_TRUE(eventually([&] { return server->stats().cancelled == 1; }));
    gate.release();
    ASSERT_TRUE(eventually([&] {
        const ServerStats s = server->stats();
        return s.running == 0 && s.free_kv_blocks == s.kv_blocks;
    }));
    EXPECT_LT(server->stats().completion_tokens, 200);  // far from 2 x 100 tokens
}

TEST(ServeBinary, SigtermDrainsInFlightRequestsAndExitsZero) {
    testutil::TempDir tmp;
    const fs::path dir = tmp.path() / "model";
    testutil::write_byte_model(dir, 1024,
                               5);  // a long context: the stream is still running at SIGTERM
    const fs::path log = tmp.path() / "serve.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const std::string model_arg = dir.string();
    std::vector<std::string> args = {
        CRUCIBLE_BINARY, "serve", "--model", model_arg, "--port", "0", "--served-model-name", "m"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, CRUCIBLE_BINARY, &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    int port = 0;
    ASSERT_TRUE(eventually([&] {
        const std::string text = testutil::slurp(log);
        const size_t at = text.find("http://127.0.0.1:");
        if (at == std::string::npos) return false;
        port = std::atoi(text.c_str() + at + 17);
        return port > 0;
    })) << testutil::slurp(log);
    ClientOptions o;
    o.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    o.api_key_env = "CRUCIBLE_TEST_NO_SUCH_KEY";
    o.max_retries = 0;
    o.timeout_s = 60;
    OpenAIClient c(o);
    ChatRequest r;
    r.messages = {{"user", "go"}};
    r.max_tokens = 900;
    r.temperature = 1;
    r.seed = 3;
    r.extra = {{"ignore_eos", true}};  // the stream runs to its length
    bool signalled = false;
    const ChatResult got = c.chat_stream(r, [&](const ChatDelta&) {
        if (!signalled) kill(pid, SIGTERM);
        signalled = true;
    });
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << testutil::slurp(log);
    EXPECT_TRUE(signalled);
    ASSERT_EQ(got.choices.size(), 1u);
    EXPECT_EQ(got.choices[0].finish_reason, "length");  // finished in full
    EXPECT_EQ(got.usage.completion_tokens, 900);
    const std::string text = testutil::slurp(log);
    EXPECT_NE(text.find("SIGTERM"), std::string::npos) << text;
    EXPECT_NE(text.find("stopped"), std::string::npos) << text;
    EXPECT_THROW(c.models(), Error);  // no longer listening
}

}  // namespace
}  // namespace crucible
