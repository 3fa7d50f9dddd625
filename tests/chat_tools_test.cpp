// Tools in chat requests: the prompt a request with tools, tool calls and tool results renders
// to (against the real Qwen3 chat template rendered by jinja2, tests/fixtures/chat_tools.json
// from scripts/gen_chat_tools_fixture.py), the requests the server refuses, and the parser
// that turns a completion's <tool_call> text into OpenAI's tool_calls.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/python_json.h"
#include "engine/engine.h"
#include "model_util.h"
#include "serve/request_parse.h"
#include "serve/tool_calls.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/chat_template.h"

namespace crucible {
namespace {

using nlohmann::json;

// A served byte-level model with a ChatML template and room for long tool prompts.
struct Served {
    Served(ChatFormat format = ChatFormat::chatml)
        : model(testutil::tiny_model_config(264, 4096)), engine(model) {
        tok = TextTokenizer(ByteTokenizer());
        tok.chat = format;
        served.name = "tiny";
        served.vocab_size = 264;
        served.context = 4096;
        served.stop_ids = {ByteTokenizer::kImEnd};
        served.tok = &tok;
        served.engine = &engine;
    }
    ParsedRequest parse(const std::string& body) {
        return parse_request(body, true, served, [] { return uint64_t{1}; });
    }
    std::string prompt_of(const std::string& body) { return tok.decode(parse(body).gen.prompt); }

    Model model;
    Engine engine;
    TextTokenizer tok;
    ServedModel served;
};

TEST(PythonJson, WritesWhatPythonsJsonDumpsWrites) {
    // Expected: python3 -c 'print(json.dumps(json.loads(SRC), ensure_ascii=False))'.
    const std::string src =
        R"({"b": [1, 2.5, -3e-05, 1e+20, 0.1, true, null, []], "a": {"é": "x\n\"y\"\u0001\t/", "e": {}}})";
    EXPECT_EQ(
        python_json_dumps(nlohmann::ordered_json::parse(src)),
        R"({"b": [1, 2.5, -3e-05, 1e+20, 0.1, true, null, []], "a": {"é": "x\n\"y\"\u0001\t/", "e": {}}})");
    EXPECT_EQ(python_json_dumps(nlohmann::ordered_json::parse(R"({"z":1,"a":2})")),
              R"({"z": 1, "a": 2})");  // the order the request wrote
}

TEST(ChatTools, PromptsAreWhatQwen3sTemplateRenders) {
    std::ifstream f(std::string(CRUCIBLE_FIXTURE_DIR) + "/chat_tools.json");
    ASSERT_TRUE(f) << "missing tests/fixtures/chat_tools.json: python3 "
                      "scripts/gen_chat_tools_fixture.py";
    // Read in order: the request is sent with its keys as the fixture wrote them.
    const nlohmann::ordered_json fixture = nlohmann::ordered_json::parse(f);
    ASSERT_GE(fixture["cases"].size(), 5u);
    Served s;
    for (const auto& c : fixture["cases"]) {
        const std::string body = c["request"].dump();
        SCOPED_TRACE(c["name"].get<std::string>());
        EXPECT_EQ(s.prompt_of(body), c["prompt"].get<std::string>());
    }
}

TEST(ChatTools, Qwen25PutsItsDefaultSystemPromptBeforeTheTools) {
    // Qwen2.5-Instruct's template: without a system message, its default one, a blank line,
    // then the tools section (Qwen3's, above, has no default).
    const std::string text =
        render_chat_text(ChatFormat::qwen25, {{"user", "hi"}}, true,
                         {R"({"type": "function", "function": {"name": "f"}})"});
    const std::string head =
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.\n\n# Tools\n\nYou may call one or more functions";
    EXPECT_EQ(text.substr(0, head.size()), head);
    EXPECT_NE(text.find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n"
                        "</tools>"),
              std::string::npos);
    const std::string tail =
        "</tool_call><|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    EXPECT_EQ(text.substr(text.size() - tail.size()), tail);
    // Without tools nothing changes.
    EXPECT_EQ(render_chat_text(ChatFormat::qwen25, {{"user", "hi"}}, true),
              "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
              "assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTools, Llama3RefusesToolsByName) {
    EXPECT_THROW(render_chat_text(ChatFormat::llama3, {{"user", "hi"}}, true, {"{}"}), Error);
    EXPECT_THROW(render_chat_text(ChatFormat::llama3, {{"tool", "5"}}, true), Error);
    Served s(ChatFormat::llama3);
    try {
        s.parse(R"({"messages": [{"role": "user", "content": "hi"}],
                    "tools": [{"type": "function", "function": {"name": "f"}}]})");
        FAIL() << "tools with a Llama-3 template were accepted";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_EQ(e.param, "tools");
        EXPECT_NE(e.message.find("llama3"), std::string::npos) << e.message;
    }
}

TEST(ChatTools, ToolChoiceSetsWhatIsParsedAndForcesTheCallsOpening) {
    Served s;
    const std::string tools =
        R"("tools": [{"type": "function", "function": {"name": "add"}},
                     {"type": "function", "function": {"name": "mul"}}])";
    const std::string msgs = R"("messages": [{"role": "user", "content": "2 + 3?"}])";
    const ParsedRequest autop = s.parse("{" + msgs + "," + tools + "}");
    EXPECT_EQ(autop.tool_names, (std::vector<std::string>{"add", "mul"}));
    EXPECT_EQ(autop.tool_prefix, "");
    const std::string base = s.tok.decode(autop.gen.prompt);
    EXPECT_EQ(base.substr(base.size() - 22), "<|im_start|>assistant\n");

    const ParsedRequest none = s.parse("{" + msgs + "," + tools + R"(, "tool_choice": "none"})");
    EXPECT_TRUE(none.tool_names.empty());            // not parsed
    EXPECT_EQ(s.tok.decode(none.gen.prompt), base);  // but offered, as vLLM does

    const ParsedRequest req = s.parse("{" + msgs + "," + tools + R"(, "tool_choice": "required"})");
    EXPECT_EQ(req.tool_prefix, "<tool_call>\n{\"name\": \"");
    EXPECT_EQ(s.tok.decode(req.gen.prompt), base + req.tool_prefix);

    const ParsedRequest named = s.parse(
        "{" + msgs + "," + tools +
        R"(, "tool_choice": {"type": "function", "function": {"name": "mul"}}, "parallel_tool_calls": false})");
    EXPECT_EQ(named.tool_prefix, "<tool_call>\n{\"name\": \"mul\", \"arguments\": ");
    EXPECT_EQ(s.tok.decode(named.gen.prompt), base + named.tool_prefix);
    EXPECT_FALSE(named.parallel_tool_calls);
}

TEST(ChatTools, BadToolRequestsAnswer400NamingTheField) {
    Served s;
    const std::string m = R"("messages": [{"role": "user", "content": "hi"}])";
    const std::string f = R"({"type": "function", "function": {"name": "f"}})";
    struct Case {
        std::string body, param, says;
    } cases[] = {
        {"{" + m + R"(, "tools": {"f": 1}})", "tools", "expected an array"},
        {"{" + m + R"(, "tools": [{"type": "retrieval"}]})", "tools[0]", "function"},
        {"{" + m + R"(, "tools": [{"type": "function", "function": {"name": "a b"}}]})",
         "tools[0].function.name", "1 to 64"},
        {"{" + m + R"(, "tools": [{"type": "function", "function": {}}]})",
         "tools[0].function.name", "1 to 64"},
        {"{" + m + ", \"tools\": [" + f + "," + f + "]}", "tools[1].function.name", "twice"},
        {"{" + m +
             R"(, "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]})",
         "tools[0].function.parameters", "JSON Schema"},
        {"{" + m + R"(, "tool_choice": "auto"})", "tool_choice", "needs 'tools'"},
        {"{" + m + ", \"tools\": [" + f + R"(], "tool_choice": "always"})", "tool_choice",
         "not one of"},
        {"{" + m + ", \"tools\": [" + f +
             R"(], "tool_choice": {"type": "function", "function": {"name": "g"}}})",
         "tool_choice", "no tool named 'g'"},
        {"{" + m + ", \"tools\": [" + f + R"(], "parallel_tool_calls": "yes"})",
         "parallel_tool_calls", "boolean"},
        {"{" + m + R"(, "functions": [{"name": "f"}]})", "functions", "use 'tools'"},
        {"{" + m + R"(, "response_format": {"type": "json_object"}})", "response_format",
         "constrained decoding"},
        {R"({"messages": [{"role": "user", "content": "hi"},
             {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
               "function": {"name": "f", "arguments": "{not json"}}]}]})",
         "messages[1].tool_calls[0].function.arguments", "JSON object"},
        {R"({"messages": [{"role": "user", "content": "hi"},
             {"role": "assistant", "tool_calls": [{"type": "function",
               "function": {"arguments": "{}"}}]}]})",
         "messages[1].tool_calls[0].function.name", "non-empty string"},
        {R"({"messages": [{"role": "user", "content": "hi"},
             {"role": "assistant", "tool_calls": {"id": 1}}]})",
         "messages[1].tool_calls", "expected an array"},
        {R"({"messages": [{"role": "user", "content": null}]})", "messages[0].content",
         "expected a string"},
        {R"({"messages": [{"role": "function", "content": "x"}]})", "messages[0].role", "'tool'"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.body);
        try {
            s.parse(c.body);
            ADD_FAILURE() << "accepted";
        } catch (const ApiError& e) {
            EXPECT_EQ(e.status, 400);
            EXPECT_EQ(e.param, c.param) << e.message;
            EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
        }
    }
    // A hostile depth (the JSON writer is recursive): refused, never walked.
    std::string deep = "{\"type\": \"object\", \"x\": ";
    for (int i = 0; i < 200000; i++) deep += "[";
    for (int i = 0; i < 200000; i++) deep += "]";
    deep += "}";
    try {
        s.parse("{" + m +
                R"(, "tools": [{"type": "function", "function": {"name": "f", "parameters": )" +
                deep + "}}]}");
        ADD_FAILURE() << "a 200000-deep tool was accepted";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.param, "tools[0]");
        EXPECT_NE(e.message.find("nested deeper than 64"), std::string::npos) << e.message;
    }
    // The completions endpoint has no tools at all.
    try {
        parse_request(R"({"prompt": "x", "tools": [)" + f + "]}", false, s.served,
                      [] { return uint64_t{1}; });
        ADD_FAILURE() << "tools accepted by /v1/completions";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.param, "tools");
    }
    // A text response_format is what the server does anyway.
    EXPECT_NO_THROW(s.parse("{" + m + R"(, "response_format": {"type": "text"}})"));
}

TEST(ToolOutput, CallsAreSplitFromTheContentAsVllmsHermesParserDoes) {
    const std::vector<std::string> tools = {"add", "get_weather"};
    const std::string add =
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>";
    // No call: all content.
    ParsedToolOutput r = parse_tool_output("just text", tools);
    EXPECT_FALSE(r.called);
    EXPECT_EQ(r.content, "just text");
    // One call: no content.
    r = parse_tool_output(add, tools);
    ASSERT_TRUE(r.called);
    EXPECT_EQ(r.content, "");
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(r.calls[0].name, "add");
    EXPECT_EQ(r.calls[0].arguments, "{\"a\": 2}");
    // Text, then two calls (arguments as a JSON string, compact, keys out of order: kept in
    // order, written as json.dumps would), then trailing text that is dropped.
    r = parse_tool_output("Let me see.\n" + add +
                              "\n<tool_call>{\"name\":\"get_weather\",\"arguments\":\"{\\\"z\\\":1,"
                              "\\\"a\\\":[1,2]}\"}"
                              "</tool_call>\nbye",
                          tools);
    ASSERT_TRUE(r.called);
    EXPECT_EQ(r.content, "Let me see.");  // the template's newline before the calls is not content
    ASSERT_EQ(r.calls.size(), 2u);
    EXPECT_EQ(r.calls[1].name, "get_weather");
    EXPECT_EQ(r.calls[1].arguments, "{\"z\": 1, \"a\": [1, 2]}");
    EXPECT_EQ(parse_tool_output("x\n" + add + add, tools, /*parallel=*/false).calls.size(), 1u);
    // Absent or null arguments are {}; a call cut off at the end still parses when whole JSON.
    r = parse_tool_output("<tool_call>\n{\"name\": \"add\"}\n", tools);
    ASSERT_TRUE(r.called);
    EXPECT_EQ(r.calls[0].arguments, "{}");
    EXPECT_EQ(
        parse_tool_output("<tool_call>{\"name\": \"add\", \"arguments\": null}</tool_call>", tools)
            .calls[0]
            .arguments,
        "{}");
    // Arguments nested past 64 levels are not a call.
    std::string deep_args = "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": ";
    for (int i = 0; i < 100; i++) deep_args += "[";
    for (int i = 0; i < 100; i++) deep_args += "]";
    deep_args += "}}</tool_call>";
    EXPECT_FALSE(parse_tool_output(deep_args, tools).called);
    // Malformed: the whole text is content, nothing is called.
    for (const std::string& bad : {
             std::string(
                 "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2,}}\n</tool_call>"),
             std::string("<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>"),
             std::string("<tool_call>{\"arguments\": {}}</tool_call>"),
             std::string("<tool_call>{\"name\": 3}</tool_call>"),
             std::string("<tool_call>[1, 2]</tool_call>"),
             std::string("<tool_call>{\"name\": \"add\", \"arguments\": [1]}</tool_call>"),
             std::string("<tool_call>{\"name\": \"add\", \"arguments\": \"[1]\"}</tool_call>"),
             std::string(
                 "<tool_call>{\"name\": \"add\", <tool_call>{\"name\": \"add\"}</tool_call>"),
             add + "</tool_call>",
             add + "<tool_call>{\"name\": \"add\", \"argu",
             std::string("<tool_call>"),
         }) {
        SCOPED_TRACE(bad);
        r = parse_tool_output(bad, tools);
        EXPECT_FALSE(r.called);
        EXPECT_EQ(r.content, bad);
        EXPECT_TRUE(r.calls.empty());
    }
}

TEST(ToolOutput, AStreamHoldsBackWhatMayStillBecomeACall) {
    EXPECT_EQ(tool_content_end("plain text"), 10u);
    EXPECT_EQ(tool_content_end("text\n<tool_call>{"), 4u);  // the newline goes with the call
    EXPECT_EQ(tool_content_end("text<tool_call>"), 4u);
    EXPECT_EQ(tool_content_end("text\n<tool_c"), 4u);  // may still open a call
    EXPECT_EQ(tool_content_end("text <too"), 5u);
    EXPECT_EQ(tool_content_end("text\n"), 4u);
    EXPECT_EQ(tool_content_end("a < b"), 5u);  // '<' then a space cannot open a call
    EXPECT_EQ(tool_content_end("<"), 0u);
}

}  // namespace
}  // namespace crucible
