#include "env/tool_call.h"

#include <algorithm>

#include "core/strings.h"

namespace crucible {

namespace {

using nlohmann::json;

// A reason on one line, at most 200 bytes (cut before a UTF-8 continuation byte).
std::string one_line(std::string text) {
    for (char& c : text)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (text.size() > 200) {
        size_t cut = 200;
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
        text = text.substr(0, cut) + "...";
    }
    return text;
}

std::string tool_list(const std::vector<std::string>& tools) {
    std::string out;
    for (const std::string& t : tools) out += (out.empty() ? "" : ", ") + t;
    return out.empty() ? "none" : out;
}

ParsedToolCall malformed(std::string reason, size_t begin, size_t end) {
    ParsedToolCall p;
    p.kind = ParsedToolCall::Kind::malformed;
    p.reason = one_line(std::move(reason));
    p.begin = begin;
    p.end = end;
    return p;
}

// The call's name and arguments from the JSON body of a <tool_call>, or a reason.
std::string read_hermes_body(std::string_view body, const std::vector<std::string>& tools,
                             ToolCall* call) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ..."
        if (const size_t at = what.find("] "); at != std::string::npos) what.erase(0, at + 2);
        return "bad JSON in <tool_call>: " + what;
    }
    if (!j.is_object()) return "the call must be a JSON object";
    const auto name = j.find("name");
    if (name == j.end()) return "missing \"name\"";
    if (!name->is_string()) return "\"name\" must be a string";
    const std::string& n = name->get_ref<const std::string&>();
    if (std::find(tools.begin(), tools.end(), n) == tools.end())
        return "unknown tool \"" + one_line(n) + "\" (tools: " + tool_list(tools) + ")";
    json arguments = json::object();
    if (const auto a = j.find("arguments"); a != j.end() && !a->is_null()) {
        arguments = *a;
        if (a->is_string()) {  // OpenAI-style: the arguments as a JSON string
            arguments = json::parse(a->get_ref<const std::string&>(), nullptr, false);
        }
        if (!arguments.is_object()) return "\"arguments\" must be a JSON object";
    }
    call->name = n;
    call->arguments = std::move(arguments);
    return "";
}

size_t count_complete(std::string_view text, size_t from, std::string_view open,
                      std::string_view close) {
    size_t n = 0;
    for (;;) {
        const size_t o = text.find(open, from);
        if (o == std::string_view::npos) return n;
        const size_t c = text.find(close, o + open.size());
        if (c == std::string_view::npos) return n;
        ++n;
        from = c + close.size();
    }
}

}  // namespace

ParsedToolCall parse_tool_call(std::string_view text, ToolSyntax syntax,
                               const std::vector<std::string>& tools) {
    const bool r1 = syntax == ToolSyntax::search_r1;
    const std::string_view open = r1 ? "<search>" : "<tool_call>";
    const std::string_view close = r1 ? "</search>" : "</tool_call>";
    const std::string tag(open.substr(1, open.size() - 2));
    const size_t o = text.find(open);
    const size_t stray = text.find(close);
    if (o == std::string_view::npos && stray == std::string_view::npos) return {};
    if (stray != std::string_view::npos && (o == std::string_view::npos || stray < o))
        return malformed("</" + tag + "> without <" + tag + ">", stray, stray + close.size());
    const size_t body_start = o + open.size();
    const size_t c = text.find(close, body_start);
    if (c == std::string_view::npos) return malformed("unclosed <" + tag + "> tag", o, text.size());
    const size_t end = c + close.size();
    const std::string_view body = text.substr(body_start, c - body_start);
    if (body.find(open) != std::string_view::npos)
        return malformed("nested <" + tag + "> tag (the first is not closed)", o, end);
    if (body.size() > kToolCallMaxBytes)
        return malformed("call longer than " + std::to_string(kToolCallMaxBytes) + " bytes", o,
                         end);

    ParsedToolCall p;
    p.begin = o;
    p.end = end;
    p.ignored_calls = static_cast<int>(count_complete(text, end, open, close));
    if (r1) {
        const std::string query = trim(body);
        if (query.empty()) return malformed("empty query", o, end);
        if (std::find(tools.begin(), tools.end(), "search") == tools.end())
            return malformed("unknown tool \"search\" (tools: " + tool_list(tools) + ")", o, end);
        p.call.name = "search";
        p.call.arguments = json{{"query", query}};
    } else {
        const std::string reason = read_hermes_body(trim(body), tools, &p.call);
        if (!reason.empty()) {
            ParsedToolCall bad = malformed(reason, o, end);
            bad.ignored_calls = p.ignored_calls;
            return bad;
        }
    }
    p.kind = ParsedToolCall::Kind::call;
    return p;
}

std::optional<std::string> extract_answer(std::string_view text, size_t* begin) {
    constexpr std::string_view open = "<answer>";
    constexpr std::string_view close = "</answer>";
    const size_t o = text.find(open);
    if (o == std::string_view::npos) return std::nullopt;
    const size_t c = text.find(close, o + open.size());
    if (c == std::string_view::npos) return std::nullopt;
    if (begin != nullptr) *begin = o;
    return std::string(trim(text.substr(o + open.size(), c - o - open.size())));
}

std::string render_observation(ToolSyntax syntax, std::string_view content) {
    if (syntax == ToolSyntax::search_r1)
        return "\n\n<information>" + std::string(trim(content)) + "</information>\n\n";
    return "<tool_response>\n" + std::string(content) + "\n</tool_response>";
}

std::string malformed_call_message(const std::string& reason) {
    return "error: malformed tool call: " + reason;
}

}  // namespace crucible
