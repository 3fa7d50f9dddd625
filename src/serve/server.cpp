#include "serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "serve/http_front.h"
#include "serve/request_parse.h"
#include "serve/response_write.h"
#include "serve/rl_sessions.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {

namespace fs = std::filesystem;

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
    bool streaming = false;      // set before it is queued
    std::string session;         // the RL session it belongs to (empty: none)
    int64_t policy_version = 0;  // the weights it runs on (set when the engine takes it)
};

struct Server::Impl {
    ServerOptions o;
    std::unique_ptr<Model> owned_model;  // loaded from model_dir (none when borrowed)
    Model* model = nullptr;
    TextTokenizer owned_tok;
    const TextTokenizer* tok = nullptr;
    std::unique_ptr<Engine> engine;
    ServedModel served;  // name, limits, stop ids; points at tok and engine
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
    // Server::pause(): the engine takes no queued request and, once nothing runs, says so.
    bool paused = false;
    bool paused_idle = false;
    std::condition_variable idle_cv;
    int64_t policy_version = 0;
    ServerStats st;
    std::mt19937_64 seeds{std::random_device{}()};
    std::atomic<int64_t> next_id{1};
    int64_t generated = 0;  // tokens drawn (engine thread)
    std::thread engine_thread;

    explicit Impl(ServerOptions options);
    void engine_loop();
    void cancel(const std::shared_ptr<Channel>& c);
    void post(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader& read, bool chat);
    // `session`: the X-Session-Id header (empty: none; the body's `user` field may name it).
    void handle(const std::string& body, httplib::Response& res, bool chat,
                const std::string& session);
    // Records a finished request of an RL session with its hub.
    void record_turn(const Channel& c, const ParsedRequest& p);
    bool stream(const std::shared_ptr<Channel>& c, const ParsedRequest& p, const std::string& id,
                httplib::DataSink& sink, std::chrono::steady_clock::time_point start);
    // Counts a finished request and writes its log line: `p` and `results` are null for a
    // request refused before it ran.
    void finish_request(const std::string& id, bool chat, int status, const ParsedRequest* p,
                        const std::vector<GeneratedSequence>* results,
                        std::chrono::steady_clock::time_point start, const std::string& note);
    std::string metrics() const;
};

namespace {

// Stop ids: generation_config.json's eos_token_id (a number or a list) and the tokenizer's.
std::vector<int32_t> stop_ids_of(const fs::path& dir, int32_t tokenizer_eos) {
    std::vector<int32_t> ids = generation_eos_ids(dir);
    if (tokenizer_eos >= 0 && std::find(ids.begin(), ids.end(), tokenizer_eos) == ids.end())
        ids.push_back(tokenizer_eos);
    return ids;
}

// The id a folder is served as: its name, and for a training run's checkpoint
// (RUN/checkpoints/step-N) the run's name with it, "RUN/step-N", so that two runs' checkpoints
// of the same step are told apart.
std::string model_id_of(const fs::path& dir) {
    fs::path p = fs::absolute(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();  // a trailing slash
    const std::string name = p.filename().string();
    const fs::path parent = p.parent_path();
    if (name.rfind("step-", 0) == 0 && parent.filename() == "checkpoints" &&
        !parent.parent_path().filename().empty()) {
        return parent.parent_path().filename().string() + "/" + name;
    }
    return name;
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

}  // namespace

Server::Impl::Impl(ServerOptions options)
    : o(std::move(options)), http(http_limits(o), format_http_error) {
    if (o.max_queue < 0) throw Error("serve: --max-queue must be >= 0");
    if (o.max_body_bytes < 1) throw Error("serve: --max-body-mb must be > 0");
    if (!(o.request_timeout_s > 0) || !(o.keepalive_timeout_s > 0))
        throw Error("serve: --request-timeout and --keepalive-timeout must be > 0");
    if (o.max_connections < 1 || o.max_connections_per_client < 1)
        throw Error("serve: --max-connections and --max-connections-per-client must be >= 1");
    if (o.max_batch_seqs < 1) throw Error("serve: --max-batch-seqs must be >= 1");
    if (o.model) {  // borrowed (an RL run's policy)
        if (!o.tokenizer) throw Error("serve: a borrowed model needs its tokenizer");
        model = o.model;
        tok = o.tokenizer;
        served.stop_ids = o.stop_ids;
    } else {
        // A served model never trains: in bf16 or q8_0 its matrices are loaded in that alone.
        owned_model = load_model(o.model_dir, parse_matmul_dtype(o.dtype, "--dtype"));
        model = owned_model.get();
        owned_tok = fs::exists(o.model_dir / "tokenizer.json") ? load_text_tokenizer(o.model_dir)
                                                               : TextTokenizer(ByteTokenizer());
        tok = &owned_tok;
        served.stop_ids = stop_ids_of(o.model_dir, tok->eos);
    }
    if (tok->vocab_size > model->config().vocab_size) {
        throw Error((o.model_dir / "tokenizer.json").string() + ": the tokenizer has " +
                    std::to_string(tok->vocab_size) + " ids but config.json's vocab_size is " +
                    std::to_string(model->config().vocab_size));
    }
    served.name = o.served_model_name.empty() ? model_id_of(o.model_dir) : o.served_model_name;
    served.vocab_size = model->config().vocab_size;
    served.context = model->config().max_position_embeddings;
    served.tok = tok;
    EngineOptions eo;
    eo.max_batch_seqs = o.max_batch_seqs;
    eo.max_batch_tokens = o.max_batch_tokens;
    eo.detokenize = tok->decode;
    engine = std::make_unique<Engine>(*model, eo);
    served.engine = engine.get();
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
            // Paused (and not quitting): queued requests stay queued; once nothing runs,
            // pause() is told, and the loop sleeps until resumed.
            const auto hold = [&] { return paused && !quit; };
            if (hold() && live.empty() && !paused_idle) {
                paused_idle = true;
                idle_cv.notify_all();
            }
            engine_cv.wait(lock, [&] {
                return quit || (!hold() && !inbox.empty()) || !cancels.empty() || !live.empty() ||
                       (hold() && live.empty() && !paused_idle);
            });
            if (quit && inbox.empty() && live.empty()) break;
            if (!hold()) {
                for (const auto& c : inbox) c->policy_version = policy_version;
                jobs.swap(inbox);
            }
            drop.swap(cancels);
            engine_waiting += (int)jobs.size();  // counted as waiting until the step admits them
        }
        if (jobs.empty() && drop.empty() && live.empty()) continue;
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

bool Server::Impl::stream(const std::shared_ptr<Channel>& c, const ParsedRequest& p,
                          const std::string& id, httplib::DataSink& sink,
                          std::chrono::steady_clock::time_point start) {
    SseWriter out(served, p, id);
    auto send = [&sink](std::string_view event) { return sink.write(event.data(), event.size()); };
    auto gone = [&] {  // the client went away: stop generating for it
        cancel(c);
        finish_request(id, p.chat, 499, &p, nullptr, start, "client went away");
        return false;
    };
    if (p.chat && !send(out.format_role_chunk())) return gone();
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
            if (!send(kSseKeepAlive)) return gone();
            continue;
        }
        if (!buffered) {
            for (const Channel::Event& e : events) {
                const std::string chunk = out.format_token_chunk(e.sample, e.token, e.finish);
                if (chunk.empty()) continue;
                if (!send(chunk)) return gone();
            }
        }
        if (done) break;
    }
    if (!c->error.empty()) {
        send(SseWriter::format_failure(c->error));
    } else {
        if (buffered) {
            const int n = std::max(p.gen.n, 1);
            for (int i = 0; i < n && i < (int)c->results.size(); i++) {
                const GeneratedSequence& g = c->results[i];
                for (size_t t = 0; t < g.tokens.size(); t++) {
                    if (!send(out.format_scored_chunk(i, g, t))) return gone();
                }
            }
        }
        if (p.include_usage && !send(out.format_usage_chunk(c->results))) return gone();
    }
    if (!send(kSseDone)) return gone();
    // Counted and logged before the stream's end goes out: a client that has the whole answer
    // sees it in /metrics.
    if (c->error.empty()) {
        record_turn(*c, p);
        finish_request(id, p.chat, 200, &p, &c->results, start, "");
    } else {
        finish_request(id, p.chat, 500, &p, nullptr, start, c->error);
    }
    sink.done();
    return true;
}

void Server::Impl::finish_request(const std::string& id, bool chat, int status,
                                  const ParsedRequest* p,
                                  const std::vector<GeneratedSequence>* results,
                                  std::chrono::steady_clock::time_point start,
                                  const std::string& note) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int64_t completion = 0;
    std::string finish;
    if (results) {
        for (const GeneratedSequence& g : *results) {
            completion += (int64_t)g.tokens.size();
            if (finish.find(g.finish_reason) == std::string::npos)
                finish += (finish.empty() ? "" : ",") + g.finish_reason;
        }
    }
    {
        std::lock_guard<std::mutex> lock(mu);
        if (status == 200) {
            st.requests_answered++;
            st.request_seconds += seconds;
        } else if (status != 499) {
            st.requests_rejected++;
        }
    }
    if (!o.request_log) return;
    char line[512];
    std::snprintf(line, sizeof line, "%s %s %d prompt=%lld completion=%lld n=%d %s%.3fs",
                  id.c_str(), chat ? "chat" : "completions", status,
                  p ? (long long)p->gen.prompt.size() : 0LL, (long long)completion,
                  p ? std::max(p->gen.n, 1) : 0, p && p->stream ? "stream " : "", seconds);
    std::string out = line;
    if (!finish.empty()) out += " finish=" + finish;
    if (!note.empty()) {
        // One line whatever the message holds (it may quote what a client sent): control
        // characters become spaces, quotes and backslashes are escaped.
        std::string one;
        for (char ch : note.substr(0, 200)) {
            if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
            if (ch == '"' || ch == '\\') one += '\\';
            one += ch;
        }
        out += " error=\"" + one + "\"";
    }
    o.request_log(out);
}

std::string Server::Impl::metrics() const {
    ServerStats s;
    {
        std::lock_guard<std::mutex> lock(mu);
        s = st;
    }
    const HttpFront::Counters c = http.counters();
    std::string out;
    auto metric = [&out](const char* name, const char* type, const char* help, double value) {
        char line[64];
        std::snprintf(line, sizeof line, "%.17g", value);
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
               name + " " + line + "\n";
    };
    out +=
        "# HELP crucible_model_info The served model.\n# TYPE crucible_model_info gauge\n"
        "crucible_model_info{model=\"";
    for (char ch : served.name) {  // a label value escapes \\, \" and newlines
        if (ch == '\\' || ch == '"') out += '\\';
        if (ch == '\n') {
            out += "\\n";
            continue;
        }
        out += ch;
    }
    out += "\",max_model_len=\"" + std::to_string(served.context) + "\"} 1\n";
    metric("crucible_requests_total", "counter", "Completions requests accepted.", s.requests);
    metric("crucible_requests_answered_total", "counter",
           "Requests whose whole answer or stream was written.", s.requests_answered);
    metric("crucible_requests_rejected_total", "counter",
           "Completions requests answered with an error status.", s.requests_rejected);
    metric("crucible_requests_cancelled_total", "counter",
           "Requests whose client went away before they finished.", s.cancelled);
    metric("crucible_request_seconds_total", "counter",
           "Latency of the answered requests, summed (from parsed to answered).",
           s.request_seconds);
    metric("crucible_prompt_tokens_total", "counter", "Prompt tokens of the accepted requests.",
           s.prompt_tokens);
    metric("crucible_completion_tokens_total", "counter", "Tokens generated, all samples.",
           s.completion_tokens);
    metric("crucible_queue_length", "gauge", "Requests waiting to join the batch.", s.waiting);
    metric("crucible_running_sequences", "gauge", "Sequences in the batch.", s.running);
    metric("crucible_batch_occupancy", "gauge", "Sequences in the batch over --max-batch-seqs.",
           (double)s.running / o.max_batch_seqs);
    metric("crucible_kv_blocks", "gauge", "KV cache blocks (16 tokens each).", s.kv_blocks);
    metric("crucible_kv_blocks_free", "gauge", "KV cache blocks free.", s.free_kv_blocks);
    metric("crucible_kv_usage", "gauge", "Fraction of the KV cache in use.",
           s.kv_blocks > 0 ? 1.0 - (double)s.free_kv_blocks / s.kv_blocks : 0.0);
    metric("crucible_engine_steps_total", "counter", "Forward passes of the engine.", s.steps);
    metric("crucible_connections", "gauge", "Open HTTP connections.", c.open);
    metric("crucible_connections_refused_total", "counter",
           "Connections refused over the per-client or total limits.",
           (double)(c.refused_per_client + c.refused_total));
    return out;
}

void Server::Impl::post(const httplib::Request& req, httplib::Response& res,
                        const httplib::ContentReader& read, bool chat) {
    auto fail = [&res](int status, const std::string& message) {
        res.status = status;
        res.set_content(format_http_error(status, message), "application/json");
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
    handle(body, res, chat, req.get_header_value("X-Session-Id"));
}

void Server::Impl::record_turn(const Channel& c, const ParsedRequest& p) {
    if (c.session.empty() || c.results.empty()) return;
    const GeneratedSequence& g = c.results[0];
    o.rl_sessions->record(
        c.session, RlTurn{p.gen.prompt, g.tokens, g.logprobs, g.finish_reason, c.policy_version});
}

void Server::Impl::handle(const std::string& body, httplib::Response& res, bool chat,
                          const std::string& session) {
    const auto start = std::chrono::steady_clock::now();
    std::string id = "-";
    std::unique_ptr<ParsedRequest> parsed;
    try {
        ParsedRequest p = parse_request(body, chat, served, [this] {
            std::lock_guard<std::mutex> lock(mu);
            return seeds();
        });
        auto c = std::make_shared<Channel>();
        c->request = p.gen;
        c->streaming = p.stream;
        if (o.rl_sessions) {
            c->session = session.empty() ? p.user : session;
            if (!c->session.empty()) {
                o.rl_sessions->check(c->session, p.gen.n, p.gen.params);
                // The trace keeps the engine's logprobs of every completion.
                c->request.params.logprobs = std::max(c->request.params.logprobs, 0);
            }
        }
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
            st.prompt_tokens += (int64_t)p.gen.prompt.size();
            st.waiting = engine_waiting + (int)inbox.size();
        }
        engine_cv.notify_one();
        char hex[32];
        std::snprintf(hex, sizeof hex, "%llx", (unsigned long long)next_id++);
        id = std::string(chat ? "chatcmpl-" : "cmpl-") + hex;
        parsed = std::make_unique<ParsedRequest>(p);
        if (p.stream) {
            res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                "text/event-stream",
                [this, c, p, id, start](size_t, httplib::DataSink& sink) {
                    return stream(c, p, id, sink, start);
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
        record_turn(*c, p);
        res.set_content(
            format_completion(served, p, c->results, id, o.rl_sessions ? c->policy_version : -1),
            "application/json");
        finish_request(id, chat, 200, &p, &c->results, start, "");
    } catch (const ApiError& e) {
        res.status = e.status;
        if (e.status == 429) res.set_header("Retry-After", "1");
        res.set_content(format_error(e), "application/json");
        finish_request(id, chat, e.status, parsed.get(), nullptr, start,
                       (e.param.empty() ? "" : e.param + ": ") + e.message);
    }
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
    Impl& s = *impl_;
    // Answered by the HTTP front's loop itself: it answers while every worker is busy.
    s.http.answer_on_loop("/health", "{\"status\":\"ok\"}");
    auto models = [&s](const httplib::Request&, httplib::Response& res) {
        res.set_content(format_model_list(s.served, s.created), "application/json");
    };
    s.http.Get("/v1/models", models);
    s.http.Get(R"(/v1/models/(.+))", [&s](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        if (id != s.served.name) {
            res.status = 404;
            res.set_content(format_error(ApiError{
                                404,
                                "The model '" + id + "' does not exist (this server serves '" +
                                    s.served.name + "').",
                                "model", "invalid_request_error", "model_not_found"}),
                            "application/json");
            return;
        }
        res.set_content(format_model(s.served, s.created), "application/json");
    });
    s.http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
        res.set_content(s.metrics(), "text/plain; version=0.0.4");
    });
    s.http.Post("/v1/completions",
                [&s](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) { s.post(req, res, read, false); });
    s.http.Post("/v1/chat/completions",
                [&s](const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) { s.post(req, res, read, true); });
    if (s.o.rl_sessions) {
        RlSessionHub* hub = s.o.rl_sessions.get();
        auto answer = [](httplib::Response& res, const RlAnswer& a) {
            res.status = a.status;
            res.set_content(a.body, "application/json");
        };
        s.http.Post("/v1/rl/episodes",
                    [hub, answer](const httplib::Request& req, httplib::Response& res) {
                        answer(res, hub->take(req.body));
                    });
        s.http.Post("/v1/rl/reward",
                    [hub, answer](const httplib::Request& req, httplib::Response& res) {
                        answer(res, hub->post_reward(req.body));
                    });
        s.http.Get("/v1/rl/status", [hub, answer](const httplib::Request&, httplib::Response& res) {
            answer(res, hub->status());
        });
    }
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
            res.set_content(format_http_error(res.status, message), "application/json");
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
            res.set_content(format_error(ApiError{500, what, "", "server_error", ""}),
                            "application/json");
        });
    // The front sets TCP_NODELAY on every connection (responses go out as separate header and
    // body writes) and listens with a backlog of 1024.
    std::string why;
    s.port = s.http.bind_and_listen(s.o.host, s.o.port, &why);
    if (s.port <= 0) {
        throw Error("serve: cannot listen on " + s.o.host + ":" + std::to_string(s.o.port) + ": " +
                    (why.empty() ? std::string("unknown reason") : why));
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
    return impl_->served.name;
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

void Server::pause() {
    Impl& s = *impl_;
    std::unique_lock<std::mutex> lock(s.mu);
    s.paused = true;
    s.paused_idle = false;
    s.engine_cv.notify_one();
    s.idle_cv.wait(lock, [&s] { return s.paused_idle || s.quit; });
}

void Server::resume(int64_t policy_version) {
    Impl& s = *impl_;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.paused = false;
        s.paused_idle = false;
        s.policy_version = policy_version;
    }
    s.engine_cv.notify_one();
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
