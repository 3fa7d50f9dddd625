#include "serve/request_parse.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
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
        std::vector<ChatMessage> messages;
        for (size_t i = 0; i < msgs.size(); i++) {
            const json& m = msgs[i];
            const std::string at = "messages[" + std::to_string(i) + "]";
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                reject(at, "Invalid '" + at + "': each message needs a string 'role'.");
            const std::string role = m["role"].get<std::string>();
            if (role != "system" && role != "user" && role != "assistant") {
                reject(at + ".role", "Invalid '" + at + ".role': '" + role +
                                         "' is not one of 'system', 'user', 'assistant'.");
            }
            std::string content;
            const json c = m.contains("content") ? m["content"] : json();
            if (c.is_string()) {
                content = c.get<std::string>();
            } else if (c.is_array()) {  // content parts: only text ones
                for (const json& part : c) {
                    if (!part.is_object() || part.value("type", "") != "text" ||
                        !part.contains("text") || !part["text"].is_string()) {
                        reject(at + ".content",
                               "Invalid '" + at + ".content': only text parts are supported.");
                    }
                    content += part["text"].get<std::string>();
                }
            } else {
                reject(at + ".content", "Invalid '" + at +
                                            ".content': expected a string or an array of text "
                                            "parts, but got " +
                                            describe_type(c) + ".");
            }
            messages.push_back({role, content});
        }
        const std::string rendered = render_chat_text(model.tok->chat, messages, true);
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
    try {
        model.engine->validate(p.gen, chat ? "messages" : "prompt");
    } catch (const Error& e) {
        reject(chat ? "messages" : "prompt", e.what());
    }
    return p;
}

}  // namespace crucible
