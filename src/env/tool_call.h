// Tool calls in a model's turn, in the two syntaxes environments choose between, and the
// observations that answer them.
//
//   search_r1: <search>QUERY</search>                      -> <information>...</information>
//   hermes:    <tool_call>{"name": N, "arguments": {...}}</tool_call>
//                                                          -> <tool_response>...</tool_response>
//
// The parser never throws on model text: a turn holds no call, one call, or a malformed call
// with a one-line reason that the environment shows the model as its observation. Only the
// first call of a turn is taken (the first opening or closing tag decides); the complete calls
// after it are counted in `ignored_calls` for the metrics. Other tags (<think>, <answer>) are
// not parsed, so a call inside an unclosed <think> still counts; a call inside an unclosed
// call tag (a second opening tag before the first is closed) is malformed. Tags are exact and
// lower-case.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

enum class ToolSyntax {
    search_r1,  // <search>q</search>, observation <information>...</information>
    hermes,     // Qwen/Hermes <tool_call>{json}</tool_call>, observation <tool_response>
};

// The longest call body parsed (the text between the tags), in bytes.
inline constexpr size_t kToolCallMaxBytes = size_t{64} << 10;

struct ToolCall {
    std::string name;  // search_r1: always "search"
    // A JSON object. search_r1: {"query": QUERY} (trimmed). hermes: the call's "arguments"
    // ({} when absent or null; a string holding a JSON object, as OpenAI-style callers write
    // it, is parsed).
    nlohmann::json arguments = nlohmann::json::object();
};

struct ParsedToolCall {
    enum class Kind { none, call, malformed };
    Kind kind = Kind::none;
    ToolCall call;       // when kind == call
    std::string reason;  // when kind == malformed: one line, e.g. "unclosed <search> tag"
    // The byte span [begin, end) of the call or malformed call in the text, from its opening
    // tag through its closing tag (to the end of the text when unclosed); 0, 0 for none.
    size_t begin = 0;
    size_t end = 0;
    int ignored_calls = 0;  // complete calls after the one taken (a turn runs one call)
};

// Finds the first tool call of `text` in `syntax`. `tools` names the environment's tools; a
// call to any other name is malformed ("unknown tool"). Reasons: "unclosed <T> tag",
// "</T> without <T>", "nested <T> tag (the first is not closed)", "empty query",
// "bad JSON in <tool_call>: ...", "the call must be a JSON object", "missing \"name\"",
// "\"name\" must be a string", "unknown tool \"x\" (tools: a, b)", "\"arguments\" must be a
// JSON object", "call longer than 65536 bytes".
ParsedToolCall parse_tool_call(std::string_view text, ToolSyntax syntax,
                               const std::vector<std::string>& tools);

// The first complete <answer>...</answer> of `text`, trimmed of surrounding whitespace; none
// when there is no complete one. *begin (if given) receives the offset of its <answer> tag, so
// an environment can tell whether the answer or a call came first (Search-R1 acts on whichever
// comes first).
std::optional<std::string> extract_answer(std::string_view text, size_t* begin = nullptr);

// The observation text appended after the model's turn: search_r1
// "\n\n<information>CONTENT</information>\n\n" (CONTENT trimmed, as Search-R1 writes it);
// hermes "<tool_response>\nCONTENT\n</tool_response>" (the chat format puts it in its turn).
std::string render_observation(ToolSyntax syntax, std::string_view content);

// The observation content for a malformed call: "error: malformed tool call: REASON".
std::string malformed_call_message(const std::string& reason);

}  // namespace crucible
