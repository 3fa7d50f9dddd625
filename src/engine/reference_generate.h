// Greedy generation by re-running the full training forward pass for every new token (no KV
// cache). Slow, but obviously correct: it is the oracle the cached engine is checked against,
// and it is enough for evaluating the small default model during SFT.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace crucible {

// Continues each prompt greedily for up to max_new_tokens, stopping a sequence after it
// emits `stop_token` (which is included in its output). Returns only the new tokens.
std::vector<std::vector<int32_t>> greedy_generate_reference(
    Model& model, const std::vector<std::vector<int32_t>>& prompts, int max_new_tokens,
    int32_t stop_token);

}  // namespace crucible
