// The LLM judge: asks any OpenAI-compatible chat endpoint whether a response meets rubric
// criteria, one criterion per call (HealthBench's grader) or all of an item's criteria in one
// call, or for one holistic score over the whole rubric (RaR's implicit aggregation).
//
// Safety and cost:
//  - the conversation and the response under judgement are fenced by markers that carry a
//    nonce derived from their content and checked not to occur in it, so a response cannot
//    close its own block and speak as the grader's instructions (docs/RUBRICS.md);
//  - the reply must be one JSON object of the expected shape; a malformed reply is answered
//    with a correction message and retried, at most `max_attempts` times in all;
//  - every validated reply is cached in SQLite under (judge model, full request), so an
//    identical request is never sent twice, across runs;
//  - a rate limit (requests per second) and the client's concurrency limit bound the load;
//  - tokens and cost (price per million input/output tokens) are accounted.
// All methods are thread-safe and never throw for endpoint or parse failures: those come back
// as a result with ok = false and an error.
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/sqlite.h"
#include "reward/rubric.h"
#include "serve/openai_client.h"

namespace crucible::reward {

struct JudgeOptions {
    std::string model;       // sent as "model" and part of every cache key
    bool one_call = false;   // all judge criteria of an item in one request
    int votes = 1;           // K samples per judgement, averaged (RLCF)
    double temperature = 0;  // use > 0 with votes > 1
    int max_tokens = 1024;
    int max_attempts = 3;           // per vote: the first request plus retries on malformed output
    std::string cache_path;         // SQLite file; empty: no cache
    int max_concurrency = 8;        // judge requests in flight from one scorer
    double max_requests_per_s = 0;  // 0: unlimited
    double price_input_per_mtok = 0;   // USD per 1M prompt tokens
    double price_output_per_mtok = 0;  // USD per 1M completion tokens
    uint64_t seed = 0;                 // request seed = seed + vote (sent when send_seed)
    bool send_seed = true;
};

struct JudgeStats {
    int64_t requests = 0;       // HTTP requests sent (each parse retry is one more)
    int64_t cache_hits = 0;     // judgements answered from the cache
    int64_t parse_retries = 0;  // requests re-sent because a reply was malformed
    int64_t failures = 0;       // judgements given up (endpoint errors, attempts exhausted)
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double cost_usd = 0;
    nlohmann::json to_json() const;
};

// One vote on one criterion.
struct Verdict {
    bool ok = false;
    bool met = false;
    std::string explanation;
    std::string error;  // why ok is false
};

// One vote of a holistic score over the whole rubric.
struct ImplicitVerdict {
    bool ok = false;
    double score = 0;  // the judge's 0-10 score / 10
    std::string explanation;
    std::string error;
};

// ---- prompts (public so tests can check exactly what is sent) ---------------------------------

// A 16-hex-digit nonce from the texts; re-derived until "BEGIN <nonce>"-style markers cannot
// occur in any of them.
std::string delimiter_nonce(const std::vector<ChatMessage>& messages, const std::string& response);

// The conversation and the response, each inside markers carrying `nonce`.
std::string render_judged_text(const std::vector<ChatMessage>& messages,
                               const std::string& response, const std::string& nonce);

std::vector<ChatMessage> criterion_prompt(const std::vector<ChatMessage>& messages,
                                          const std::string& response, const Criterion& criterion);
std::vector<ChatMessage> all_criteria_prompt(const std::vector<ChatMessage>& messages,
                                             const std::string& response,
                                             std::span<const Criterion* const> criteria);
std::vector<ChatMessage> implicit_prompt(const std::vector<ChatMessage>& messages,
                                         const std::string& response, const Rubric& rubric);

// ---- strict reply parsing ----------------------------------------------------------------------

// The one JSON object of a reply: whitespace, a leading <think>...</think> block and one
// ```json fence are allowed around it, nothing else. nullopt (with *why) otherwise.
std::optional<nlohmann::json> parse_reply_object(const std::string& reply, std::string* why);
// {"explanation": string, "criteria_met": bool}
std::optional<Verdict> parse_criterion_reply(const std::string& reply, std::string* why);
// {"criteria": [{"id", "explanation", "criteria_met"}, ...]} with each id exactly once.
std::optional<std::vector<Verdict>> parse_all_criteria_reply(
    const std::string& reply, std::span<const Criterion* const> criteria, std::string* why);
// {"explanation": string, "score": number in [0, 10]}
std::optional<ImplicitVerdict> parse_implicit_reply(const std::string& reply, std::string* why);

// ---- rate limit --------------------------------------------------------------------------------

// Spaces acquisitions at least 1/per_s seconds apart (first one immediately). The clock and
// sleep are injectable for tests; defaults are steady_clock and sleep_for.
class RateLimiter {
  public:
    explicit RateLimiter(double per_s, std::function<double()> now_s = {},
                         std::function<void(double)> sleep_s = {});
    void acquire();

  private:
    double interval_s_;
    std::function<double()> now_s_;
    std::function<void(double)> sleep_s_;
    std::mutex mutex_;
    double next_s_ = -1;
};

// ---- cache -------------------------------------------------------------------------------------

// key (the whole request as JSON text) -> the validated reply text. Thread-safe.
class JudgeCache {
  public:
    explicit JudgeCache(const std::string& path);
    std::optional<std::string> get(const std::string& key);
    void put(const std::string& key, const std::string& reply);
    int64_t size();

  private:
    std::mutex mutex_;
    SqliteDb db_;
};

// ---- the judge ---------------------------------------------------------------------------------

class Judge {
  public:
    // Throws Error when options are invalid (empty model, votes < 1, max_attempts < 1) or the
    // cache cannot be opened.
    Judge(std::shared_ptr<OpenAIClient> client, JudgeOptions options);

    // Vote number `vote` (0-based; it selects the request seed and the cache entry).
    Verdict judge_criterion(const std::vector<ChatMessage>& messages, const std::string& response,
                            const Criterion& criterion, int vote = 0);
    // One request for all `criteria`; one verdict per criterion, in order.
    std::vector<Verdict> judge_criteria(const std::vector<ChatMessage>& messages,
                                        const std::string& response,
                                        std::span<const Criterion* const> criteria, int vote = 0);
    ImplicitVerdict judge_implicit(const std::vector<ChatMessage>& messages,
                                   const std::string& response, const Rubric& rubric, int vote = 0);

    JudgeStats stats() const;
    const JudgeOptions& options() const { return options_; }

    // For tests and the CLI: the sleep and clock the rate limiter uses.
    void set_rate_limiter(std::unique_ptr<RateLimiter> limiter) { limiter_ = std::move(limiter); }

  private:
    // Sends `prompt` (cache first), validating each reply with `validate`; on a malformed
    // reply appends it and a correction and tries again. Returns the valid reply or nullopt
    // with *error set.
    std::optional<std::string> ask(
        const std::vector<ChatMessage>& prompt, int vote,
        const std::function<bool(const std::string&, std::string*)>& validate, std::string* error);
    using Outcome = std::pair<std::optional<std::string>, std::string>;  // reply, error
    Outcome send_and_validate(
        const std::vector<ChatMessage>& prompt, bool seeded, int64_t seed,
        const std::string& key_text,
        const std::function<bool(const std::string&, std::string*)>& validate);

    std::shared_ptr<OpenAIClient> client_;
    JudgeOptions options_;
    std::unique_ptr<JudgeCache> cache_;
    std::unique_ptr<RateLimiter> limiter_;
    // Requests in flight by cache key: an identical request waits for the first one's reply.
    std::mutex in_flight_mutex_;
    std::map<std::string, std::shared_future<Outcome>> in_flight_;
    std::atomic<int64_t> requests_{0}, cache_hits_{0}, parse_retries_{0}, failures_{0},
        prompt_tokens_{0}, completion_tokens_{0};
};

// "openai:http://host:port/v1#model" (the "openai:" prefix optional) -> base URL and model.
struct JudgeEndpoint {
    std::string base_url;
    std::string model;
};
JudgeEndpoint parse_judge_endpoint(const std::string& spec);

}  // namespace crucible::reward
