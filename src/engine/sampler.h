// Token sampling: temperature, then top-k, then top-p (nucleus), then min-p, each as HF's and
// vLLM's logits warpers define them; temperature 0 is greedy (argmax).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"

namespace crucible {

struct SamplingParams {
    float temperature = 1.0f;  // 0: greedy
    int top_k = 0;             // 0: off
    float top_p = 1.0f;        // 1: off
    float min_p = 0.0f;        // 0: off; keeps tokens with p >= min_p * max p
    int max_tokens = 16;
    uint64_t seed = 0;
    std::vector<int32_t> stop_ids;
    std::vector<std::string> stop_strings;
    int logprobs = -1;  // -1: none; N >= 0: logprob of each sampled token and N alternatives
};

// The distribution sampling draws from (after temperature and the filters), as probabilities
// over the vocabulary (zeros for filtered tokens). REQUIRES temperature > 0.
std::vector<double> sampling_distribution(const float* logits, int vocab, const SamplingParams& p);

// The first id whose cumulative probability passes u (in [0, 1)), skipping zeros; the last
// candidate when rounding leaves u above the total. What sample_token draws with.
int32_t draw_token(const std::vector<double>& prob, double u);

// Draws one token id. Greedy when temperature == 0 (the first maximum).
int32_t sample_token(const float* logits, int vocab, const SamplingParams& p, Rng& rng);

}  // namespace crucible
