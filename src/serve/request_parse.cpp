#include "serve/request_parse.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/python_json.h"
#include "tokenizer/chat_template.h"

namespace crucible {

using nlohmann::json;

namespace {

[[noreturn]] void reject(const std::string& param, const std::string& message) {
    throw ApiError{400, message, param, "invalid_request_error", ""};
}

std::string describe_type(const json& j) {
    if (j.is_number_integer()) return "an integer";
    if (j.is_number()) return "a number";
    if (j.is_string()) return "a string";
    if (j.is_boolean()) return "a boolean";
    if (j.is_array()) return "an array";
    if (j.is_object()) return "an object";
    return "null";
}

bool has_value(const json& b, const char* key) {
    return b.contains(key) && !b[key].is_null();
}

[[noreturn]] void reject_type(const char* key, const std::string& want, const json& got) {
    reject(key, std::string("Invalid type for '") + key + "': expected " + want + ", but got " +
                    describe_type(got) + ".");
}

double read_number(const json& b, const char* key, double def, double lo, double hi) {
    if (!has_value(b, key)) return def;
    if (!b[key].is_number()) reject_type(key, "a number", b[key]);
    const double v = b[key].get<double>();
    if (!(v >= lo && v <= hi)) {
        reject(key, std::string("Invalid value for '") + key + "': " + b[key].dump() +
                        " is not in [" + json(lo).dump() + ", " + json(hi).dump() + "].");
    }
    return v;
}

int64_t read_int(const json& b, const char* key, int64_t def, int64_t lo, int64_t hi) {
    if (!has_value(b, key)) return def;
    if (!b[key].is_number_integer()) reject_type(key, "an integer", b[key]);
    const bool huge = b[key].is_number_unsigned() && b[key].get<uint64_t>() > INT64_MAX;
    const int64_t v = huge ? INT64_MAX : b[key].get<int64_t>();
    if (huge || v < lo || v > hi) {
        reject(key, std::string("Invalid value for '") + key + "': " + b[key].dump() +
                        " is not in [" + std::to_string(lo) + ", " + std::to_string(hi) + "].");
    }
    return v;
}

bool read_bool(const json& b, const char* key, bool def) {
    if (!has_value(b, key)) return def;
    if (!b[key].is_boolean()) reject_type(key, "a boolean", b[key]);
    return b[key].get<bool>();
}

// A message's text content: a string or a list of text parts; null or absent is "" when
// `may_be_null` (an assistant turn that only calls tools).
std::string read_content(const json& m, const std::string& at, bool may_be_null) {
    const json c = m.contains("content") ? m["content"] : json();
    if (c.is_null() && may_be_null) return "";
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {  // content parts: only text ones
        std::string content;
        for (const json& part : c) {
            if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
                !part["text"].is_string()) {
                reject(at + ".content",
                       "Invalid '" + at + ".content': only text parts are supported.");
            }
            content += part["text"].get<std::string>();
        }
        return content;
    }
    reject(at + ".content", "Invalid '" + at +
                                ".content': expected a string or an array of text parts, but got " +
                                describe_type(c) + ".");
}

// The nesting depth of `j`, counted without recursion (a hostile body may nest millions deep),
// stopping once past `limit`.
size_t json_depth(const nlohmann::ordered_json& j, size_t limit) {
    std::vector<std::pair<const nlohmann::ordered_json*, size_t>> todo = {{&j, 1}};
    size_t deepest = 0;
    while (!todo.empty()) {
        const auto [node, depth] = todo.back();
        todo.pop_back();
        deepest = std::max(deepest, depth);
        if (deepest > limit) return deepest;
        if (node->is_structured())
            for (const auto& child : *node) todo.push_back({&child, depth + 1});
    }
    return deepest;
}

// How deep a tool definition or a call's arguments may nest: JSON Schemas and arguments are
// shallow; the limit keeps the writer (core/python_json.h, recursive) off a hostile depth.
constexpr size_t kMaxToolJsonDepth = 64;

// OpenAI's rule for function names.
bool valid_function_name(const std::string& name) {
    if (name.empty() || name.size() > 64) return false;
    for (char ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-') return false;
    }
    return true;
}

// An assistant message's tool_calls as the text the model wrote them in (the chat template's
// <tool_call> blocks, one per line after the content).
std::string render_tool_calls(const nlohmann::ordered_json& calls, const std::string& at) {
    using nlohmann::ordered_json;
    if (!calls.is_array()) reject_type((at + ".tool_calls").c_str(), "an array", json(calls));
    std::string text;
    for (size_t k = 0; k < calls.size(); k++) {
        const std::string here = at + ".tool_calls[" + std::to_string(k) + "]";
        const ordered_json& call = calls[k];
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) {
            reject(here, "Invalid '" + here +
                             "': expected {\"type\": \"function\", \"function\": "
                             "{\"name\", \"arguments\"}}.");
        }
        const ordered_json& f = call["function"];
        if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty())
            reject(here + ".function.name", "Invalid '" + here +
                                                ".function.name': expected a "
                                                "non-empty string.");
        ordered_json args = f.contains("arguments") ? f["arguments"] : ordered_json::object();
        if (args.is_string()) {
            // OpenAI sends arguments as JSON text; the template writes them as an object.
            args = ordered_json::parse(args.get<std::string>(), nullptr, false);
        }
        if (args.is_discarded() || !args.is_object()) {
            reject(here + ".function.arguments",
                   "Invalid '" + here +
                       ".function.arguments': expected a JSON object (or its "
                       "text).");
        }
        text += (k ? "\n" : "") +
                hermes_tool_call_text(f["name"].get<std::string>(), python_json_dumps(args));
    }
    return text;
}

}  // namespace

ParsedRequest parse_request(const std::string& text, bool chat, const ServedModel& model,
                            const std::function<uint64_t()>& draw_seed) {
    const json b = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (b.is_discarded()) {
        reject("",
               "We could not parse the JSON body of your request. (The body must be valid "
               "JSON.)");
    }
    if (!b.is_object()) reject("", "The request body must be a JSON object.");
    ParsedRequest p;
    p.chat = chat;
    if (has_value(b, "model")) {  // left out or "": the served model
        if (!b["model"].is_string()) reject_type("model", "a string", b["model"]);
        if (!b["model"].get<std::string>().empty() && b["model"].get<std::string>() != model.name) {
            throw ApiError{400,
                           "The model '" + b["model"].get<std::string>() +
                               "' does not exist (this server serves '" + model.name + "').",
                           "model", "invalid_request_error", "model_not_found"};
        }
    }
    // The prompt.
    std::vector<int32_t>& ids = p.gen.prompt;
    const int V = model.vocab_size;
    if (chat) {
        if (!b.contains("messages")) reject("messages", "Missing required parameter: 'messages'.");
        const json& msgs = b["messages"];
        if (!msgs.is_array()) reject_type("messages", "an array", msgs);
        if (msgs.empty()) reject("messages", "'messages' must hold at least one message.");
        // Tools and tool calls render as the request wrote them (key order included): read
        // those parts from an order-keeping parse of the body.
        nlohmann::ordered_json ordered;
        if (b.contains("tools") || text.find("\"tool_calls\"") != std::string::npos)
            ordered = nlohmann::ordered_json::parse(text);
        std::vector<ChatMessage> messages;
        for (size_t i = 0; i < msgs.size(); i++) {
            const json& m = msgs[i];
            const std::string at = "messages[" + std::to_string(i) + "]";
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                reject(at, "Invalid '" + at + "': each message needs a string 'role'.");
            const std::string role = m["role"].get<std::string>();
            if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
                reject(at + ".role", "Invalid '" + at + ".role': '" + role +
                                         "' is not one of 'system', 'user', 'assistant', "
                                         "'tool'.");
            }
            const bool calls = role == "assistant" && has_value(m, "tool_calls");
            std::string content = read_content(m, at, calls);
            if (calls) {
                const std::string text_calls =
                    render_tool_calls(ordered["messages"][i]["tool_calls"], at);
                content = content.empty() ? text_calls : content + "\n" + text_calls;
            }
            messages.push_back({role, content});
        }
        // tools, tool_choice, parallel_tool_calls.
        std::vector<std::string> tools;
        if (has_value(b, "tools")) {
            const auto& t = ordered["tools"];
            if (!t.is_array()) reject_type("tools", "an array", b["tools"]);
            for (size_t k = 0; k < t.size(); k++) {
                const std::string at = "tools[" + std::to_string(k) + "]";
                const auto& tool = t[k];
                if (!tool.is_object() || tool.value("type", "") != "function" ||
                    !tool.contains("function") || !tool["function"].is_object()) {
                    reject(at, "Invalid '" + at +
                                   "': expected {\"type\": \"function\", \"function\": {...}}.");
                }
                const auto& f = tool["function"];
                const std::string name = f.contains("name") && f["name"].is_string()
                                             ? f["name"].get<std::string>()
                                             : std::string();
                if (!valid_function_name(name)) {
                    reject(at + ".function.name",
                           "Invalid '" + at +
                               ".function.name': a function name is 1 to 64 of "
                               "a-z, A-Z, 0-9, '_' and '-'.");
                }
                if (std::find(p.tool_names.begin(), p.tool_names.end(), name) !=
                    p.tool_names.end()) {
                    reject(at + ".function.name",
                           "Invalid '" + at + ".function.name': '" + name + "' is offered twice.");
                }
                if (f.contains("parameters") && !f["parameters"].is_object())
                    reject(at + ".function.parameters",
                           "Invalid '" + at +
                               ".function.parameters': expected a JSON Schema "
                               "object.");
                if (json_depth(tool, kMaxToolJsonDepth) > kMaxToolJsonDepth)
                    reject(at, "Invalid '" + at + "': nested deeper than " +
                                   std::to_string(kMaxToolJsonDepth) + " levels.");
                p.tool_names.push_back(name);
                tools.push_back(python_json_dumps(tool));
            }
        }
        std::string choice = tools.empty() ? "none" : "auto";
        std::string forced;  // the function tool_choice names
        if (has_value(b, "tool_choice")) {
            const json& tc = b["tool_choice"];
            if (tc.is_string()) {
                choice = tc.get<std::string>();
                if (choice != "none" && choice != "auto" && choice != "required")
                    reject("tool_choice",
                           "Invalid value for 'tool_choice': '" + choice +
                               "' is not one of 'none', 'auto', 'required' or "
                               "{\"type\": \"function\", \"function\": {\"name\"}}.");
            } else if (tc.is_object() && tc.value("type", "") == "function" &&
                       tc.contains("function") && tc["function"].is_object() &&
                       tc["function"].contains("name") && tc["function"]["name"].is_string()) {
                choice = "named";
                forced = tc["function"]["name"].get<std::string>();
            } else {
                reject("tool_choice",
                       "Invalid 'tool_choice': expected 'none', 'auto', "
                       "'required' or {\"type\": \"function\", \"function\": "
                       "{\"name\"}}.");
            }
            if (choice != "none" && tools.empty())
                reject("tool_choice",
                       "Invalid 'tool_choice': '" + choice + "' needs 'tools' to choose from.");
            if (choice == "named" &&
                std::find(p.tool_names.begin(), p.tool_names.end(), forced) == p.tool_names.end())
                reject("tool_choice",
                       "Invalid 'tool_choice': no tool named '" + forced + "' is in 'tools'.");
        }
        p.parallel_tool_calls = read_bool(b, "parallel_tool_calls", true);
        if (choice == "required") p.tool_prefix = "<tool_call>\n{\"name\": \"";
        if (choice == "named")
            p.tool_prefix = "<tool_call>\n{\"name\": \"" + forced + "\", \"arguments\": ";
        if (choice == "none") p.tool_names.clear();  // rendered, as vLLM does, but not parsed
        std::string rendered;
        try {
            rendered = render_chat_text(model.tok->chat, messages, true, tools);
        } catch (const Error& e) {
            reject(tools.empty() ? "messages" : "tools",
                   std::string("Invalid request: ") + e.what() + ".");
        }
        rendered += p.tool_prefix;
        ids = model.tok->encode(rendered);
    } else {
        if (!b.contains("prompt")) reject("prompt", "Missing required parameter: 'prompt'.");
        json pr = b["prompt"];
        if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) pr = pr[0];
        if (pr.is_string()) {
            ids = model.tok->encode(pr.get<std::string>());
        } else if (pr.is_array() && !pr.empty() && pr[0].is_number()) {
            for (const json& id : pr) {
                if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= V) {
                    reject("prompt", "Invalid 'prompt': " + id.dump() +
                                         " is not a token id in [0, " + std::to_string(V) + ").");
                }
                ids.push_back(id.get<int32_t>());
            }
        } else {
            reject("prompt",
                   "Invalid 'prompt': expected a string, a list of token ids or a list "
                   "holding one string, but got " +
                       describe_type(pr) + ".");
        }
    }
    for (const char* key :
         {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"}) {
        if (has_value(b, key) && (!chat || key[0] == 'f')) {
            reject(key, std::string("'") + key + "' is not supported" +
                            (chat ? " (use 'tools' and 'tool_choice')."
                                  : " by /v1/completions (use /v1/chat/completions)."));
        }
    }
    if (has_value(b, "response_format")) {
        const json& rf = b["response_format"];
        if (!rf.is_object() || rf.value("type", "") != "text") {
            reject("response_format",
                   "Invalid 'response_format': only {\"type\": \"text\"} is supported (this "
                   "server has no constrained decoding for JSON output).");
        }
    }
    if (ids.empty()) reject(chat ? "messages" : "prompt", "The prompt is empty.");
    const int64_t P = static_cast<int64_t>(ids.size());
    if (P >= model.context) {
        throw ApiError{400,
                       "This model's maximum context length is " + std::to_string(model.context) +
                           " tokens. However, your prompt has " + std::to_string(P) +
                           " tokens, which leaves no room for a completion.",
                       chat ? "messages" : "prompt", "invalid_request_error",
                       "context_length_exceeded"};
    }
    // Sampling and output fields.
    SamplingParams& sp = p.gen.params;
    const char* max_key =
        chat && has_value(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    // 64-bit: a prompt plus max_tokens near INT_MAX must not wrap around.
    const int64_t max_tokens =
        read_int(b, max_key, chat ? model.context - P : 16, 1, std::numeric_limits<int>::max());
    if (P + max_tokens > model.context) {
        throw ApiError{400,
                       "This model's maximum context length is " + std::to_string(model.context) +
                           " tokens. However, you requested " + std::to_string(P + max_tokens) +
                           " tokens (" + std::to_string(P) + " in the prompt, " +
                           std::to_string(max_tokens) +
                           " for the completion). Please reduce the prompt or the completion.",
                       max_key, "invalid_request_error", "context_length_exceeded"};
    }
    sp.max_tokens = static_cast<int>(max_tokens);
    p.gen.n = static_cast<int>(read_int(b, "n", 1, 1, 128));
    sp.temperature = static_cast<float>(read_number(b, "temperature", 1.0, 0.0, 2.0));
    // Checked as the double it was sent as: a positive value below float's range is the
    // smallest positive float (it keeps the most likely token, as any tiny top_p does).
    const double top_p = read_number(b, "top_p", 1.0, 0.0, 1.0);
    if (!(top_p > 0.0)) reject("top_p", "Invalid value for 'top_p': must be > 0.");
    sp.top_p = std::max(static_cast<float>(top_p), std::numeric_limits<float>::min());
    const int64_t top_k = read_int(b, "top_k", 0, -1, V);
    sp.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);  // vLLM's -1: off
    sp.min_p = static_cast<float>(read_number(b, "min_p", 0.0, 0.0, 1.0));
    if (has_value(b, "seed")) {
        if (!b["seed"].is_number_integer()) reject_type("seed", "an integer", b["seed"]);
        sp.seed = b["seed"].is_number_unsigned() ? b["seed"].get<uint64_t>()
                                                 : static_cast<uint64_t>(b["seed"].get<int64_t>());
    } else {
        sp.seed = draw_seed();
    }
    if (has_value(b, "stop")) {
        const json& s = b["stop"];
        if (s.is_string()) {
            sp.stop_strings.push_back(s.get<std::string>());
        } else if (s.is_array()) {
            for (const json& x : s) {
                if (!x.is_string()) reject_type("stop", "a string or an array of strings", s);
                sp.stop_strings.push_back(x.get<std::string>());
            }
        } else {
            reject_type("stop", "a string or an array of strings", s);
        }
        for (const std::string& x : sp.stop_strings)
            if (x.empty()) reject("stop", "Invalid 'stop': stop strings must not be empty.");
    }
    sp.stop_ids = model.stop_ids;
    if (read_bool(b, "ignore_eos", false)) sp.stop_ids.clear();  // vLLM's extension
    if (chat) {
        const bool want = read_bool(b, "logprobs", false);
        const int64_t top = read_int(b, "top_logprobs", -1, 0, 20);
        if (top >= 0 && !want) {
            reject("top_logprobs", "Invalid 'top_logprobs': requires 'logprobs' to be true.");
        }
        if (want) p.top_logprobs = static_cast<int>(std::max<int64_t>(top, 0));
    } else {
        if (has_value(b, "logprobs") && b["logprobs"].is_boolean()) {
            reject_type("logprobs", "an integer", b["logprobs"]);
        }
        p.top_logprobs = static_cast<int>(read_int(b, "logprobs", -1, 0, 20));
        if (read_bool(b, "echo", false)) reject("echo", "'echo' is not supported.");
    }
    sp.logprobs = p.top_logprobs;
    p.stream = read_bool(b, "stream", false);
    if (has_value(b, "stream_options")) {
        const json& so = b["stream_options"];
        if (!so.is_object()) reject_type("stream_options", "an object", so);
        if (!p.stream) reject("stream_options", "'stream_options' requires 'stream' to be true.");
        p.include_usage = read_bool(so, "include_usage", false);
    }
    if (has_value(b, "user")) {
        if (!b["user"].is_string()) reject_type("user", "a string", b["user"]);
        p.user = b["user"].get<std::string>();
    }
    p.return_token_ids = read_bool(b, "return_token_ids", false);
    if (p.return_token_ids && p.stream) {
        reject("return_token_ids", "'return_token_ids' is not supported with 'stream'.");
    }
    try {
        model.engine->validate(p.gen, chat ? "messages" : "prompt");
    } catch (const Error& e) {
        reject(chat ? "messages" : "prompt", e.what());
    }
    return p;
}

}  // namespace crucible
