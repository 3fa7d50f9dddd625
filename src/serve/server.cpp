#include "serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "serve/http_front.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// An answer other than 200: OpenAI's error body {"error": {message, type, param, code}}.
struct ApiError {
    int status;
    std::string message;
    std::string param;  // the offending field; empty: null
    std::string type = "invalid_request_error";
    std::string code;  // empty: null
};

[[noreturn]] void bad(const std::string& param, const std::string& message) {
    throw ApiError{400, message, param, "invalid_request_error", ""};
}

const char* error_type(int status) {
    if (status == 429) return "rate_limit_exceeded";
    if (status >= 500) return "server_error";
    return "invalid_request_error";
}

json error_body(const ApiError& e) {
    return {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

// Completions may end inside a UTF-8 sequence (byte-level tokens): replace, never throw.
std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string type_name(const json& j) {
    if (j.is_number_integer()) return "an integer";
    if (j.is_number()) return "a number";
    if (j.is_string()) return "a string";
    if (j.is_boolean()) return "a boolean";
    if (j.is_array()) return "an array";
    if (j.is_object()) return "an object";
    return "null";
}

bool present(const json& b, const char* key) {
    return b.contains(key) && !b[key].is_null();
}

[[noreturn]] void wrong_type(const char* key, const std::string& want, const json& got) {
    bad(key, std::string("Invalid type for '") + key + "': expected " + want + ", but got " +
                 type_name(got) + ".");
}

double number_field(const json& b, const char* key, double def, double lo, double hi) {
    if (!present(b, key)) return def;
    if (!b[key].is_number()) wrong_type(key, "a number", b[key]);
    const double v = b[key].get<double>();
    if (!(v >= lo && v <= hi)) {
        bad(key, std::string("Invalid value for '") + key + "': " + b[key].dump() + " is not in [" +
                     json(lo).dump() + ", " + json(hi).dump() + "].");
    }
    return v;
}

int64_t int_field(const json& b, const char* key, int64_t def, int64_t lo, int64_t hi) {
    if (!present(b, key)) return def;
    if (!b[key].is_number_integer()) wrong_type(key, "an integer", b[key]);
    const bool huge = b[key].is_number_unsigned() && b[key].get<uint64_t>() > INT64_MAX;
    const int64_t v = huge ? INT64_MAX : b[key].get<int64_t>();
    if (huge || v < lo || v > hi) {
        bad(key, std::string("Invalid value for '") + key + "': " + b[key].dump() + " is not in [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "].");
    }
    return v;
}

bool bool_field(const json& b, const char* key, bool def) {
    if (!present(b, key)) return def;
    if (!b[key].is_boolean()) wrong_type(key, "a boolean", b[key]);
    return b[key].get<bool>();
}

// Bytes held back from a stream: a suffix that may still grow into a stop string, or an
// unfinished UTF-8 sequence.
size_t holdback(const std::string& text, const std::vector<std::string>& stops) {
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

// What a request asks for, after validation.
struct Parsed {
    bool chat = false;
    bool stream = false;
    bool include_usage = false;
    GenerationRequest gen;
    int top_logprobs = -1;  // -1: no logprobs; else alternatives per token
};

}  // namespace

// One request's channel between the engine thread (callbacks) and its HTTP handler.
struct Channel {
    struct Event {
        int sample;
        int32_t token;
        std::string finish;
    };
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Event> events;
    bool done = false;
    std::string error;  // set with done when the engine failed the request
    std::vector<GeneratedSequence> results;
    GenerationRequest request;  // moved into the engine when submitted
    int64_t engine_id = 0;      // engine thread only
    std::atomic<bool> cancelled{false};
    bool streaming = false;  // set before it is queued
};

// The text of one sample as its tokens arrive: an end-of-sequence token is not text, the text
// ends before the first stop string, and a stream holds back bytes that may still change (a
// possible start of a stop string, an unfinished UTF-8 sequence or the U+FFFD a tokenizer
// decodes one to). The whole sample is decoded each time: decoding token by token would split
// multi-byte characters.
struct SampleText {
    std::vector<int32_t> ids;
    std::string text;
    size_t sent = 0;
    bool cut = false;

    // Adds a token; returns the text that became safe to send (all of it when `last`).
    std::string push(int32_t tok, bool last, const TextTokenizer& tok_, const Parsed& p) {
        const auto& stop_ids = p.gen.params.stop_ids;
        if (!cut && std::find(stop_ids.begin(), stop_ids.end(), tok) == stop_ids.end()) {
            ids.push_back(tok);
            text = tok_.decode(ids);
            size_t end = std::string::npos;
            for (const std::string& stop : p.gen.params.stop_strings)
                if (!stop.empty()) end = std::min(end, text.find(stop));
            if (end != std::string::npos) {
                text.resize(end);
                cut = true;
            }
        }
        size_t safe = text.size();
        if (!last && !cut) {
            static const std::string kReplacement = "\xEF\xBF\xBD";
            while (safe >= 3 && text.compare(safe - 3, 3, kReplacement) == 0) safe -= 3;
            safe -= holdback(text.substr(0, safe), p.gen.params.stop_strings);
        }
        if (safe <= sent) return {};
        std::string out = text.substr(sent, safe - sent);
        sent = safe;
        return out;
    }
};

struct Server::Impl {
    ServerOptions o;
    std::unique_ptr<Model> model;
    TextTokenizer tok;
    std::vector<int32_t> stop_ids;
    std::unique_ptr<Engine> engine;
    std::string name;
    int context = 0;
    int64_t created = std::time(nullptr);
    HttpFront http;
    int port = 0;

    mutable std::mutex mu;
    std::condition_variable engine_cv;
    std::deque<std::shared_ptr<Channel>> inbox;
    std::vector<std::shared_ptr<Channel>> cancels;
    int engine_waiting = 0;  // requests handed to the engine, not yet in its batch
    bool quit = false;       // the engine thread exits once idle
    bool stopping = false;
    ServerStats st;
    std::mt19937_64 seeds{std::random_device{}()};
    std::atomic<int64_t> next_id{1};
    int64_t generated = 0;  // tokens drawn (engine thread)
    std::thread engine_thread;

    explicit Impl(ServerOptions options);
    void engine_loop();
    void cancel(const std::shared_ptr<Channel>& c);
    Parsed parse(const std::string& body, bool chat);
    void post(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& read, bool chat);
    void handle(const std::string& body, httplib::Response& res, bool chat);
    json logprobs_json(const GeneratedSequence& g, size_t from, size_t to, bool chat) const;
    json final_json(const Parsed& p, const std::vector<GeneratedSequence>& results,
                    const std::string& id) const;
    bool stream(const std::shared_ptr<Channel>& c, const Parsed& p, const std::string& id,
                httplib::DataSink& sink);
    json usage(const Parsed& p, const std::vector<GeneratedSequence>& results) const {
        int64_t done = 0;
        for (const GeneratedSequence& g : results) done += (int64_t)g.tokens.size();
        const int64_t prompt = (int64_t)p.gen.prompt.size();
        return {{"prompt_tokens", prompt},
                {"completion_tokens", done},
                {"total_tokens", prompt + done}};
    }
};

namespace {

// Stop ids: generation_config.json's eos_token_id (a number or a list) and the tokenizer's.
std::vector<int32_t> stop_ids_of(const fs::path& dir, int32_t tokenizer_eos) {
    std::vector<int32_t> ids = generation_eos_ids(dir);
    if (tokenizer_eos >= 0 && std::find(ids.begin(), ids.end(), tokenizer_eos) == ids.end())
        ids.push_back(tokenizer_eos);
    return ids;
}

HttpLimits http_limits(const ServerOptions& o) {
    HttpLimits l;
    l.max_body_bytes = o.max_body_bytes;
    l.request_timeout_s = o.request_timeout_s;
    l.keepalive_timeout_s = o.keepalive_timeout_s;
    l.max_connections = o.max_connections;
    l.max_connections_per_client = o.max_connections_per_client;
    l.workers = std::max(o.http_threads, 2);
    // All request bytes being received or processed at once: at least four bodies at the limit.
    l.max_buffered_bytes = std::max<size_t>(size_t(256) << 20, 4 * o.max_body_bytes);
    return l;
}

std::string http_error_json(int status, const std::string& message) {
    return dump(error_body(ApiError{status, message, "", error_type(status), ""}));
}

}  // namespace

Server::Impl::Impl(ServerOptions options)
    : o(std::move(options)), http(http_limits(o), http_error_json) {
    if (o.max_queue < 0) throw Error("serve: --max-queue must be >= 0");
    if (o.max_body_bytes < 1) throw Error("serve: --max-body-mb must be > 0");
    if (!(o.request_timeout_s > 0) || !(o.keepalive_timeout_s > 0))
        throw Error("serve: --request-timeout and --keepalive-timeout must be > 0");
    if (o.max_connections < 1 || o.max_connections_per_client < 1)
        throw Error("serve: --max-connections and --max-connections-per-client must be >= 1");
    if (o.max_batch_seqs < 1) throw Error("serve: --max-batch-seqs must be >= 1");
    model = load_model(o.model_dir);
    tok = fs::exists(o.model_dir / "tokenizer.json") ? load_text_tokenizer(o.model_dir)
                                                     : TextTokenizer(ByteTokenizer());
    if (tok.vocab_size > model->config().vocab_size) {
        throw Error((o.model_dir / "tokenizer.json").string() + ": the tokenizer has " +
                    std::to_string(tok.vocab_size) + " ids but config.json's vocab_size is " +
                    std::to_string(model->config().vocab_size));
    }
    stop_ids = stop_ids_of(o.model_dir, tok.eos);
    context = model->config().max_position_embeddings;
    name = o.served_model_name.empty()
               ? fs::absolute(o.model_dir).lexically_normal().filename().string()
               : o.served_model_name;
    if (name.empty()) name = fs::absolute(o.model_dir).parent_path().filename().string();
    EngineOptions eo;
    eo.max_batch_seqs = o.max_batch_seqs;
    eo.max_batch_tokens = o.max_batch_tokens;
    eo.detokenize = tok.decode;
    engine = std::make_unique<Engine>(*model, eo);
    st.kv_blocks = st.free_kv_blocks = engine->kv_blocks();
}

void Server::Impl::cancel(const std::shared_ptr<Channel>& c) {
    if (c->cancelled.exchange(true)) return;
    {
        std::lock_guard<std::mutex> lock(mu);
        cancels.push_back(c);
        st.cancelled++;
    }
    engine_cv.notify_one();
}

void Server::Impl::engine_loop() {
    std::map<int64_t, std::shared_ptr<Channel>> live;  // by engine id
    int64_t steps = 0;
    auto fail = [](Channel& c, const std::string& why) {
        std::lock_guard<std::mutex> lock(c.mu);
        c.error = why;
        c.done = true;
        c.cv.notify_all();
    };
    for (;;) {
        std::deque<std::shared_ptr<Channel>> jobs;
        std::vector<std::shared_ptr<Channel>> drop;
        {
            std::unique_lock<std::mutex> lock(mu);
            engine_cv.wait(
                lock, [&] { return quit || !inbox.empty() || !cancels.empty() || !live.empty(); });
            if (quit && inbox.empty() && live.empty()) break;
            jobs.swap(inbox);
            drop.swap(cancels);
            engine_waiting += (int)jobs.size();  // counted as waiting until the step admits them
        }
        for (const auto& c : drop) {
            if (c->engine_id != 0 && live.erase(c->engine_id) > 0) engine->cancel(c->engine_id);
        }
        for (const auto& c : jobs) {
            if (c->cancelled) continue;
            Channel* raw = c.get();
            try {
                c->engine_id = engine->submit(
                    std::move(c->request),
                    [this, raw](int sample, int32_t token, const std::string& finish) {
                        generated++;
                        std::lock_guard<std::mutex> lock(raw->mu);
                        if (!raw->streaming) return;  // a whole answer waits for done only
                        raw->events.push_back({sample, token, finish});
                        raw->cv.notify_all();
                    },
                    [raw, &live](std::vector<GeneratedSequence>&& results) {
                        {
                            std::lock_guard<std::mutex> lock(raw->mu);
                            raw->results = std::move(results);
                            raw->done = true;
                            raw->cv.notify_all();
                        }
                        live.erase(raw->engine_id);
                    });
                live[c->engine_id] = c;
            } catch (const std::exception& e) {
                fail(*c, e.what());
            }
        }
        bool stepped = false;
        try {
            stepped = engine->step();
        } catch (const std::exception& e) {
            // An engine bug, not bad input: fail what is running rather than hang its clients.
            std::fprintf(stderr, "serve: engine step failed: %s\n", e.what());
            for (auto& [id, c] : live) {
                engine->cancel(id);
                fail(*c, std::string("engine failure: ") + e.what());
            }
            live.clear();
        }
        {
            std::lock_guard<std::mutex> lock(mu);
            engine_waiting = engine->num_waiting();
            st.steps = engine->steps();
            st.max_step_sequences = std::max(st.max_step_sequences, engine->last_step_sequences());
            st.step_threads = engine->last_step_threads();
            st.running = engine->num_running();
            st.waiting = engine_waiting + (int)inbox.size();
            st.free_kv_blocks = engine->free_kv_blocks();
            st.completion_tokens = generated;
        }
        if (stepped && o.after_step) o.after_step(++steps);
    }
}

Parsed Server::Impl::parse(const std::string& text, bool chat) {
    const json b = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (b.is_discarded()) {
        bad("",
            "We could not parse the JSON body of your request. (The body must be valid "
            "JSON.)");
    }
    if (!b.is_object()) bad("", "The request body must be a JSON object.");
    Parsed p;
    p.chat = chat;
    if (present(b, "model")) {  // left out or "": the served model
        if (!b["model"].is_string()) wrong_type("model", "a string", b["model"]);
        if (!b["model"].get<std::string>().empty() && b["model"].get<std::string>() != name) {
            throw ApiError{400,
                           "The model '" + b["model"].get<std::string>() +
                               "' does not exist (this server serves '" + name + "').",
                           "model", "invalid_request_error", "model_not_found"};
        }
    }
    // The prompt.
    std::vector<int32_t>& ids = p.gen.prompt;
    const int V = model->config().vocab_size;
    if (chat) {
        if (!b.contains("messages")) bad("messages", "Missing required parameter: 'messages'.");
        const json& msgs = b["messages"];
        if (!msgs.is_array()) wrong_type("messages", "an array", msgs);
        if (msgs.empty()) bad("messages", "'messages' must hold at least one message.");
        std::vector<ChatMessage> messages;
        for (size_t i = 0; i < msgs.size(); i++) {
            const json& m = msgs[i];
            const std::string at = "messages[" + std::to_string(i) + "]";
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                bad(at, "Invalid '" + at + "': each message needs a string 'role'.");
            const std::string role = m["role"].get<std::string>();
            if (role != "system" && role != "user" && role != "assistant") {
                bad(at + ".role", "Invalid '" + at + ".role': '" + role +
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
                        bad(at + ".content",
                            "Invalid '" + at + ".content': only text parts are supported.");
                    }
                    content += part["text"].get<std::string>();
                }
            } else {
                bad(at + ".content", "Invalid '" + at +
                                         ".content': expected a string or an array of text "
                                         "parts, but got " +
                                         type_name(c) + ".");
            }
            messages.push_back({role, content});
        }
        const std::string rendered = render_chat_text(tok.chat, messages, true);
        ids = tok.encode(rendered);
    } else {
        if (!b.contains("prompt")) bad("prompt", "Missing required parameter: 'prompt'.");
        json pr = b["prompt"];
        if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) pr = pr[0];
        if (pr.is_string()) {
            ids = tok.encode(pr.get<std::string>());
        } else if (pr.is_array() && !pr.empty() && pr[0].is_number()) {
            for (const json& id : pr) {
                if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= V) {
                    bad("prompt", "Invalid 'prompt': " + dump(id) + " is not a token id in [0, " +
                                      std::to_string(V) + ").");
                }
                ids.push_back(id.get<int32_t>());
            }
        } else {
            bad("prompt",
                "Invalid 'prompt': expected a string, a list of token ids or a list "
                "holding one string, but got " +
                    type_name(pr) + ".");
        }
    }
    if (ids.empty()) bad(chat ? "messages" : "prompt", "The prompt is empty.");
    const int64_t P = static_cast<int64_t>(ids.size());
    if (P >= context) {
        throw ApiError{400,
                       "This model's maximum context length is " + std::to_string(context) +
                           " tokens. However, your prompt has " + std::to_string(P) +
                           " tokens, which leaves no room for a completion.",
                       chat ? "messages" : "prompt", "invalid_request_error",
                       "context_length_exceeded"};
    }
    // Sampling and output fields.
    SamplingParams& sp = p.gen.params;
    const char* max_key =
        chat && present(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    // 64-bit: a prompt plus max_tokens near INT_MAX must not wrap around.
    const int64_t max_tokens =
        int_field(b, max_key, chat ? context - P : 16, 1, std::numeric_limits<int>::max());
    if (P + max_tokens > context) {
        throw ApiError{400,
                       "This model's maximum context length is " + std::to_string(context) +
                           " tokens. However, you requested " + std::to_string(P + max_tokens) +
                           " tokens (" + std::to_string(P) + " in the prompt, " +
                           std::to_string(max_tokens) +
                           " for the completion). Please reduce the prompt or the completion.",
                       max_key, "invalid_request_error", "context_length_exceeded"};
    }
    sp.max_tokens = static_cast<int>(max_tokens);
    p.gen.n = static_cast<int>(int_field(b, "n", 1, 1, 128));
    sp.temperature = static_cast<float>(number_field(b, "temperature", 1.0, 0.0, 2.0));
    // Checked as the double it was sent as: a positive value below float's range is the
    // smallest positive float (it keeps the most likely token, as any tiny top_p does).
    const double top_p = number_field(b, "top_p", 1.0, 0.0, 1.0);
    if (!(top_p > 0.0)) bad("top_p", "Invalid value for 'top_p': must be > 0.");
    sp.top_p = std::max(static_cast<float>(top_p), std::numeric_limits<float>::min());
    const int64_t top_k = int_field(b, "top_k", 0, -1, V);
    sp.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);  // vLLM's -1: off
    sp.min_p = static_cast<float>(number_field(b, "min_p", 0.0, 0.0, 1.0));
    if (present(b, "seed")) {
        if (!b["seed"].is_number_integer()) wrong_type("seed", "an integer", b["seed"]);
        sp.seed = b["seed"].is_number_unsigned() ? b["seed"].get<uint64_t>()
                                                 : static_cast<uint64_t>(b["seed"].get<int64_t>());
    } else {
        std::lock_guard<std::mutex> lock(mu);
        sp.seed = seeds();
    }
    if (present(b, "stop")) {
        const json& s = b["stop"];
        if (s.is_string()) {
            sp.stop_strings.push_back(s.get<std::string>());
        } else if (s.is_array()) {
            for (const json& x : s) {
                if (!x.is_string()) wrong_type("stop", "a string or an array of strings", s);
                sp.stop_strings.push_back(x.get<std::string>());
            }
        } else {
            wrong_type("stop", "a string or an array of strings", s);
        }
        for (const std::string& x : sp.stop_strings)
            if (x.empty()) bad("stop", "Invalid 'stop': stop strings must not be empty.");
    }
    sp.stop_ids = stop_ids;
    if (bool_field(b, "ignore_eos", false)) sp.stop_ids.clear();  // vLLM's extension
    if (chat) {
        const bool want = bool_field(b, "logprobs", false);
        const int64_t top = int_field(b, "top_logprobs", -1, 0, 20);
        if (top >= 0 && !want) {
            bad("top_logprobs", "Invalid 'top_logprobs': requires 'logprobs' to be true.");
        }
        if (want) p.top_logprobs = static_cast<int>(std::max<int64_t>(top, 0));
    } else {
        if (present(b, "logprobs") && b["logprobs"].is_boolean()) {
            wrong_type("logprobs", "an integer", b["logprobs"]);
        }
        p.top_logprobs = static_cast<int>(int_field(b, "logprobs", -1, 0, 20));
        if (bool_field(b, "echo", false)) bad("echo", "'echo' is not supported.");
    }
    sp.logprobs = p.top_logprobs;
    p.stream = bool_field(b, "stream", false);
    if (present(b, "stream_options")) {
        const json& so = b["stream_options"];
        if (!so.is_object()) wrong_type("stream_options", "an object", so);
        if (!p.stream) bad("stream_options", "'stream_options' requires 'stream' to be true.");
        p.include_usage = bool_field(so, "include_usage", false);
    }
    try {
        engine->validate(p.gen, chat ? "messages" : "prompt");
    } catch (const Error& e) {
        bad(chat ? "messages" : "prompt", e.what());
    }
    return p;
}

json Server::Impl::logprobs_json(const GeneratedSequence& g, size_t from, size_t to,
                                 bool chat) const {
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

json Server::Impl::final_json(const Parsed& p, const std::vector<GeneratedSequence>& results,
                              const std::string& id) const {
    json choices = json::array();
    for (size_t i = 0; i < results.size(); i++) {
        const GeneratedSequence& g = results[i];
        SampleText text;
        for (size_t t = 0; t < g.tokens.size(); t++)
            text.push(g.tokens[t], t + 1 == g.tokens.size(), tok, p);
        json c = {{"index", i}, {"finish_reason", g.finish_reason}};
        c["logprobs"] =
            p.top_logprobs >= 0 ? logprobs_json(g, 0, g.tokens.size(), p.chat) : json(nullptr);
        if (p.chat) {
            c["message"] = {{"role", "assistant"}, {"content", text.text}};
        } else {
            c["text"] = text.text;
        }
        choices.push_back(c);
    }
    return {{"id", id},
            {"object", p.chat ? "chat.completion" : "text_completion"},
            {"created", (int64_t)std::time(nullptr)},
            {"model", name},
            {"choices", choices},
            {"usage", usage(p, results)}};
}

bool Server::Impl::stream(const std::shared_ptr<Channel>& c, const Parsed& p, const std::string& id,
                          httplib::DataSink& sink) {
    const int64_t created = std::time(nullptr);
    auto send = [&](json choices, const json& usage_value) {
        json chunk = {{"id", id},
                      {"object", p.chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", created},
                      {"model", name},
                      {"choices", std::move(choices)}};
        if (p.include_usage) chunk["usage"] = usage_value;
        const std::string s = "data: " + dump(chunk) + "\n\n";
        return sink.write(s.data(), s.size());
    };
    auto choice = [&](int index, const std::string& piece, const std::string& finish,
                      json logprobs) {
        json ch = {{"index", index},
                   {"logprobs", std::move(logprobs)},
                   {"finish_reason", finish.empty() ? json(nullptr) : json(finish)}};
        if (p.chat) {
            ch["delta"] =
                finish.empty() || !piece.empty() ? json{{"content", piece}} : json::object();
        } else {
            ch["text"] = piece;
        }
        return ch;
    };
    auto gone = [&] {  // the client went away: stop generating for it
        cancel(c);
        return false;
    };
    const int n = std::max(p.gen.n, 1);
    std::vector<SampleText> texts(n);
    if (p.chat) {
        json first = json::array();
        for (int i = 0; i < n; i++) {
            first.push_back({{"index", i},
                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                             {"logprobs", nullptr},
                             {"finish_reason", nullptr}});
        }
        if (!send(first, nullptr)) return gone();
    }
    // With logprobs the text waits for the re-scored results (they come when every sample of
    // the request is done); otherwise each token goes out as soon as it is safe.
    const bool buffered = p.top_logprobs >= 0;
    const auto heartbeat = std::chrono::duration<double>(std::max(o.heartbeat_s, 0.001));
    for (;;) {
        std::deque<Channel::Event> events;
        bool done = false;
        {
            std::unique_lock<std::mutex> lock(c->mu);
            c->cv.wait_for(lock, heartbeat, [&] { return !c->events.empty() || c->done; });
            events.swap(c->events);
            done = c->done;
        }
        if (events.empty() && !done) {
            static const char kComment[] = ": keep-alive\n\n";
            if (!sink.write(kComment, sizeof(kComment) - 1)) return gone();
            continue;
        }
        if (!buffered) {
            for (const Channel::Event& e : events) {
                const std::string piece = texts[e.sample].push(e.token, !e.finish.empty(), tok, p);
                if (piece.empty() && e.finish.empty()) continue;
                if (!send(json::array({choice(e.sample, piece, e.finish, nullptr)}), nullptr))
                    return gone();
            }
        }
        if (done) break;
    }
    if (!c->error.empty()) {
        const std::string s =
            "data: " + dump(error_body(ApiError{500, c->error, "", "server_error", ""})) + "\n\n";
        sink.write(s.data(), s.size());
    } else {
        if (buffered) {
            for (int i = 0; i < n && i < (int)c->results.size(); i++) {
                const GeneratedSequence& g = c->results[i];
                for (size_t t = 0; t < g.tokens.size(); t++) {
                    const bool last = t + 1 == g.tokens.size();
                    const std::string piece = texts[i].push(g.tokens[t], last, tok, p);
                    if (!send(json::array({choice(i, piece, last ? g.finish_reason : "",
                                                  logprobs_json(g, t, t + 1, p.chat))}),
                              nullptr)) {
                        return false;
                    }
                }
            }
        }
        if (p.include_usage && !send(json::array(), usage(p, c->results))) return false;
    }
    static const char kDone[] = "data: [DONE]\n\n";
    if (!sink.write(kDone, sizeof(kDone) - 1)) return false;
    sink.done();
    return true;
}

void Server::Impl::post(const httplib::Request& req, httplib::Response& res,
                        const httplib::ContentReader& read, bool chat) {
    auto fail = [&res](int status, const std::string& message) {
        res.status = status;
        res.set_content(http_error_json(status, message), "application/json");
    };
    // The body is JSON whatever the Content-Type says (curl -d sends a form type); only a
    // multipart body, which would have to be taken apart, is refused.
    if (req.is_multipart_form_data()) {
        return fail(400,
                    "The request body must be a JSON object (Content-Type: application/json), "
                    "not multipart/form-data.");
    }
    // Read here, not by httplib, so that the limit holds for the inflated size of a gzip or
    // deflate body too.
    std::string body;
    bool over = false;
    const bool ok = read([&](const char* data, size_t n) {
        if (n > o.max_body_bytes - body.size()) {
            over = true;
            return false;
        }
        body.append(data, n);
        return true;
    });
    if (over) {
        return fail(413, "The request body is larger than the server's limit of " +
                             std::to_string(o.max_body_bytes) + " bytes (--max-body-mb).");
    }
    if (!ok) {
        const std::string enc = req.get_header_value("Content-Encoding");
        return fail(400,
                    enc.empty()
                        ? "The request body could not be read."
                        : "The request body could not be decoded (Content-Encoding: " + enc + ").");
    }
    handle(body, res, chat);
}

void Server::Impl::handle(const std::string& body, httplib::Response& res, bool chat) {
    try {
        Parsed p = parse(body, chat);
        auto c = std::make_shared<Channel>();
        c->request = p.gen;
        c->streaming = p.stream;
        {
            std::lock_guard<std::mutex> lock(mu);
            if (stopping) {
                throw ApiError{503, "The server is shutting down.", "", "server_error", ""};
            }
            if ((int)inbox.size() + engine_waiting >= o.max_queue) {
                throw ApiError{429,
                               "The server is busy: " + std::to_string(o.max_queue) +
                                   " requests are already waiting. Retry later.",
                               "", "rate_limit_exceeded", "rate_limit_exceeded"};
            }
            inbox.push_back(c);
            st.requests++;
            st.waiting = engine_waiting + (int)inbox.size();
        }
        engine_cv.notify_one();
        char hex[32];
        std::snprintf(hex, sizeof hex, "%llx", (unsigned long long)next_id++);
        const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + hex;
        if (p.stream) {
            res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                "text/event-stream",
                [this, c, p, id](size_t, httplib::DataSink& sink) {
                    return stream(c, p, id, sink);
                },
                [this, c](bool) {
                    // However the response ended (headers unwritable, client gone), a request
                    // still generating is dropped.
                    bool done = false;
                    {
                        std::lock_guard<std::mutex> lock(c->mu);
                        done = c->done;
                    }
                    if (!done) cancel(c);
                });
            return;
        }
        std::unique_lock<std::mutex> lock(c->mu);
        c->cv.wait(lock, [&] { return c->done; });
        if (!c->error.empty()) throw ApiError{500, c->error, "", "server_error", ""};
        res.set_content(dump(final_json(p, c->results, id)), "application/json");
    } catch (const ApiError& e) {
        res.status = e.status;
        if (e.status == 429) res.set_header("Retry-After", "1");
        res.set_content(dump(error_body(e)), "application/json");
    }
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
    Impl& s = *impl_;
    // Answered by the HTTP front's loop itself: it answers while every worker is busy.
    s.http.answer_on_loop("/health", "{\"status\":\"ok\"}");
    auto models = [&s](const httplib::Request&, httplib::Response& res) {
        const json m = {{"object", "list"},
                        {"data",
                         {{{"id", s.name},
                           {"object", "model"},
                           {"created", s.created},
                           {"owned_by", "crucible"},
                           {"max_model_len", s.context}}}}};
        res.set_content(dump(m), "application/json");
    };
    s.http.Get("/v1/models", models);
    s.http.Post("/v1/completions",
                [&s](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) { s.post(req, res, read, false); });
    s.http.Post("/v1/chat/completions",
                [&s](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) { s.post(req, res, read, true); });
    s.http.set_error_handler(
        httplib::Server::Handler([&s](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;
            std::string message = "HTTP " + std::to_string(res.status) + ".";
            switch (res.status) {
                case 400:
                    message = "The request is not valid HTTP.";
                    break;
                case 404:
                    message = "Not found: " + req.method + " " + req.path;
                    break;
                case 413:
                    message = "The request body is larger than the server's limit of " +
                              std::to_string(s.o.max_body_bytes) + " bytes (--max-body-mb).";
                    break;
                case 414:
                    message = "The request URI is too long.";
                    break;
                case 415:
                    message = "Unsupported Content-Encoding: " +
                              req.get_header_value("Content-Encoding") + ".";
                    break;
                case 416:
                    message = "Range requests are not supported.";
                    break;
            }
            res.set_content(http_error_json(res.status, message), "application/json");
        }));
    s.http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            res.status = 500;
            res.set_content(dump(error_body(ApiError{500, what, "", "server_error", ""})),
                            "application/json");
        });
    // The front sets TCP_NODELAY on every connection (responses go out as separate header and
    // body writes) and listens with a backlog of 1024.
    s.port = s.http.bind_and_listen(s.o.host, s.o.port);
    if (s.port <= 0) {
        throw Error("serve: cannot listen on " + s.o.host + ":" + std::to_string(s.o.port));
    }
    s.engine_thread = std::thread([&s] { s.engine_loop(); });
}

Server::~Server() {
    stop();
    Impl& s = *impl_;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.quit = true;
    }
    s.engine_cv.notify_one();
    if (s.engine_thread.joinable()) s.engine_thread.join();
}

int Server::port() const {
    return impl_->port;
}
const std::string& Server::model_name() const {
    return impl_->name;
}

void Server::run() {
    // Returns after stop(): the listening socket closed, every in-flight request (streams
    // included) finished.
    impl_->http.serve();
}

void Server::stop() {
    Impl& s = *impl_;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.stopping = true;
    }
    s.http.shutdown();
}

ServerStats Server::stats() const {
    ServerStats st;
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        st = impl_->st;
    }
    const HttpFront::Counters c = impl_->http.counters();
    st.connections = c.open;
    st.connections_refused = c.refused_per_client + c.refused_total;
    st.requests_timed_out = c.timed_out;
    st.requests_too_large = c.too_large;
    return st;
}

}  // namespace crucible
