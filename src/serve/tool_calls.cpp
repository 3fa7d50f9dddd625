#include "serve/tool_calls.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/python_json.h"

namespace crucible {

namespace {

using nlohmann::ordered_json;

constexpr const char* kOpen = "<tool_call>";
constexpr const char* kClose = "</tool_call>";

// One call's body (the text between the tags) as a call, or false.
bool parse_call(const std::string& body, const std::vector<std::string>& tools,
                OutputToolCall& out) {
    const ordered_json j = ordered_json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return false;
    if (!j.contains("name") || !j["name"].is_string()) return false;
    out.name = j["name"].get<std::string>();
    if (std::find(tools.begin(), tools.end(), out.name) == tools.end()) return false;
    ordered_json args = j.contains("arguments") ? j["arguments"] : ordered_json();
    if (args.is_null()) args = ordered_json::object();
    if (args.is_string()) {
        args = ordered_json::parse(args.get<std::string>(), nullptr, false);
    }
    if (args.is_discarded() || !args.is_object()) return false;
    // Arguments nested deeper than a tool's schema could want are not a call (the writer is
    // recursive; a completion is at most its max_tokens long, but keep it shallow anyway).
    std::vector<std::pair<const ordered_json*, int>> todo = {{&args, 1}};
    while (!todo.empty()) {
        const auto [node, depth] = todo.back();
        todo.pop_back();
        if (depth > 64) return false;
        if (node->is_structured())
            for (const auto& child : *node) todo.push_back({&child, depth + 1});
    }
    out.arguments = python_json_dumps(args);
    return true;
}

}  // namespace

ParsedToolOutput parse_tool_output(const std::string& text, const std::vector<std::string>& tools,
                                   bool parallel) {
    ParsedToolOutput r;
    r.content = text;
    const size_t first = text.find(kOpen);
    if (first == std::string::npos) return r;
    std::vector<OutputToolCall> calls;
    size_t at = first;
    while (at != std::string::npos) {
        const size_t body = at + std::string_view(kOpen).size();
        const size_t close = text.find(kClose, body);
        const size_t next_open = text.find(kOpen, body);
        if (next_open != std::string::npos && (close == std::string::npos || next_open < close))
            return r;  // a call opened inside another
        OutputToolCall call;
        if (!parse_call(
                text.substr(body, close == std::string::npos ? std::string::npos : close - body),
                tools, call)) {
            return r;
        }
        calls.push_back(std::move(call));
        if (close == std::string::npos) break;
        const size_t after = close + std::string_view(kClose).size();
        at = text.find(kOpen, after);
        const size_t stray = text.find(kClose, after);
        if (stray != std::string::npos && (at == std::string::npos || stray < at)) return r;
    }
    r.called = true;
    r.content = text.substr(0, first > 0 && text[first - 1] == '\n' ? first - 1 : first);
    if (!parallel) calls.resize(1);
    r.calls = std::move(calls);
    return r;
}

size_t tool_content_end(const std::string& text) {
    const size_t open = text.find(kOpen);
    if (open != std::string::npos) return open > 0 && text[open - 1] == '\n' ? open - 1 : open;
    // A suffix that is a prefix of "\n<tool_call>" or of "<tool_call>".
    for (const std::string_view tag :
         {std::string_view("\n<tool_call>"), std::string_view(kOpen)}) {
        for (size_t k = std::min(tag.size() - 1, text.size()); k > 0; k--) {
            if (text.compare(text.size() - k, k, tag.substr(0, k)) == 0) return text.size() - k;
        }
    }
    return text.size();
}

}  // namespace crucible
