// Tool calls in a chat completion, as vLLM's Hermes parser finds them: a model of the Qwen /
// Hermes family answers a call as <tool_call>{"name": N, "arguments": {...}}</tool_call>, and
// the server turns those into OpenAI's `tool_calls` (docs/SERVING.md, "Tools").
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace crucible {

struct OutputToolCall {
    std::string name;
    std::string arguments;  // a JSON object's text, as Python's json.dumps writes it
};

// A completion's text split into its content and its calls.
struct ParsedToolOutput {
    bool called = false;  // calls were found and all of them parsed
    std::string content;  // the text before the first call (called), else the whole text
    std::vector<OutputToolCall> calls;
};

// Parses `text` (what the model wrote). Every <tool_call>...</tool_call> (the last one may be
// unclosed at the end of the text) must hold a JSON object with a string "name" naming one of
// `tools` and "arguments" a JSON object (or a string holding one; absent or null: {}).
// Anything else — bad JSON, an unknown name, a stray </tool_call> — leaves the whole text as
// content with no calls, as vLLM does with a malformed call. With calls, the content is the
// text before the first <tool_call> less the one newline the chat template puts between text
// and calls, so the turn renders again exactly as it was written; text after or between calls
// is dropped. `parallel` false keeps only the first call.
ParsedToolOutput parse_tool_output(const std::string& text, const std::vector<std::string>& tools,
                                   bool parallel = true);

// Where a stream's content must stop while the text may still turn into calls: the offset of
// the first "<tool_call>" (less the newline before it), else of a trailing partial
// "\n<tool_call>" that more text could complete; text.size() when all of it is content.
size_t tool_content_end(const std::string& text);

}  // namespace crucible
