#include "serve/response_write.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "serve/tool_calls.h"

namespace crucible {

using nlohmann::json;

namespace {

// Completions may end inside a UTF-8 sequence (byte-level tokens): replace, never throw.
std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* classify_error(int status) {
    if (status == 429) return "rate_limit_exceeded";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
}

json make_error_body(const ApiError& e) {
    return {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

// Bytes held back from a stream: a suffix that may still grow into a stop string, or an
// unfinished UTF-8 sequence.
size_t count_held_back(const std::string& text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const std::string& stop : stops) {
        for (size_t k = std::min(stop.size() - 1, text.size()); k > hold; k--) {
            if (text.compare(text.size() - k, k, stop, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    for (size_t back = 1; back <= std::min<size_t>(3, text.size()); back++) {
        const unsigned char b = text[text.size() - back];
        if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back
        const size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (need > back) hold = std::max(hold, back);
        break;
    }
    return hold;
}

json make_usage(const ParsedRequest& p, const std::vector<GeneratedSequence>& results) {
    int64_t done = 0;
    for (const GeneratedSequence& g : results) done += (int64_t)g.tokens.size();
    const int64_t prompt = (int64_t)p.gen.prompt.size();
    return {
        {"prompt_tokens", prompt}, {"completion_tokens", done}, {"total_tokens", prompt + done}};
}

// Tokens from..to of `g` with their logprobs and alternatives, in the chat shape
// ({"content": [...]}) or the completions one (parallel lists).
json make_logprobs(const TextTokenizer& tok, const GeneratedSequence& g, size_t from, size_t to,
                   bool chat) {
    auto bytes_of = [](const std::string& s) {
        json a = json::array();
        for (unsigned char ch : s) a.push_back((int)ch);
        return a;
    };
    if (chat) {
        json content = json::array();
        for (size_t t = from; t < to; t++) {
            const std::string piece = tok.decode({g.tokens[t]});
            json top = json::array();
            if (t < g.top_logprobs.size()) {
                for (const TokenLogprob& a : g.top_logprobs[t]) {
                    const std::string s = tok.decode({a.token});
                    top.push_back({{"token", s}, {"logprob", a.logprob}, {"bytes", bytes_of(s)}});
                }
            }
            content.push_back({{"token", piece},
                               {"logprob", g.logprobs[t]},
                               {"bytes", bytes_of(piece)},
                               {"top_logprobs", top}});
        }
        return {{"content", content}};
    }
    json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    size_t offset = 0;
    for (size_t t = from; t < to; t++) {
        const std::string piece = tok.decode({g.tokens[t]});
        tokens.push_back(piece);
        lps.push_back(g.logprobs[t]);
        offsets.push_back(offset);
        offset += piece.size();
        if (t < g.top_logprobs.size()) {
            json alts = json::object();
            for (const TokenLogprob& a : g.top_logprobs[t]) {
                const std::string s = tok.decode({a.token});
                if (!alts.contains(s)) alts[s] = a.logprob;
            }
            tops.push_back(alts);
        } else {
            tops.push_back(nullptr);
        }
    }
    return {{"tokens", tokens},
            {"token_logprobs", lps},
            {"top_logprobs", tops},
            {"text_offset", offsets}};
}

}  // namespace

// The text of one sample as its tokens arrive: an end-of-sequence token is not text, the text
// ends before the first stop string, and a stream holds back bytes that may still change (a
// possible start of a stop string, an unfinished UTF-8 sequence or the U+FFFD a tokenizer
// decodes one to). The whole sample is decoded each time: decoding token by token would split
// multi-byte characters. With tools, the text starts with the request's forced call opening
// (ParsedRequest::tool_prefix), a stream holds back everything from a possible <tool_call>
// on, and the last token splits the text into content and calls (serve/tool_calls.h).
class SampleText {
  public:
    explicit SampleText(const ParsedRequest& p) : text(p.tool_prefix), request_(p) {}

    // Adds a token; returns the content that became safe to send (all of it when `last`).
    std::string push(int32_t token, bool last, const TextTokenizer& tok) {
        const SamplingParams& sp = request_.gen.params;
        const size_t prefix = request_.tool_prefix.size();
        const auto& stop_ids = sp.stop_ids;
        if (!cut && std::find(stop_ids.begin(), stop_ids.end(), token) == stop_ids.end()) {
            ids.push_back(token);
            text = request_.tool_prefix + tok.decode(ids);
            size_t end = std::string::npos;
            for (const std::string& stop : sp.stop_strings)
                if (!stop.empty()) end = std::min(end, text.find(stop, prefix));
            if (end != std::string::npos) {
                text.resize(end);
                cut = true;
            }
        }
        const bool tools = !request_.tool_names.empty();
        size_t safe = text.size();
        if (last && tools) {
            tool_output =
                parse_tool_output(text, request_.tool_names, request_.parallel_tool_calls);
            safe = tool_output.called ? tool_output.content.size() : text.size();
        } else if (!last) {
            if (!cut) {
                static const std::string kReplacement = "\xEF\xBF\xBD";
                while (safe >= 3 && text.compare(safe - 3, 3, kReplacement) == 0) safe -= 3;
                safe -= count_held_back(text.substr(0, safe), sp.stop_strings);
            }
            if (tools) safe = std::min(safe, tool_content_end(text));
        }
        if (safe <= sent) return {};
        std::string out = text.substr(sent, safe - sent);
        sent = safe;
        return out;
    }

    std::vector<int32_t> ids;
    std::string text;  // the tool prefix, then the decoded sample up to its stop
    size_t sent = 0;
    bool cut = false;
    ParsedToolOutput tool_output;  // after the last token, with tools

  private:
    const ParsedRequest& request_;
};

namespace {

// The tool_calls of a message (whole) or a delta (with their index).
json make_tool_calls(const std::vector<OutputToolCall>& calls, const std::string& id, int sample,
                     bool delta) {
    json out = json::array();
    for (size_t k = 0; k < calls.size(); k++) {
        json c = {{"id", "call_" + id.substr(id.find('-') + 1) + "_" + std::to_string(sample) +
                             "_" + std::to_string(k)},
                  {"type", "function"},
                  {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
        if (delta) c["index"] = k;
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace

std::string format_error(const ApiError& e) {
    return dump(make_error_body(e));
}

std::string format_http_error(int status, const std::string& message) {
    return format_error(ApiError{status, message, "", classify_error(status), ""});
}

namespace {

json model_object(const ServedModel& model, int64_t created) {
    return {{"id", model.name},
            {"object", "model"},
            {"created", created},
            {"owned_by", "crucible"},
            {"max_model_len", model.context}};
}

}  // namespace

std::string format_model_list(const ServedModel& model, int64_t created) {
    return dump({{"object", "list"}, {"data", json::array({model_object(model, created)})}});
}

std::string format_model(const ServedModel& model, int64_t created) {
    return dump(model_object(model, created));
}

std::string format_completion(const ServedModel& model, const ParsedRequest& p,
                              const std::vector<GeneratedSequence>& results, const std::string& id,
                              int64_t policy_version) {
    json choices = json::array();
    for (size_t i = 0; i < results.size(); i++) {
        const GeneratedSequence& g = results[i];
        SampleText text(p);
        for (size_t t = 0; t < g.tokens.size(); t++)
            text.push(g.tokens[t], t + 1 == g.tokens.size(), *model.tok);
        const ParsedToolOutput& tools = text.tool_output;
        json c = {{"index", i}, {"finish_reason", tools.called ? "tool_calls" : g.finish_reason}};
        c["logprobs"] = p.top_logprobs >= 0
                            ? make_logprobs(*model.tok, g, 0, g.tokens.size(), p.chat)
                            : json(nullptr);
        if (p.chat && tools.called) {
            c["message"] = {
                {"role", "assistant"},
                {"content", tools.content.empty() ? json(nullptr) : json(tools.content)},
                {"tool_calls", make_tool_calls(tools.calls, id, (int)i, false)}};
        } else if (p.chat) {
            c["message"] = {{"role", "assistant"}, {"content", text.text}};
        } else {
            c["text"] = text.text;
        }
        if (p.return_token_ids) {
            c["token_ids"] = g.tokens;
            if (!p.chat) c["prompt_token_ids"] = p.gen.prompt;
        }
        choices.push_back(c);
    }
    json body = {{"id", id},
                 {"object", p.chat ? "chat.completion" : "text_completion"},
                 {"created", (int64_t)std::time(nullptr)},
                 {"model", model.name},
                 {"choices", choices},
                 {"usage", make_usage(p, results)}};
    if (p.return_token_ids && p.chat) body["prompt_token_ids"] = p.gen.prompt;
    if (policy_version >= 0) body["policy_version"] = policy_version;
    return dump(body);
}

// ---- streaming ---------------------------------------------------------------------------------

namespace {

// One chunk: the response's fields around `choices`, with `usage` when the request asked for it.
std::string format_chunk(const ServedModel& model, const ParsedRequest& p, const std::string& id,
                         int64_t created, json choices, const json& usage_value) {
    json chunk = {{"id", id},
                  {"object", p.chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created},
                  {"model", model.name},
                  {"choices", std::move(choices)}};
    if (p.include_usage) chunk["usage"] = usage_value;
    return "data: " + dump(chunk) + "\n\n";
}

// One choice of a chunk: a chat delta (empty on a finish that adds no text) or a text piece.
json format_choice(const ParsedRequest& p, int index, const std::string& piece,
                   const std::string& finish, json logprobs) {
    json ch = {{"index", index},
               {"logprobs", std::move(logprobs)},
               {"finish_reason", finish.empty() ? json(nullptr) : json(finish)}};
    if (p.chat) {
        ch["delta"] = finish.empty() || !piece.empty() ? json{{"content", piece}} : json::object();
    } else {
        ch["text"] = piece;
    }
    return ch;
}

}  // namespace

SseWriter::SseWriter(const ServedModel& model, const ParsedRequest& request, std::string id)
    : model_(model), request_(request), id_(std::move(id)), created_(std::time(nullptr)) {
    for (int i = 0; i < std::max(request.gen.n, 1); i++) texts_.emplace_back(request);
}

SseWriter::~SseWriter() = default;

std::string SseWriter::format_role_chunk() const {
    json first = json::array();
    for (int i = 0; i < (int)texts_.size(); i++) {
        first.push_back({{"index", i},
                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                         {"logprobs", nullptr},
                         {"finish_reason", nullptr}});
    }
    return format_chunk(model_, request_, id_, created_, first, nullptr);
}

std::string SseWriter::format_token_chunk(int sample, int32_t token, const std::string& finish) {
    const std::string piece = texts_[sample].push(token, !finish.empty(), *model_.tok);
    if (!finish.empty()) return format_last(sample, piece, finish, nullptr);
    if (piece.empty()) return {};
    return format_chunk(model_, request_, id_, created_,
                        json::array({format_choice(request_, sample, piece, "", nullptr)}),
                        nullptr);
}

std::string SseWriter::format_scored_chunk(int sample, const GeneratedSequence& g, size_t t) {
    const bool last = t + 1 == g.tokens.size();
    const std::string piece = texts_[sample].push(g.tokens[t], last, *model_.tok);
    json logprobs = make_logprobs(*model_.tok, g, t, t + 1, request_.chat);
    if (last) return format_last(sample, piece, g.finish_reason, std::move(logprobs));
    return format_chunk(
        model_, request_, id_, created_,
        json::array({format_choice(request_, sample, piece, "", std::move(logprobs))}), nullptr);
}

std::string SseWriter::format_last(int sample, const std::string& piece, const std::string& finish,
                                   json_value logprobs) {
    const ParsedToolOutput& tools = texts_[sample].tool_output;
    if (!tools.called) {
        return format_chunk(
            model_, request_, id_, created_,
            json::array({format_choice(request_, sample, piece, finish, std::move(logprobs))}),
            nullptr);
    }
    // The rest of the content, then each call whole in one delta (clients accumulate the
    // deltas of a call by its index), then the finish.
    std::string events;
    auto event = [&](json delta, json lp, const json& reason) {
        json ch = {{"index", sample},
                   {"delta", std::move(delta)},
                   {"logprobs", std::move(lp)},
                   {"finish_reason", reason}};
        events += format_chunk(model_, request_, id_, created_, json::array({ch}), nullptr);
    };
    if (!piece.empty()) event({{"content", piece}}, logprobs, nullptr);
    const json calls = make_tool_calls(tools.calls, id_, sample, true);
    for (const json& c : calls) event({{"tool_calls", json::array({c})}}, nullptr, nullptr);
    event(json::object(), piece.empty() ? std::move(logprobs) : json(nullptr), "tool_calls");
    return events;
}

std::string SseWriter::format_usage_chunk(const std::vector<GeneratedSequence>& results) const {
    return format_chunk(model_, request_, id_, created_, json::array(),
                        make_usage(request_, results));
}

std::string SseWriter::format_failure(const std::string& message) {
    return "data: " + format_error(ApiError{500, message, "", "server_error", ""}) + "\n\n";
}

}  // namespace crucible
