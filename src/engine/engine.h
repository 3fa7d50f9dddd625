// Batched generation with a paged KV cache and continuous batching.
//
// Every step packs work from many sequences into one forward pass: one token for each
// decoding sequence plus chunks of waiting prompts (chunked prefill) up to a token budget, so
// the weight GEMMs run with many rows. Sequences join and leave at every step. The n samples
// of a request share its prefilled prompt blocks (copy-on-write). Logprobs, when asked for,
// are computed by re-scoring the finished sequence with the trainer's own forward pass
// (Model::forward), so an RL importance ratio at the first update is exactly 1.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "model/model.h"

namespace crucible {

struct GenerationRequest {
    std::vector<int32_t> prompt;
    SamplingParams params;
    int n = 1;  // samples sharing the prompt's KV blocks
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
};

struct EngineOptions {
    int kv_blocks = 0;             // 0: max_batch_seqs full contexts, capped by kv_budget_bytes
    double kv_budget_bytes = 2e9;  // default KV pool size limit (fp32 K and V, all layers)
    int max_batch_tokens = 512;    // rows per forward pass (decode tokens + prefill chunks)
    int max_batch_seqs = 256;      // sequences decoding at once
    // Turns completion ids into text, for stop strings (none: stop strings are ignored).
    std::function<std::string(const std::vector<int32_t>&)> detokenize;
};

class Engine {
  public:
    Engine(Model& model, EngineOptions options = {});
    ~Engine();

    // Runs the requests to completion. Result [r][i] is sample i of request r. `on_progress`
    // (optional) is called after every step with (sequences finished, tokens generated).
    std::vector<std::vector<GeneratedSequence>> generate(
        const std::vector<GenerationRequest>& requests,
        const std::function<void(int64_t, int64_t)>& on_progress = {});

    // Statistics of the last generate(): forward passes and rows (tokens) processed.
    int64_t steps() const { return steps_; }
    int64_t prefill_tokens() const { return prefill_tokens_; }
    int64_t decode_tokens() const { return decode_tokens_; }

  private:
    struct Sequence;
    struct Row;
    // One forward pass over `rows`; fills logits for rows with want_logits (in row order).
    void forward(const std::vector<Row>& rows, std::vector<float>* logits);
    void rescore(const std::vector<GenerationRequest>& requests,
                 std::vector<std::vector<GeneratedSequence>>* results);

    Model& model_;
    EngineOptions options_;
    std::unique_ptr<KvCache> cache_;
    std::vector<std::unique_ptr<Sequence>> seqs_;
    // Step buffers, grown as needed.
    std::vector<float> x_, ln_, q_, k_, v_, att_, h_, gate_, up_, act_, sel_, rstd_;
    std::vector<int32_t> tokens_, positions_;
    int64_t steps_ = 0, prefill_tokens_ = 0, decode_tokens_ = 0;
};

}  // namespace crucible
