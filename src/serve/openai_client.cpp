#include "serve/openai_client.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <thread>

#include "core/error.h"
#include "core/json_fields.h"

namespace crucible {

using nlohmann::json;

// What one call ended with: a transport error, or a status with its body and retry hints.
struct OpenAIClient::Reply {
    httplib::Error error = httplib::Error::Success;
    int status = 0;
    std::string body;           // the whole body, except a 2xx body that went to a sink
    double retry_after_s = -1;  // from Retry-After / retry-after-ms; negative when absent
};

namespace {

bool retryable(const httplib::Error error, int status) {
    if (error != httplib::Error::Success)  // a bad certificate will not get better by retrying
        return error != httplib::Error::Canceled &&
               error != httplib::Error::SSLServerVerification &&
               error != httplib::Error::SSLLoadingCerts;
    return status == 429 || status >= 500;
}

std::string describe_transport(httplib::Error error, double timeout_s) {
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%g s", timeout_s);
    switch (error) {
        case httplib::Error::Connection:
            return "could not connect (refused, unreachable or no such host)";
        case httplib::Error::ConnectionTimeout:
            return std::string("connect timed out after ") + seconds;
        case httplib::Error::Read:
            return std::string("no response: read timed out after ") + seconds +
                   " or the connection closed";
        case httplib::Error::Write:
            return "could not send the request (connection closed)";
        case httplib::Error::SSLConnection:
            return "TLS handshake failed";
        case httplib::Error::SSLServerVerification:
            return "TLS server certificate verification failed";
        default:
            return "transport error " + httplib::to_string(error);
    }
}

// "<message> (<type>)" from an OpenAI-style error body {"error": {"message", "type"}}, or
// the body's start when it has another shape.
std::string error_text(const std::string& body) {
    const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("error")) {
        const json& err = parsed["error"];
        if (err.is_string()) return err.get<std::string>();
        if (err.is_object()) {
            std::string text = string_or(err, "message");
            const std::string type = string_or(err, "type");
            if (!type.empty()) text += " (" + type + ")";
            return text;
        }
    }
    return body.substr(0, 300);
}

std::string describe_status(int status, const std::string& body) {
    const std::string text = error_text(body);
    return "HTTP " + std::to_string(status) + (text.empty() ? "" : ": " + text);
}

// "{prefix}/{path}", whether or not `path` starts with a slash.
std::string join_path(const std::string& prefix, const std::string& path) {
    return prefix + (path.starts_with('/') ? "" : "/") + path;
}

double parse_seconds(const std::string& text) {
    if (text.empty()) return -1;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !std::isfinite(v) || v < 0) return -1;  // e.g. an HTTP-date
    return v;
}

Usage parse_usage(const json& response) {
    Usage u;
    auto it = response.find("usage");
    if (it == response.end() || !it->is_object()) return u;
    if (it->contains("prompt_tokens") && (*it)["prompt_tokens"].is_number_integer())
        u.prompt_tokens = (*it)["prompt_tokens"].get<int64_t>();
    if (it->contains("completion_tokens") && (*it)["completion_tokens"].is_number_integer())
        u.completion_tokens = (*it)["completion_tokens"].get<int64_t>();
    return u;
}

double logprob_value(const json& v) {
    return v.is_number() ? v.get<double>() : -std::numeric_limits<double>::infinity();
}

// Legacy completions: {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{tok: lp}]}.
std::vector<TokenTextLogprob> parse_completion_logprobs(const json& lp) {
    std::vector<TokenTextLogprob> out;
    const json& tokens = lp.at("tokens");
    const json& values = lp.at("token_logprobs");
    const json* tops = lp.contains("top_logprobs") && lp["top_logprobs"].is_array()
                           ? &lp["top_logprobs"]
                           : nullptr;
    for (size_t i = 0; i < tokens.size(); ++i) {
        TokenTextLogprob t{tokens.at(i).get<std::string>(), logprob_value(values.at(i)), {}};
        if (tops && i < tops->size() && (*tops)[i].is_object()) {
            for (const auto& [tok, v] : (*tops)[i].items())
                t.top.emplace_back(tok, logprob_value(v));
            std::stable_sort(t.top.begin(), t.top.end(),
                             [](const auto& a, const auto& b) { return a.second > b.second; });
        }
        out.push_back(std::move(t));
    }
    return out;
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob"}]}]}.
void append_chat_logprobs(const json& lp, std::vector<TokenTextLogprob>& out) {
    const json& content = lp.at("content");
    if (content.is_null()) return;
    for (const json& entry : content) {
        TokenTextLogprob t{
            entry.at("token").get<std::string>(), logprob_value(entry.at("logprob")), {}};
        if (entry.contains("top_logprobs") && entry["top_logprobs"].is_array())
            for (const json& alt : entry["top_logprobs"])
                t.top.emplace_back(alt.at("token").get<std::string>(),
                                   logprob_value(alt.at("logprob")));
        out.push_back(std::move(t));
    }
}

template <class Result>
Result parse_result(const json& response, bool chat) {
    Result result;
    result.id = string_or(response, "id");
    result.model = string_or(response, "model");
    result.usage = parse_usage(response);
    const json& choices = response.at("choices");
    if (!choices.is_array()) throw Error("'choices' is not an array");
    for (const json& c : choices) {
        Choice choice;
        choice.index = c.value("index", static_cast<int>(result.choices.size()));
        if (chat) {
            const json& message = c.at("message");
            choice.text = string_or(message, "content");
            choice.reasoning = string_or(message, "reasoning_content");
        } else {
            choice.text = c.at("text").get<std::string>();
        }
        choice.finish_reason = string_or(c, "finish_reason");
        if (c.contains("logprobs") && c["logprobs"].is_object()) {
            if (chat) {
                choice.logprobs.emplace();
                append_chat_logprobs(c["logprobs"], *choice.logprobs);
            } else {
                choice.logprobs = parse_completion_logprobs(c["logprobs"]);
            }
        }
        result.choices.push_back(std::move(choice));
    }
    std::stable_sort(result.choices.begin(), result.choices.end(),
                     [](const Choice& a, const Choice& b) { return a.index < b.index; });
    return result;
}

void put_common(json& body, const std::string& model, int max_tokens, double temperature,
                double top_p, int n, const std::vector<std::string>& stop,
                const std::optional<int64_t>& seed) {
    body["model"] = model;
    body["max_tokens"] = max_tokens;
    body["temperature"] = temperature;
    body["top_p"] = top_p;
    body["n"] = n;
    if (!stop.empty()) body["stop"] = stop;
    if (seed) body["seed"] = *seed;
}

json chat_body(const ChatRequest& r) {
    json body = json::object();
    put_common(body, r.model, r.max_tokens, r.temperature, r.top_p, r.n, r.stop, r.seed);
    body["messages"] = json::array();
    for (const ChatMessage& m : r.messages)
        body["messages"].push_back({{"role", m.role}, {"content", m.content}});
    if (r.logprobs || r.top_logprobs) body["logprobs"] = true;
    if (r.top_logprobs) body["top_logprobs"] = *r.top_logprobs;
    return body;
}

// Splits "http://host:port/prefix" into "http://host:port" and "/prefix".
std::pair<std::string, std::string> split_base_url(const std::string& url) {
    const auto bad = [&](const std::string& why) {
        return Error("OpenAI client: base_url '" + url + "' " + why +
                     " (expected http[s]://host[:port][/prefix], e.g. http://127.0.0.1:8000/v1)");
    };
    const size_t sep = url.find("://");
    if (sep == std::string::npos) throw bad("has no scheme");
    std::string scheme = url.substr(0, sep);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (scheme != "http" && scheme != "https") throw bad("has scheme '" + scheme + "'");
    const std::string rest = url.substr(sep + 3);
    if (rest.find_first_of("?#") != std::string::npos) throw bad("has a query or fragment");
    const size_t slash = rest.find('/');
    const std::string authority = rest.substr(0, slash);
    if (authority.empty()) throw bad("has no host");
    std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    return {scheme + "://" + authority, prefix};
}

// Incremental parser of server-sent events: feeds each event's data to `on_data`.
class SseParser {
  public:
    explicit SseParser(std::function<void(const std::string&)> on_data)
        : on_data_(std::move(on_data)) {}

    void feed(const char* data, size_t size) {
        buffer_.append(data, size);
        size_t start = 0;
        for (size_t nl; (nl = buffer_.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string line = buffer_.substr(start, nl - start);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            take_line(line);
        }
        buffer_.erase(0, start);
    }
    void finish() {
        if (!buffer_.empty()) take_line(buffer_);
        buffer_.clear();
        take_line("");
    }

  private:
    void take_line(const std::string& line) {
        if (line.empty()) {  // a blank line ends an event
            if (has_data_) on_data_(data_);
            data_.clear();
            has_data_ = false;
        } else if (line.rfind("data:", 0) == 0) {
            size_t from = 5;
            if (from < line.size() && line[from] == ' ') ++from;
            if (has_data_) data_ += '\n';
            data_ += line.substr(from);
            has_data_ = true;
        }  // comments (":...") and other fields (event:, id:, retry:) carry nothing we use
    }

    std::function<void(const std::string&)> on_data_;
    std::string buffer_;
    std::string data_;
    bool has_data_ = false;
};

}  // namespace

OpenAIClient::OpenAIClient(ClientOptions options)
    : options_(std::move(options)),
      slots_(std::max(1, options_.max_concurrency)),
      rng_(options_.seed) {
    std::tie(scheme_host_port_, path_prefix_) = split_base_url(options_.base_url);
    if (!options_.api_key_env.empty())
        if (const char* key = std::getenv(options_.api_key_env.c_str())) api_key_ = key;
    if (!httplib::Client(scheme_host_port_).is_valid())
        throw Error("OpenAI client: cannot create an HTTP client for '" + options_.base_url + "'");
}

ClientUsage OpenAIClient::usage() const {
    return {requests_.load(), prompt_tokens_.load(), completion_tokens_.load(), retries_.load(),
            failures_.load()};
}

void OpenAIClient::add_usage(const Usage& usage) {
    prompt_tokens_ += usage.prompt_tokens;
    completion_tokens_ += usage.completion_tokens;
}

void OpenAIClient::fail(const std::string& message) {
    ++failures_;
    throw Error(message);
}

double OpenAIClient::backoff_delay(int attempt, const Reply& reply) {
    if (reply.status == 429 && reply.retry_after_s >= 0)
        return std::min(reply.retry_after_s, options_.backoff_max_s);
    const double base =
        std::min(options_.backoff_max_s, options_.backoff_initial_s * std::pow(2.0, attempt));
    double u;
    {
        std::lock_guard<std::mutex> lock(rng_mutex_);
        u = rng_.uniform();
    }
    return base * (0.5 + 0.5 * u);  // "equal jitter": spreads clients that failed together
}

OpenAIClient::Reply OpenAIClient::send_once(const std::string& method, const std::string& target,
                                            const std::string& body, const BodySink* sink,
                                            bool* delivered) {
    // Held for the whole exchange (a stream included), released while backing off.
    slots_.acquire();
    struct Release {
        std::counting_semaphore<>& s;
        ~Release() { s.release(); }
    } release{slots_};

    // One connection per call: httplib::Client is not safe to share between threads, and a
    // completion's latency dwarfs a local connect.
    httplib::Client client(scheme_host_port_);
    const auto timeout =
        std::chrono::microseconds(static_cast<int64_t>(std::max(options_.timeout_s, 1e-3) * 1e6));
    client.set_connection_timeout(timeout);
    client.set_read_timeout(timeout);
    client.set_write_timeout(timeout);
    client.set_keep_alive(false);
    client.set_tcp_nodelay(true);  // header and body are separate writes (see server.cpp)

    httplib::Request req;
    req.method = method;
    req.path = target;
    req.headers = {{"User-Agent", "crucible"},
                   {"Accept", sink ? "text/event-stream" : "application/json"}};
    if (!api_key_.empty()) req.headers.emplace("Authorization", "Bearer " + api_key_);
    if (method == "POST") {
        req.headers.emplace("Content-Type", "application/json");
        req.body = body;
    }
    Reply reply;
    if (sink) {
        req.response_handler = [&](const httplib::Response& res) {
            reply.status = res.status;
            return true;
        };
        req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
            if (reply.status < 200 || reply.status >= 300) {
                reply.body.append(data, size);
                return true;
            }
            *delivered = true;
            return (*sink)(data, size);
        };
    }
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    client.send(req, res, error);
    reply.error = error;
    if (res.status > 0) reply.status = res.status;
    if (!sink) reply.body = std::move(res.body);
    if (res.has_header("retry-after-ms"))
        reply.retry_after_s = parse_seconds(res.get_header_value("retry-after-ms")) / 1000.0;
    else if (res.has_header("Retry-After"))
        reply.retry_after_s = parse_seconds(res.get_header_value("Retry-After"));
    return reply;
}

OpenAIClient::Reply OpenAIClient::send(const std::string& method, const std::string& path,
                                       const std::string& body, const BodySink* sink) {
    ++requests_;
    const std::string target = join_path(path_prefix_, path);
    const std::string what = method + " " + scheme_host_port_ + target;
    for (int attempt = 0;; ++attempt) {
        bool delivered = false;
        Reply reply = send_once(method, target, body, sink, &delivered);
        const bool ok =
            reply.error == httplib::Error::Success && reply.status >= 200 && reply.status < 300;
        if (ok) return reply;
        if (reply.error == httplib::Error::Canceled) return reply;  // the sink stopped it
        const std::string why = reply.error != httplib::Error::Success
                                    ? describe_transport(reply.error, options_.timeout_s)
                                    : describe_status(reply.status, reply.body);
        if (!retryable(reply.error, reply.status) || delivered || attempt >= options_.max_retries) {
            std::string message = what + ": " + why;
            if (attempt > 0) message += " (after " + std::to_string(attempt + 1) + " attempts)";
            fail(message);
        }
        ++retries_;
        const double delay = backoff_delay(attempt, reply);
        if (options_.sleep_fn) {
            options_.sleep_fn(delay);
        } else {
            std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        }
    }
}

json OpenAIClient::post_json(const std::string& path, const json& body) {
    Reply reply = send("POST", path, body.dump(), nullptr);
    json parsed = json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded())
        fail("POST " + scheme_host_port_ + join_path(path_prefix_, path) +
             ": response is not JSON: " + reply.body.substr(0, 200));
    if (parsed.is_object()) add_usage(parse_usage(parsed));
    return parsed;
}

json OpenAIClient::get_json(const std::string& path) {
    Reply reply = send("GET", path, "", nullptr);
    json parsed = json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded())
        fail("GET " + scheme_host_port_ + join_path(path_prefix_, path) +
             ": response is not JSON: " + reply.body.substr(0, 200));
    return parsed;
}

CompletionResult OpenAIClient::complete(const CompletionRequest& r) {
    json body = json::object();
    put_common(body, r.model, r.max_tokens, r.temperature, r.top_p, r.n, r.stop, r.seed);
    body["prompt"] = r.prompt;
    if (r.logprobs) body["logprobs"] = *r.logprobs;
    body.merge_patch(r.extra);
    const json response = post_json("completions", body);
    try {
        return parse_result<CompletionResult>(response, /*chat=*/false);
    } catch (const std::exception& e) {
        fail("POST " + base_url() + "/completions: unexpected response (" + e.what() + ")");
    }
}

ChatResult OpenAIClient::chat(const ChatRequest& r) {
    json body = chat_body(r);
    body.merge_patch(r.extra);
    const json response = post_json("chat/completions", body);
    try {
        return parse_result<ChatResult>(response, /*chat=*/true);
    } catch (const std::exception& e) {
        fail("POST " + base_url() + "/chat/completions: unexpected response (" + e.what() + ")");
    }
}

ChatResult OpenAIClient::chat_stream(const ChatRequest& r,
                                     const std::function<void(const ChatDelta&)>& on_delta) {
    json body = chat_body(r);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    body.merge_patch(r.extra);
    const std::string url = base_url() + "/chat/completions";

    ChatResult result;
    std::exception_ptr thrown;
    bool thrown_by_callback = false;
    bool in_callback = false;
    bool done = false;
    const auto choice_at = [&](int index) -> Choice& {
        for (Choice& c : result.choices)
            if (c.index == index) return c;
        result.choices.emplace_back().index = index;
        return result.choices.back();
    };
    SseParser parser([&](const std::string& data) {
        if (done) return;
        if (data == "[DONE]") {
            done = true;
            return;
        }
        const json chunk = json::parse(data, nullptr, /*allow_exceptions=*/false);
        if (chunk.is_discarded()) throw Error("a stream chunk is not JSON: " + data.substr(0, 200));
        if (chunk.contains("error"))
            throw Error("the stream carried an error: " + error_text(data));
        if (result.id.empty()) result.id = string_or(chunk, "id");
        if (result.model.empty()) result.model = string_or(chunk, "model");
        if (chunk.contains("usage") && chunk["usage"].is_object())
            result.usage = parse_usage(chunk);
        if (!chunk.contains("choices")) return;
        for (const json& c : chunk.at("choices")) {
            ChatDelta delta;
            delta.index = c.value("index", 0);
            Choice& choice = choice_at(delta.index);
            if (c.contains("delta") && c["delta"].is_object()) {
                delta.content = string_or(c["delta"], "content");
                choice.text += delta.content;
                choice.reasoning += string_or(c["delta"], "reasoning_content");
            }
            if (c.contains("logprobs") && c["logprobs"].is_object()) {
                if (!choice.logprobs) choice.logprobs.emplace();
                append_chat_logprobs(c["logprobs"], *choice.logprobs);
            }
            delta.finish_reason = string_or(c, "finish_reason");
            if (!delta.finish_reason.empty()) choice.finish_reason = delta.finish_reason;
            if (!delta.content.empty() || !delta.finish_reason.empty()) {
                in_callback = true;
                on_delta(delta);
                in_callback = false;
            }
        }
    });
    // Exceptions must not cross httplib's frames: keep the first and stop the transfer.
    const BodySink sink = [&](const char* data, size_t size) {
        try {
            parser.feed(data, size);
            return true;
        } catch (...) {
            thrown = std::current_exception();
            thrown_by_callback = in_callback;
            return false;
        }
    };
    send("POST", "chat/completions", body.dump(), &sink);
    if (!thrown) {
        try {
            parser.finish();
        } catch (...) {
            thrown = std::current_exception();
            thrown_by_callback = in_callback;
        }
    }
    if (thrown) {
        ++failures_;
        if (thrown_by_callback) std::rethrow_exception(thrown);
        try {
            std::rethrow_exception(thrown);
        } catch (const Error& e) {
            throw Error("POST " + url + ": " + e.what());
        } catch (const nlohmann::json::exception& e) {
            throw Error("POST " + url + ": unexpected stream chunk (" + e.what() + ")");
        }
    }
    std::stable_sort(result.choices.begin(), result.choices.end(),
                     [](const Choice& a, const Choice& b) { return a.index < b.index; });
    add_usage(result.usage);
    return result;
}

std::vector<std::string> OpenAIClient::models() {
    const json response = get_json("models");
    try {
        std::vector<std::string> ids;
        for (const json& m : response.at("data")) ids.push_back(m.at("id").get<std::string>());
        return ids;
    } catch (const std::exception& e) {
        fail("GET " + base_url() + "/models: unexpected response (" + e.what() + ")");
    }
}

}  // namespace crucible
