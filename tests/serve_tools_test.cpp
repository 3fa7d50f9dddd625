// Tool calling through `crucible serve`, end to end: a tiny byte model trained to answer a few
// chat prompts (tests/tool_model.h) with tool calls, text, a call to a tool it was not offered
// and a malformed call, served on an ephemeral port and asked over HTTP, whole and streamed,
// and by the official `openai` npm client (tests/oracle/openai_sdk_check.mjs). What each
// answer must be follows from what the model was trained to write and the OpenAI/vLLM rules
// (docs/SERVING.md, "Tools"), not from the server's own output.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/server.h"
#include "test_util.h"
#include "tokenizer/chat_template.h"
#include "tool_model.h"

namespace crucible {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kContext = 1024;
// The tools as a client sends them, written as Python's json.dumps writes them: what the
// chat template puts in the prompt (tests/chat_tools_test.cpp checks that rendering).
const std::string kAdd =
    R"({"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}})";
const std::string kMul = R"({"type": "function", "function": {"name": "mul"}})";
const std::string kCallAdd =
    "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>";
const std::string kCallMul =
    "<tool_call>\n{\"name\": \"mul\", \"arguments\": {\"a\": 4, \"b\": 5}}\n</tool_call>";
const std::string kCallSub =
    "<tool_call>\n{\"name\": \"sub\", \"arguments\": {\"a\": 9, \"b\": 5}}\n</tool_call>";
const std::string kBroken =
    "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2,}}\n</tool_call>";
const std::string kNamedPrefix = "<tool_call>\n{\"name\": \"mul\", \"arguments\": ";

std::string prompt(const std::vector<ChatMessage>& messages) {
    return render_chat_text(ChatFormat::chatml, messages, true, {kAdd, kMul});
}

// What the model is trained to answer.
std::vector<testutil::Memorized> lessons() {
    return {
        {prompt({{"user", "What is 2 + 3?"}}), kCallAdd},
        {prompt({{"user", "Say hi."}}), "Hi!"},
        {prompt({{"user", "2 + 3 and 4 * 5?"}}), "Both.\n" + kCallAdd + "\n" + kCallMul},
        {prompt({{"user", "Subtract 5 from 9."}}), kCallSub},
        {prompt({{"user", "Broken?"}}), kBroken},
        {prompt({{"user", "What is 2 + 3?"}, {"assistant", kCallAdd}, {"tool", "5"}}), "It is 5."},
        {prompt({{"user", "Multiply."}}) + kNamedPrefix, "{\"a\": 6, \"b\": 7}}\n</tool_call>"},
    };
}

std::string request(const std::string& user, const std::string& extra = "") {
    return R"({"model": "tool-model", "temperature": 0, "max_tokens": 200, "messages": [{"role": "user", "content": ")" +
           user + "\"}], \"tools\": [" + kAdd + ", " + kMul + "]" + extra + "}";
}

struct ServeTools : ::testing::Test {
    static fs::path model_dir;
    std::unique_ptr<Server> server;
    std::thread runner;

    static void SetUpTestSuite() {
        model_dir = testutil::memorizing_model(CRUCIBLE_TEST_CACHE_DIR, lessons(), kContext);
    }
    void SetUp() override {
        ASSERT_FALSE(model_dir.empty());
        ServerOptions o;
        o.model_dir = model_dir;
        o.port = 0;
        o.served_model_name = "tool-model";
        server = std::make_unique<Server>(o);
        runner = std::thread([this] { server->run(); });
    }
    void TearDown() override {
        if (server) server->stop();
        if (runner.joinable()) runner.join();
    }
    json post(const std::string& body, int want_status = 200) {
        httplib::Client http("127.0.0.1", server->port());
        http.set_read_timeout(60, 0);
        auto res = http.Post("/v1/chat/completions", body, "application/json");
        EXPECT_TRUE(res);
        if (!res) return json();
        EXPECT_EQ(res->status, want_status) << res->body;
        return json::parse(res->body);
    }
    // The chunks of a streamed answer.
    std::vector<json> stream(const std::string& body) {
        std::string b = body;
        b.insert(b.size() - 1, ", \"stream\": true");
        httplib::Client http("127.0.0.1", server->port());
        http.set_read_timeout(60, 0);
        auto res = http.Post("/v1/chat/completions", b, "application/json");
        EXPECT_TRUE(res && res->status == 200);
        std::vector<json> chunks;
        if (!res) return chunks;
        size_t at = 0;
        while ((at = res->body.find("data: ", at)) != std::string::npos) {
            const size_t end = res->body.find("\n\n", at);
            const std::string data = res->body.substr(at + 6, end - at - 6);
            at = end;
            if (data != "[DONE]") chunks.push_back(json::parse(data));
        }
        return chunks;
    }
};
fs::path ServeTools::model_dir;

// The assistant message a stream adds up to, as clients accumulate deltas: content pieces
// joined, each call's fields joined by its index.
json accumulate(const std::vector<json>& chunks, std::string* finish) {
    json message = {{"content", ""}};
    json calls = json::array();
    for (const json& c : chunks) {
        for (const json& ch : c["choices"]) {
            const json& d = ch["delta"];
            if (d.contains("content") && d["content"].is_string())
                message["content"] =
                    message["content"].get<std::string>() + d["content"].get<std::string>();
            if (d.contains("tool_calls")) {
                for (const json& t : d["tool_calls"]) {
                    const size_t i = t["index"];
                    while (calls.size() <= i)
                        calls.push_back({{"function", {{"name", ""}, {"arguments", ""}}}});
                    if (t.contains("id")) calls[i]["id"] = t["id"];
                    if (t.contains("type")) calls[i]["type"] = t["type"];
                    for (const char* k : {"name", "arguments"})
                        if (t["function"].contains(k))
                            calls[i]["function"][k] = calls[i]["function"][k].get<std::string>() +
                                                      t["function"][k].get<std::string>();
                }
            }
            if (!ch["finish_reason"].is_null()) *finish = ch["finish_reason"];
        }
    }
    if (!calls.empty()) message["tool_calls"] = calls;
    return message;
}

TEST_F(ServeTools, ACallComesBackAsToolCallsWholeAndStreamed) {
    const json r = post(request("What is 2 + 3?"));
    const json& choice = r["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls");
    EXPECT_TRUE(choice["message"]["content"].is_null());
    ASSERT_TRUE(choice["message"].contains("tool_calls"));
    ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
    const json& call = choice["message"]["tool_calls"][0];
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
    EXPECT_EQ(call["function"]["name"], "add");
    EXPECT_EQ(call["function"]["arguments"], "{\"a\": 2, \"b\": 3}");
    // Every generated token counts, the <tool_call> text and <|im_end|> included.
    EXPECT_EQ(r["usage"]["completion_tokens"], (int)kCallAdd.size() + 1);

    std::string finish;
    const json streamed = accumulate(stream(request("What is 2 + 3?")), &finish);
    EXPECT_EQ(finish, "tool_calls");
    EXPECT_EQ(streamed["content"], "");  // no text was ever sent as content
    ASSERT_EQ(streamed["tool_calls"].size(), 1u);
    EXPECT_EQ(streamed["tool_calls"][0]["function"], call["function"]);
}

TEST_F(ServeTools, TextBeforeParallelCallsIsContentAndEachCallHasItsIndex) {
    const json m = post(request("2 + 3 and 4 * 5?"))["choices"][0]["message"];
    EXPECT_EQ(m["content"], "Both.");
    ASSERT_TRUE(m.contains("tool_calls"));
    ASSERT_EQ(m["tool_calls"].size(), 2u);
    EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "add");
    EXPECT_EQ(m["tool_calls"][1]["function"]["name"], "mul");
    EXPECT_EQ(m["tool_calls"][1]["function"]["arguments"], "{\"a\": 4, \"b\": 5}");
    EXPECT_NE(m["tool_calls"][0]["id"], m["tool_calls"][1]["id"]);
    std::string finish;
    const json s = accumulate(stream(request("2 + 3 and 4 * 5?")), &finish);
    EXPECT_EQ(s["content"], "Both.");
    ASSERT_TRUE(s.contains("tool_calls"));
    ASSERT_EQ(s["tool_calls"].size(), 2u);
    EXPECT_EQ(s["tool_calls"][1]["function"], m["tool_calls"][1]["function"]);
    // parallel_tool_calls false: the first call only.
    const json one =
        post(request("2 + 3 and 4 * 5?", ", \"parallel_tool_calls\": false"))["choices"][0];
    ASSERT_TRUE(one["message"].contains("tool_calls"));
    EXPECT_EQ(one["message"]["tool_calls"].size(), 1u);
}

TEST_F(ServeTools, PlainTextUnofferedToolsAndMalformedCallsAreContent) {
    struct Case {
        std::string user, content, finish;
    } cases[] = {{"Say hi.", "Hi!", "stop"},
                 {"Subtract 5 from 9.", kCallSub, "stop"},  // "sub" was not offered
                 {"Broken?", kBroken, "stop"}};
    for (const Case& c : cases) {
        SCOPED_TRACE(c.user);
        const json choice = post(request(c.user))["choices"][0];
        EXPECT_EQ(choice["message"]["content"], c.content);
        EXPECT_FALSE(choice["message"].contains("tool_calls"));
        EXPECT_EQ(choice["finish_reason"], c.finish);
        std::string finish;
        const json s = accumulate(stream(request(c.user)), &finish);
        EXPECT_EQ(s["content"], c.content);  // held back while it might be a call, then sent
        EXPECT_FALSE(s.contains("tool_calls"));
        EXPECT_EQ(finish, c.finish);
    }
    // tool_choice "none": the call is not parsed.
    const json none = post(request("What is 2 + 3?", ", \"tool_choice\": \"none\""));
    EXPECT_EQ(none["choices"][0]["message"]["content"], kCallAdd);
}

TEST_F(ServeTools, AConversationWithItsCallAndResultContinues) {
    // The assistant turn as the server returned it, then the tool's result.
    const std::string body =
        R"({"model": "tool-model", "temperature": 0, "max_tokens": 40, "tools": [)" + kAdd + ", " +
        kMul +
        R"(], "messages": [{"role": "user", "content": "What is 2 + 3?"},
          {"role": "assistant", "content": null, "tool_calls": [{"id": "call_x", "type": "function",
            "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}}]},
          {"role": "tool", "tool_call_id": "call_x", "content": "5"}]})";
    const json choice = post(body)["choices"][0];
    EXPECT_EQ(choice["message"]["content"], "It is 5.");
    EXPECT_EQ(choice["finish_reason"], "stop");
}

TEST_F(ServeTools, ANamedToolChoiceStartsTheCall) {
    const std::string named =
        R"(, "tool_choice": {"type": "function", "function": {"name": "mul"}})";
    const json choice = post(request("Multiply.", named))["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls");
    ASSERT_TRUE(choice["message"].contains("tool_calls"));
    ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
    EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "mul");
    EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\": 6, \"b\": 7}");
    std::string finish;
    const json s = accumulate(stream(request("Multiply.", named)), &finish);
    EXPECT_EQ(finish, "tool_calls");
    ASSERT_TRUE(s.contains("tool_calls"));
    EXPECT_EQ(s["tool_calls"][0]["function"]["arguments"], "{\"a\": 6, \"b\": 7}");
}

TEST_F(ServeTools, TheOfficialOpenAIClientListsChatsStreamsAndCallsTools) {
    const fs::path script = fs::path(CRUCIBLE_ORACLE_DIR) / "openai_sdk_check.mjs";
    if (!fs::exists(fs::path(CRUCIBLE_ORACLE_DIR) / "node_modules/openai/package.json"))
        FAIL() << "the openai npm package is missing: run scripts/setup (npm ci --prefix "
                  "tests/oracle)";
    const std::string cmd = "node " + script.string() +
                            " http://127.0.0.1:" + std::to_string(server->port()) + "/v1 2>&1";
    int status = 0;
    const std::string out = testutil::command_output(cmd, &status);
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("openai-sdk-check: 9 checks passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace crucible
