// A client for any OpenAI-compatible HTTP endpoint (crucible serve, vLLM, llama.cpp, hosted
// APIs): completions, chat (plain and streamed) and the model list, with retries, timeouts, a
// concurrency limit shared by all threads using one client, and token-usage totals. It uses
// core only, so the judge, eval and evolve can talk HTTP without linking the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <semaphore>
#include <string>
#include <utility>
#include <vector>

#include "core/chat_message.h"
#include "core/rng.h"

namespace crucible {

struct ClientOptions {
    std::string base_url;                        // e.g. "http://127.0.0.1:8000/v1" (http or https)
    std::string api_key_env = "OPENAI_API_KEY";  // read once; unset or empty: no Authorization
    double timeout_s = 60;           // connect timeout, and the longest wait for each read/write
    int max_retries = 4;             // extra attempts on 429, 5xx and transport errors
    double backoff_initial_s = 0.5;  // first retry waits this (with jitter), doubling each time
    double backoff_max_s = 8;        // cap on any wait, including a server's Retry-After
    int max_concurrency = 16;        // HTTP requests in flight at once across all threads
    uint64_t seed = 0;               // seeds the backoff jitter, so retry delays are reproducible
    // Waits between attempts; empty means std::this_thread::sleep_for. Tests replace it to
    // record the delays the client chose without waiting for them.
    std::function<void(double seconds)> sleep_fn;
};

// One generated token (as text) with its log-probability and, when asked, the most likely
// alternatives.
struct TokenTextLogprob {
    std::string token;
    double logprob = 0;
    std::vector<std::pair<std::string, double>> top;  // most likely first
};

struct Choice {
    int index = 0;
    std::string text;           // the completion text, or the assistant message's content
    std::string reasoning;      // message.reasoning_content, where a server sends it (vLLM)
    std::string finish_reason;  // "stop", "length", ...; empty when the server sent null
    std::optional<std::vector<TokenTextLogprob>> logprobs;  // present when requested and returned
};

struct Usage {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
};

// POST {base}/completions. Optional fields are left out of the body when unset.
struct CompletionRequest {
    std::string model;
    std::string prompt;
    int max_tokens = 256;
    double temperature = 1.0;
    double top_p = 1.0;
    int n = 1;
    std::vector<std::string> stop;  // left out when empty
    std::optional<int64_t> seed;
    std::optional<int> logprobs;  // how many alternatives per token (0: the sampled token only)
    // Merged into the body as a JSON merge patch (RFC 7396): adds fields, null removes one.
    nlohmann::json extra = nlohmann::json::object();
};

// POST {base}/chat/completions.
struct ChatRequest {
    std::string model;
    std::vector<ChatMessage> messages;
    int max_tokens = 256;
    double temperature = 1.0;
    double top_p = 1.0;
    int n = 1;
    std::vector<std::string> stop;
    std::optional<int64_t> seed;
    bool logprobs = false;
    std::optional<int> top_logprobs;  // alternatives per token; implies logprobs
    nlohmann::json extra = nlohmann::json::object();
};

struct CompletionResult {
    std::string id;
    std::string model;
    std::vector<Choice> choices;  // in index order
    Usage usage;
};

struct ChatResult {
    std::string id;
    std::string model;
    std::vector<Choice> choices;
    Usage usage;
};

// One streamed piece of a chat choice: new content and, on its last chunk, the finish reason.
struct ChatDelta {
    int index = 0;
    std::string content;
    std::string finish_reason;
};

// Running totals over the client's life. `requests` counts calls (each once, however many
// attempts it took), `retries` the extra attempts, `failures` the calls that threw.
struct ClientUsage {
    int64_t requests = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t retries = 0;
    int64_t failures = 0;
};

// All methods may be called from many threads at once. Every failure throws crucible::Error
// naming the method and URL: for an HTTP error also the status and the server's
// {"error": {"message", "type"}} text; for a transport error what failed and after how many
// attempts. 429, 5xx and transport errors (refused, reset, timed out) are retried with
// exponential backoff and jitter (a 429's Retry-After is honoured, capped by backoff_max_s);
// other statuses are not.
class OpenAIClient {
  public:
    // Throws Error when base_url is not "http[s]://host[:port][/prefix]".
    explicit OpenAIClient(ClientOptions options);

    CompletionResult complete(const CompletionRequest& request);
    ChatResult chat(const ChatRequest& request);
    // Streams a chat completion ("stream": true, server-sent events), calling on_delta for each
    // piece of content as it arrives, and returns the assembled result (usage when the server
    // sends it; the request asks for it with stream_options.include_usage). A failure before
    // the first byte of the stream is retried; one after it throws. An exception thrown by
    // on_delta ends the stream and propagates.
    ChatResult chat_stream(const ChatRequest& request,
                           const std::function<void(const ChatDelta&)>& on_delta);
    // GET {base}/models: the ids of the served models.
    std::vector<std::string> models();

    // POST {base}/{path} with a JSON body; returns the parsed 2xx response. Adds the
    // response's "usage" (if any) to the totals. Used by the methods above.
    nlohmann::json post_json(const std::string& path, const nlohmann::json& body);
    // GET {base}/{path}; returns the parsed 2xx response.
    nlohmann::json get_json(const std::string& path);

    ClientUsage usage() const;
    const std::string& base_url() const { return options_.base_url; }

  private:
    struct Reply;
    using BodySink = std::function<bool(const char* data, size_t size)>;

    // One call with retries. `sink`, when given, receives a 2xx body as it arrives (streaming)
    // and may return false to stop; once it has received data the call is not retried.
    Reply send(const std::string& method, const std::string& path, const std::string& body,
               const BodySink* sink);
    Reply send_once(const std::string& method, const std::string& target, const std::string& body,
                    const BodySink* sink, bool* delivered);
    double backoff_delay(int attempt, const Reply& reply);
    void add_usage(const Usage& usage);
    [[noreturn]] void fail(const std::string& message);

    ClientOptions options_;
    std::string scheme_host_port_;  // "http://127.0.0.1:8000"
    std::string path_prefix_;       // "/v1" (no trailing slash; may be empty)
    std::string api_key_;
    std::counting_semaphore<> slots_;
    std::mutex rng_mutex_;
    Rng rng_;

    std::atomic<int64_t> requests_{0};
    std::atomic<int64_t> prompt_tokens_{0};
    std::atomic<int64_t> completion_tokens_{0};
    std::atomic<int64_t> retries_{0};
    std::atomic<int64_t> failures_{0};
};

}  // namespace crucible
