// The GRPO family's math, free of the training loop: advantages from grouped rewards, and the
// clipped policy-gradient objective per token with its derivative with respect to each token's
// log-probability (the trainer turns that derivative into the model's loss weights).
// docs/RL.md writes every formula out with its source.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace crucible::rl {

enum class AdvantageMode {
    grpo,                   // (r - group mean) / (group std + eps)          DeepSeekMath, DAPO
    dr_grpo,                // r - group mean                                Dr. GRPO
    batch_std,              // (r - group mean) / (batch std + eps)          TRL scale_rewards=batch
    rloo,                   // r - mean of the other samples of the group     RLOO
    reinforce_pp_baseline,  // r - group mean, then whitened over the batch's tokens  REINFORCE++
};
enum class RatioLevel { token, sequence };  // sequence: GSPO's length-normalised sequence ratio
enum class LossAggregation {
    seq_mean_token_mean,  // (1/B) sum_i (1/|y_i|) sum_t       GRPO
    token_mean,           // (1/sum_i |y_i|) sum_i sum_t       DAPO (whole mini-batch)
    seq_sum_norm,         // (1/(B * L_max)) sum_i sum_t       Dr. GRPO
    seq_mean_token_sum,   // (1/B) sum_i sum_t                 verl seq-mean-token-sum
};
enum class KlEstimator { k1, k2, k3 };

// Parse a config value; `key` names the field in the error.
AdvantageMode parse_advantage_mode(const std::string& value, const std::string& key);
RatioLevel parse_ratio_level(const std::string& value, const std::string& key);
LossAggregation parse_loss_aggregation(const std::string& value, const std::string& key);
KlEstimator parse_kl_estimator(const std::string& value, const std::string& key);
// The config value that names each (what the parse functions accept).
const char* to_string(AdvantageMode mode);
const char* to_string(RatioLevel ratio);
const char* to_string(LossAggregation aggregation);
const char* to_string(KlEstimator estimator);

inline constexpr double kStdEps = 1e-6;

// Advantages of one rollout batch. `group[i]` is sample i's prompt group; samples with
// valid[i] == 0 (their reward failed) get advantage 0 and take no part in any statistic.
// `lengths` (completion tokens) weigh the batch whitening of reinforce_pp_baseline. A group
// with a single valid sample has advantage 0 (nothing to compare it with); std is the
// unbiased (n - 1) estimate, as torch.std.
std::vector<double> compute_advantages(AdvantageMode mode, std::span<const double> rewards,
                                       std::span<const int> group, std::span<const uint8_t> valid,
                                       std::span<const int> lengths);

struct PolicyLossOptions {
    RatioLevel ratio = RatioLevel::token;
    double clip_low = 0.2;   // ratio floor 1 - clip_low
    double clip_high = 0.2;  // ratio ceiling 1 + clip_high (DAPO's clip-higher: 0.28)
    double dual_clip = 0.0;  // c > 1: for A < 0 the loss is capped at -c * A; 0: off
    LossAggregation aggregation = LossAggregation::token_mean;
    double kl_beta = 0.0;
    KlEstimator kl = KlEstimator::k3;
    int max_completion_tokens = 0;  // L_max of seq_sum_norm
};

// What one mini-batch holds, for the aggregation's normaliser: active (not masked) sequences
// and their completion tokens.
struct MiniBatchSize {
    int64_t sequences = 0;
    int64_t tokens = 0;
};

// The weight of one token of a sequence of `length` tokens in the aggregated loss.
double aggregation_weight(const PolicyLossOptions& o, const MiniBatchSize& mb, int length);

struct LossStats {
    double loss = 0.0;  // this sample's contribution to the aggregated objective
    int64_t tokens = 0;
    int64_t clipped_low = 0;   // tokens (or, for sequence ratios, the sequence's tokens) with
    int64_t clipped_high = 0;  // A < 0 and ratio < 1 - eps_low, or A > 0 and ratio > 1 + eps_high
    double kl_sum = 0.0;       // sum over tokens of the estimator's value
    double ratio_sum = 0.0;    // sum over tokens of the (token or sequence) ratio
};

// One sequence's contribution to the objective L (to minimise) and dL/dlogp for each of its
// tokens (written to `dlogp`, same length as `logp`). `ref_logp` may be empty when kl_beta==0.
void sequence_loss(const PolicyLossOptions& o, const MiniBatchSize& mb, double advantage,
                   std::span<const float> logp, std::span<const float> old_logp,
                   std::span<const float> ref_logp, std::span<double> dlogp, LossStats* stats);

// The same for a sequence whose positions are the model's (mask[t] = 1) or a tool's
// observation (mask[t] = 0): the objective is sequence_loss over the model's positions alone
// (their count is the sequence's length), and dlogp is exactly 0 at every observation position
// (no loss, no advantage, no KL term there). `logp` and `dlogp` span every position; `old_logp`
// and `ref_logp` only the model's, in order. An empty mask: every position is the model's.
void masked_sequence_loss(const PolicyLossOptions& o, const MiniBatchSize& mb, double advantage,
                          std::span<const uint8_t> mask, std::span<const float> logp,
                          std::span<const float> old_logp, std::span<const float> ref_logp,
                          std::span<double> dlogp, LossStats* stats);

// DAPO's soft overlong punishment (Eq. 13) for a completion of `length` tokens:
// 0 up to L_max - L_cache, then linear down to -1 at L_max, and -1 beyond.
double soft_overlong_penalty(int length, int max_length, int cache);

}  // namespace crucible::rl
