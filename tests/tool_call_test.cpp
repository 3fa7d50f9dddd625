// Tool-call parsing (env/tool_call): Search-R1's <search> and Qwen/Hermes <tool_call>, each
// well formed and malformed, two calls in a turn (the first is taken), calls inside unclosed
// tags, answers, and the rendered observations. Model text never makes the parser throw.
#include "env/tool_call.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace crucible {
namespace {

using Kind = ParsedToolCall::Kind;
using nlohmann::json;

const std::vector<std::string> kTools = {"search", "calculator"};

ParsedToolCall r1(const std::string& text) {
    return parse_tool_call(text, ToolSyntax::search_r1, kTools);
}
ParsedToolCall hermes(const std::string& text) {
    return parse_tool_call(text, ToolSyntax::hermes, kTools);
}
std::string reason_r1(const std::string& text) {
    const ParsedToolCall p = r1(text);
    EXPECT_EQ(p.kind, Kind::malformed) << text;
    return p.reason;
}
std::string reason_hermes(const std::string& text) {
    const ParsedToolCall p = hermes(text);
    EXPECT_EQ(p.kind, Kind::malformed) << text;
    EXPECT_EQ(p.reason.find('\n'), std::string::npos) << p.reason;
    return p.reason;
}

TEST(ToolCall, SearchR1Call) {
    const std::string text =
        "<think>I need the capital.</think>\n<search> capital of Zorbia </search>";
    const ParsedToolCall p = r1(text);
    ASSERT_EQ(p.kind, Kind::call) << p.reason;
    EXPECT_EQ(p.call.name, "search");
    EXPECT_EQ(p.call.arguments, (json{{"query", "capital of Zorbia"}}));
    EXPECT_EQ(p.begin, text.find("<search>"));
    EXPECT_EQ(p.end, text.size());
    EXPECT_EQ(p.ignored_calls, 0);
    EXPECT_EQ(r1("no tool here, just words").kind, Kind::none);
    EXPECT_EQ(r1("").kind, Kind::none);
    // Text after the closing tag (a stop string not applied) does not matter.
    EXPECT_EQ(r1("<search>a</search> and then more").call.arguments["query"], "a");
    // A multi-line query is kept whole; only the ends are trimmed.
    EXPECT_EQ(r1("<search>\nline one\nline two\n</search>").call.arguments["query"],
              "line one\nline two");
}

TEST(ToolCall, SearchR1Malformed) {
    EXPECT_EQ(reason_r1("<search>capital of Zorbia"), "unclosed <search> tag");
    EXPECT_EQ(r1("ab<search>q").begin, 2u);
    EXPECT_EQ(r1("ab<search>q").end, 11u);  // to the end of the text
    EXPECT_EQ(reason_r1("<search>  \n </search>"), "empty query");
    EXPECT_EQ(reason_r1("capital</search>"), "</search> without <search>");
    EXPECT_EQ(reason_r1("</search><search>q</search>"), "</search> without <search>");
    EXPECT_EQ(reason_r1("<search>a <search>b</search>"),
              "nested <search> tag (the first is not closed)");
    // The tool must be one of the environment's.
    const ParsedToolCall p =
        parse_tool_call("<search>q</search>", ToolSyntax::search_r1, {"calculator"});
    EXPECT_EQ(p.kind, Kind::malformed);
    EXPECT_EQ(p.reason, "unknown tool \"search\" (tools: calculator)");
    // Near misses are not calls.
    EXPECT_EQ(r1("<Search>q</Search>").kind, Kind::none);
    EXPECT_EQ(r1("< search >q</ search >").kind, Kind::none);
    EXPECT_EQ(r1("<tool_call>{\"name\": \"search\"}</tool_call>").kind, Kind::none);
}

TEST(ToolCall, TheFirstOfTwoCallsIsTaken) {
    const ParsedToolCall p = r1("<search>first</search> then <search>second</search>");
    ASSERT_EQ(p.kind, Kind::call);
    EXPECT_EQ(p.call.arguments["query"], "first");
    EXPECT_EQ(p.ignored_calls, 1);
    const ParsedToolCall h = hermes(
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}"
        "</tool_call>\n<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}"
        "</tool_call><tool_call>{\"name\": \"search\"}</tool_call><tool_call>unclosed");
    ASSERT_EQ(h.kind, Kind::call) << h.reason;
    EXPECT_EQ(h.call.name, "calculator");
    EXPECT_EQ(h.ignored_calls, 2);  // complete ones only
    // A malformed first call is what the turn gets, even when a good one follows.
    EXPECT_EQ(reason_r1("<search> </search><search>good</search>"), "empty query");
}

TEST(ToolCall, CallsInsideUnclosedTags) {
    // Other tags are not parsed: a call inside an unclosed <think> is a call.
    const ParsedToolCall p = r1("<think>let me look it up <search>Zorbia</search>");
    ASSERT_EQ(p.kind, Kind::call);
    EXPECT_EQ(p.call.arguments["query"], "Zorbia");
    // A call inside an unclosed call is malformed.
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"search\", <tool_call>{\"name\": \"search\", "
                            "\"arguments\": {\"query\": \"q\"}}</tool_call>"),
              "nested <tool_call> tag (the first is not closed)");
    // A call inside an unclosed <answer> is still a call: the environment decides by position.
    const std::string text = "<answer>maybe <search>q</search>";
    EXPECT_EQ(r1(text).kind, Kind::call);
    EXPECT_FALSE(extract_answer(text).has_value());
}

TEST(ToolCall, HermesCall) {
    const std::string text =
        "I will search.\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": "
        "\"capital of Zorbia\", \"k\": 3}}\n</tool_call>";
    const ParsedToolCall p = hermes(text);
    ASSERT_EQ(p.kind, Kind::call) << p.reason;
    EXPECT_EQ(p.call.name, "search");
    EXPECT_EQ(p.call.arguments, (json{{"query", "capital of Zorbia"}, {"k", 3}}));
    EXPECT_EQ(p.begin, text.find("<tool_call>"));
    EXPECT_EQ(p.end, text.size());
    // Absent or null arguments are {}; OpenAI-style string arguments are parsed.
    EXPECT_EQ(hermes("<tool_call>{\"name\": \"calculator\"}</tool_call>").call.arguments,
              json::object());
    EXPECT_EQ(hermes("<tool_call>{\"name\": \"calculator\", \"arguments\": null}</tool_call>")
                  .call.arguments,
              json::object());
    EXPECT_EQ(hermes("<tool_call>{\"name\": \"calculator\", \"arguments\": "
                     "\"{\\\"expression\\\": \\\"2^10\\\"}\"}</tool_call>")
                  .call.arguments,
              (json{{"expression", "2^10"}}));
    EXPECT_EQ(hermes("plain text").kind, Kind::none);
    EXPECT_EQ(hermes("<search>q</search>").kind, Kind::none);  // the other syntax
}

TEST(ToolCall, HermesMalformed) {
    EXPECT_NE(reason_hermes("<tool_call>{\"name\": \"search\", }</tool_call>")
                  .find("bad JSON in <tool_call>: parse error"),
              std::string::npos);
    EXPECT_NE(reason_hermes("<tool_call>{\"name\":\n\"search\"\n</tool_call>")
                  .find("bad JSON in <tool_call>"),
              std::string::npos);
    EXPECT_NE(reason_hermes("<tool_call></tool_call>").find("bad JSON"), std::string::npos);
    EXPECT_EQ(reason_hermes("<tool_call>[\"search\"]</tool_call>"),
              "the call must be a JSON object");
    EXPECT_EQ(reason_hermes("<tool_call>{\"arguments\": {}}</tool_call>"), "missing \"name\"");
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": 7}</tool_call>"), "\"name\" must be a string");
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"python\"}</tool_call>"),
              "unknown tool \"python\" (tools: search, calculator)");
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"search\", \"arguments\": [1]}</tool_call>"),
              "\"arguments\" must be a JSON object");
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"search\", \"arguments\": \"q\"}</tool_call>"),
              "\"arguments\" must be a JSON object");
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"search\"}"), "unclosed <tool_call> tag");
    EXPECT_EQ(reason_hermes("{\"name\": \"search\"}</tool_call>"),
              "</tool_call> without <tool_call>");
    EXPECT_EQ(
        parse_tool_call("<tool_call>{\"name\": \"search\"}</tool_call>", ToolSyntax::hermes, {})
            .reason,
        "unknown tool \"search\" (tools: none)");
}

TEST(ToolCall, HostileBodiesNeverThrow) {
    // A huge, deeply nested, or binary body: an answer, quickly, and one line.
    const std::string deep = "<tool_call>" + std::string(60000, '[') + "</tool_call>";
    EXPECT_NO_THROW(hermes(deep));
    EXPECT_NE(reason_hermes(deep).find("bad JSON"), std::string::npos);
    EXPECT_EQ(reason_hermes("<tool_call>" + std::string(70000, ' ') + "</tool_call>"),
              "call longer than 65536 bytes");
    EXPECT_NE(reason_hermes("<tool_call>{\"name\": \"\xFF\xFE\"}</tool_call>").find("bad JSON"),
              std::string::npos);
    const std::string long_name(1000, 'n');
    const std::string reason =
        reason_hermes("<tool_call>{\"name\": \"" + long_name + "\"}</tool_call>");
    EXPECT_LE(reason.size(), 203u);  // cut to 200 bytes and "..."
    EXPECT_EQ(reason_hermes("<tool_call>{\"name\": \"a\\nb\"}</tool_call>"),
              "unknown tool \"a b\" (tools: search, calculator)");
    EXPECT_NO_THROW(r1(std::string("<search>\0</search>", 18)));
    EXPECT_EQ(r1(std::string("<search>\0</search>", 18)).kind, Kind::call);
}

TEST(ToolCall, Answers) {
    size_t at = 99;
    EXPECT_EQ(extract_answer("<think>x</think><answer> Paris </answer>", &at), "Paris");
    EXPECT_EQ(at, 16u);
    EXPECT_EQ(extract_answer("<answer>a</answer><answer>b</answer>"), "a");  // the first
    EXPECT_FALSE(extract_answer("<answer>unclosed").has_value());
    EXPECT_FALSE(extract_answer("no answer").has_value());
    EXPECT_FALSE(extract_answer("</answer><answer>").has_value());
    EXPECT_EQ(extract_answer("<answer></answer>"), "");
    // Search-R1 acts on whichever comes first: the offsets tell.
    const std::string text = "<answer>Paris</answer> <search>q</search>";
    extract_answer(text, &at);
    EXPECT_LT(at, r1(text).begin);
}

TEST(ToolCall, Observations) {
    EXPECT_EQ(render_observation(ToolSyntax::search_r1, " Doc 1(Title: A) a\n"),
              "\n\n<information>Doc 1(Title: A) a</information>\n\n");
    EXPECT_EQ(render_observation(ToolSyntax::hermes, "42"),
              "<tool_response>\n42\n</tool_response>");
    EXPECT_EQ(malformed_call_message("unclosed <search> tag"),
              "error: malformed tool call: unclosed <search> tag");
}

}  // namespace
}  // namespace crucible
