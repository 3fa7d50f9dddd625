// Batched generation with a paged KV cache and continuous batching.
//
// Every step packs work from many sequences into one forward pass (Model::forward_cached,
// with attention over this engine's paged KV cache): one token for each
// decoding sequence plus chunks of waiting prompts (chunked prefill) up to a token budget, so
// the weight GEMMs run with many rows. Sequences join and leave at every step. The n samples
// of a request share its prefilled prompt blocks (copy-on-write). Logprobs, when asked for,
// are computed by re-scoring the finished sequence with the trainer's own forward pass
// (Model::forward), so an RL importance ratio at the first update is exactly 1.
//
// Two ways to drive it: generate() runs a list of requests to completion; submit() / step() /
// cancel() let a caller (the server's engine thread) add requests to a running batch, take
// tokens as they are drawn and drop requests at any step. generate() is a loop over the latter.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/team_size.h"
#include "model/model.h"

namespace crucible {

struct GenerationRequest {
    std::vector<int32_t> prompt;
    SamplingParams params;
    int n = 1;  // samples sharing the prompt's KV blocks
    // Empty: sample i draws with the seed Rng::mix(params.seed, i). Else (n seeds): sample i
    // draws exactly as a request of its own with params.seed = sample_seeds[i] and n = 1
    // would, so callers that seed each sample (the eval harness) still share the prefill.
    std::vector<uint64_t> sample_seeds;
    // Multi-turn use (rl/episodes.h): with `hold`, a sample that finishes keeps its KV blocks
    // and its result carries a handle (GeneratedSequence::held) to continue from. With
    // `continue_from` (a handle; n must be 1), `prompt` must extend that sequence's ids (its
    // prompt and completion): only the ids not yet in its cache are prefilled. A handle the
    // engine evicted (the pool was needed) or that does not match is prefilled whole, with the
    // same result.
    bool hold = false;
    int64_t continue_from = 0;
};

struct TokenLogprob {
    int32_t token;
    float logprob;
};

struct GeneratedSequence {
    std::vector<int32_t> tokens;  // the completion (stop token included when it ended it)
    std::string finish_reason;    // "stop" or "length"
    std::vector<float> logprobs;  // per completion token, when params.logprobs >= 0
    std::vector<std::vector<TokenLogprob>> top_logprobs;  // N alternatives per token
    int64_t held = 0;  // GenerationRequest::hold: the handle of its kept KV (0: none)
};

struct EngineOptions {
    int kv_blocks = 0;             // 0: max_batch_seqs full contexts, capped by kv_budget_bytes
    double kv_budget_bytes = 2e9;  // default KV pool size limit (fp32 K and V, all layers)
    int max_batch_tokens = 512;    // rows per forward pass (decode tokens + prefill chunks)
    int max_batch_seqs = 256;      // sequences decoding at once
    // Choose each step's OpenMP team (1 .. the caller's omp_get_max_threads()) from its work
    // and measured step times (engine/team_size.h); false: every step uses the caller's team.
    // Results are the same either way.
    bool adaptive_threads = true;
    // Turns completion ids into text, for stop strings (none: stop strings are ignored).
    std::function<std::string(const std::vector<int32_t>&)> detokenize;
};

// Called from step() for every token a sample draws: (sample index, token, finish reason),
// the reason empty while the sample goes on, else "stop" or "length".
using TokenCallback = std::function<void(int sample, int32_t token, const std::string& finish)>;
// Called from step() once every sample of a request has finished, with the results (logprobs
// filled when asked for). The request is forgotten afterwards.
using DoneCallback = std::function<void(std::vector<GeneratedSequence>&& results)>;

class Engine {
  public:
    Engine(Model& model, EngineOptions options = {});
    ~Engine();

    // Runs the requests to completion. Result [r][i] is sample i of request r. `on_progress`
    // (optional) is called after every step with (sequences finished, tokens generated).
    // `on_request_done` (optional) is called, during the run, as soon as every sample of
    // request r has finished, with its samples (logprobs not yet filled: they are re-scored at
    // the end), so a caller can start work on a request while others still decode.
    // Throws Error naming the request for an invalid one, before generating anything.
    // REQUIRES: no request submitted with submit() is outstanding.
    std::vector<std::vector<GeneratedSequence>> generate(
        const std::vector<GenerationRequest>& requests,
        const std::function<void(int64_t, int64_t)>& on_progress = {},
        const std::function<void(size_t r, const std::vector<GeneratedSequence>&)>&
            on_request_done = {});

    // ---- incremental use (one thread: submit, step and cancel are not thread-safe) --------
    // Checks that `request` can run (non-empty prompt, ids in the vocabulary, room in the
    // context and in the KV pool); throws Error starting with `what` otherwise.
    void validate(const GenerationRequest& request, const std::string& what) const;
    // Queues a request (validated as above) and returns its id. It joins the batch at a later
    // step, when the KV pool can hold its worst case. With `rescore_when_done`, logprobs (if
    // asked for) are computed when its last sample finishes, by re-scoring its samples packed
    // together with the trainer's forward; otherwise GeneratedSequence::logprobs stay empty.
    int64_t submit(GenerationRequest request, TokenCallback on_token, DoneCallback on_done,
                   bool rescore_when_done = true);
    // Drops a queued or running request: its KV blocks are freed at once and no callback of
    // it is called again. Returns false when the id is unknown (already finished).
    bool cancel(int64_t id);
    // One forward pass over a token of every decoding sample plus prompt chunks, then
    // sampling (callbacks run here). Returns false, doing nothing, when no request is queued
    // or running.
    bool step();

    // Frees a held sequence's KV blocks (GenerationRequest::hold). Returns false when the
    // handle is unknown (released, continued from, or evicted).
    bool release(int64_t handle);
    // Held sequences and the KV blocks they keep (a block shared by several counts for each).
    int num_held() const { return static_cast<int>(held_.size()); }
    int held_blocks() const { return held_blocks_; }
    // Held sequences evicted to make room (their continuations were prefilled whole).
    int64_t evicted_held() const { return evicted_held_; }

    // Requests queued but not yet in the batch; samples (and prompts being prefilled) in it.
    int num_waiting() const { return static_cast<int>(waiting_.size()); }
    int num_running() const { return static_cast<int>(active_.size()); }
    // Sequences that had a row in the last step's forward pass.
    int last_step_sequences() const { return last_step_sequences_; }
    // The OpenMP team of the last step's forward pass (0 before any).
    int last_step_threads() const { return last_step_threads_; }
    int kv_blocks() const { return cache_->num_blocks(); }
    int free_kv_blocks() const { return cache_->free_blocks(); }

    // Forward passes and rows (tokens) processed: since the last generate() began, or in
    // total for incremental use.
    int64_t steps() const { return steps_; }
    int64_t prefill_tokens() const { return prefill_tokens_; }
    int64_t decode_tokens() const { return decode_tokens_; }

  private:
    struct Sequence;
    struct Row;
    struct Request;
    // One forward pass over `rows`; fills logits for rows with want_logits (in row order).
    void forward(const std::vector<Row>& rows, std::vector<float>* logits);
    // forward(rows, &logits_) with the step's OpenMP team (options_.adaptive_threads).
    void forward_with_team(const std::vector<Row>& rows);
    void rescore(const std::vector<GenerationRequest>& requests,
                 std::vector<std::vector<GeneratedSequence>>* results);
    // Moves queued requests into the batch while the KV pool holds every admitted worst case.
    void admit();
    // Appends a drawn token to `s` and decides whether the sample ends with it.
    void accept(Sequence* s, int32_t token);
    void finish(Sequence* s, const char* why);
    // Frees the oldest held sequence other than `keep` (else `keep` itself); false when none.
    bool evict_held(int64_t keep);

    // A finished sample's KV kept for its continuation: `tokens` are the ids whose keys and
    // values are in `table` (its prompt and completion but the last token).
    struct Held {
        KvCache::Table table;
        std::vector<int32_t> tokens;
    };
    std::map<int64_t, Held> held_;  // by handle; handles grow, so the first is the oldest
    int64_t next_held_ = 1;
    int held_blocks_ = 0;
    int64_t evicted_held_ = 0;

    Model& model_;
    EngineOptions options_;
    std::unique_ptr<KvCache> cache_;
    std::map<int64_t, std::unique_ptr<Request>> requests_;  // queued or running, by id
    std::deque<Request*> waiting_;                          // queued, in submission order
    std::vector<Sequence*> active_;                         // in the batch, not finished
    std::vector<std::unique_ptr<Sequence>> seqs_;           // owns every live sequence
    std::vector<Request*> completed_;                       // finished during this step
    int64_t next_id_ = 1;
    int committed_ = 0;        // worst-case KV blocks of the admitted requests
    int running_samples_ = 0;  // samples of the admitted requests not finished
    int last_step_sequences_ = 0;
    int last_step_threads_ = 0;
    TeamSizer team_;
    // Step buffers, grown as needed (the activations are the model's).
    std::vector<int32_t> tokens_, positions_, logit_rows_;
    std::vector<const int32_t*> tables_;  // each row's block table
    std::vector<Row> rows_;
    std::vector<float> logits_;
    int64_t steps_ = 0, prefill_tokens_ = 0, decode_tokens_ = 0;
};

}  // namespace crucible
