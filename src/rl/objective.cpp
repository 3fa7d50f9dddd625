#include "rl/objective.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace crucible::rl {

namespace {

template <typename E>
using EnumNames = std::pair<const char*, E>;

// Each enum's config names, the one table both parsing and naming read.
constexpr EnumNames<AdvantageMode> kAdvantageModes[] = {
    {"grpo", AdvantageMode::grpo},
    {"dr_grpo", AdvantageMode::dr_grpo},
    {"batch_std", AdvantageMode::batch_std},
    {"rloo", AdvantageMode::rloo},
    {"reinforce_pp_baseline", AdvantageMode::reinforce_pp_baseline}};
constexpr EnumNames<RatioLevel> kRatioLevels[] = {{"token", RatioLevel::token},
                                                  {"sequence", RatioLevel::sequence}};
constexpr EnumNames<LossAggregation> kLossAggregations[] = {
    {"seq_mean_token_mean", LossAggregation::seq_mean_token_mean},
    {"token_mean", LossAggregation::token_mean},
    {"seq_sum_norm", LossAggregation::seq_sum_norm},
    {"seq_mean_token_sum", LossAggregation::seq_mean_token_sum}};
constexpr EnumNames<KlEstimator> kKlEstimators[] = {
    {"k1", KlEstimator::k1}, {"k2", KlEstimator::k2}, {"k3", KlEstimator::k3}};

template <typename E>
E parse_enum(const std::string& value, const std::string& key,
             std::span<const EnumNames<E>> options) {
    std::string names;
    for (const auto& [name, e] : options) {
        if (value == name) return e;
        names += names.empty() ? name : std::string(", ") + name;
    }
    throw Error("config: " + key + ": unknown value '" + value + "' (expected one of: " + names +
                ")");
}

template <typename E>
const char* enum_name(E value, std::span<const EnumNames<E>> options) {
    for (const auto& [name, e] : options) {
        if (e == value) return name;
    }
    return "?";
}

struct GroupStats {
    int n = 0;
    double sum = 0.0, sum_sq_dev = 0.0;
    double mean() const { return n > 0 ? sum / n : 0.0; }
    double std_unbiased() const { return n > 1 ? std::sqrt(sum_sq_dev / (n - 1)) : 0.0; }
};

}  // namespace

AdvantageMode parse_advantage_mode(const std::string& value, const std::string& key) {
    return parse_enum<AdvantageMode>(value, key, kAdvantageModes);
}
RatioLevel parse_ratio_level(const std::string& value, const std::string& key) {
    return parse_enum<RatioLevel>(value, key, kRatioLevels);
}
LossAggregation parse_loss_aggregation(const std::string& value, const std::string& key) {
    return parse_enum<LossAggregation>(value, key, kLossAggregations);
}
KlEstimator parse_kl_estimator(const std::string& value, const std::string& key) {
    return parse_enum<KlEstimator>(value, key, kKlEstimators);
}

const char* to_string(AdvantageMode mode) {
    return enum_name<AdvantageMode>(mode, kAdvantageModes);
}
const char* to_string(RatioLevel ratio) {
    return enum_name<RatioLevel>(ratio, kRatioLevels);
}
const char* to_string(LossAggregation aggregation) {
    return enum_name<LossAggregation>(aggregation, kLossAggregations);
}
const char* to_string(KlEstimator estimator) {
    return enum_name<KlEstimator>(estimator, kKlEstimators);
}

std::vector<double> compute_advantages(AdvantageMode mode, std::span<const double> rewards,
                                       std::span<const int> group, std::span<const uint8_t> valid,
                                       std::span<const int> lengths) {
    const size_t n = rewards.size();
    if (group.size() != n || valid.size() != n || lengths.size() != n) {
        throw Error("compute_advantages: rewards, group, valid and lengths differ in size");
    }
    // Two passes: means, then squared deviations (numerically stable for any reward scale).
    std::map<int, GroupStats> groups;
    GroupStats batch;
    for (size_t i = 0; i < n; i++) {
        if (!valid[i]) continue;
        groups[group[i]].n++;
        groups[group[i]].sum += rewards[i];
        batch.n++;
        batch.sum += rewards[i];
    }
    for (size_t i = 0; i < n; i++) {
        if (!valid[i]) continue;
        GroupStats& g = groups[group[i]];
        g.sum_sq_dev += (rewards[i] - g.mean()) * (rewards[i] - g.mean());
        batch.sum_sq_dev += (rewards[i] - batch.mean()) * (rewards[i] - batch.mean());
    }
    std::vector<double> adv(n, 0.0);
    for (size_t i = 0; i < n; i++) {
        if (!valid[i]) continue;
        const GroupStats& g = groups[group[i]];
        const double centred = rewards[i] - g.mean();
        switch (mode) {
            case AdvantageMode::grpo:
                adv[i] = g.n > 1 ? centred / (g.std_unbiased() + kStdEps) : 0.0;
                break;
            case AdvantageMode::dr_grpo:
            case AdvantageMode::reinforce_pp_baseline:
                adv[i] = centred;
                break;
            case AdvantageMode::batch_std:
                adv[i] = g.n > 1 ? centred / (batch.std_unbiased() + kStdEps) : 0.0;
                break;
            case AdvantageMode::rloo:
                adv[i] = g.n > 1 ? rewards[i] - (g.sum - rewards[i]) / (g.n - 1) : 0.0;
                break;
        }
    }
    if (mode == AdvantageMode::reinforce_pp_baseline) {
        // Whitening over every completion token of the batch (OpenRLHF's masked mean/var).
        double w = 0.0, mean = 0.0, var = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (!valid[i]) continue;
            w += lengths[i];
            mean += lengths[i] * adv[i];
        }
        if (w > 0) {
            mean /= w;
            for (size_t i = 0; i < n; i++) {
                if (valid[i]) var += lengths[i] * (adv[i] - mean) * (adv[i] - mean);
            }
            var /= w;
            const double rstd = 1.0 / std::sqrt(std::max(var, 1e-8));
            for (size_t i = 0; i < n; i++) {
                if (valid[i]) adv[i] = (adv[i] - mean) * rstd;
            }
        }
    }
    return adv;
}

double aggregation_weight(const PolicyLossOptions& o, const MiniBatchSize& mb, int length) {
    if (length <= 0 || mb.sequences <= 0 || mb.tokens <= 0) return 0.0;
    switch (o.aggregation) {
        case LossAggregation::seq_mean_token_mean:
            return 1.0 / (static_cast<double>(mb.sequences) * length);
        case LossAggregation::token_mean:
            return 1.0 / static_cast<double>(mb.tokens);
        case LossAggregation::seq_sum_norm:
            return 1.0 / (static_cast<double>(mb.sequences) * std::max(o.max_completion_tokens, 1));
        case LossAggregation::seq_mean_token_sum:
            return 1.0 / static_cast<double>(mb.sequences);
    }
    return 0.0;
}

namespace {

// The clipped surrogate for one ratio: its loss (-min(rA, clip(r)A), with the dual-clip cap)
// and d(loss)/d(ratio). Counts which side clipped.
struct Surrogate {
    double loss, dratio;
    bool low, high;
};

Surrogate clipped_surrogate(const PolicyLossOptions& o, double ratio, double a) {
    const double lo = 1.0 - o.clip_low, hi = 1.0 + o.clip_high;
    const double clipped = std::clamp(ratio, lo, hi);
    const double unclipped_loss = -ratio * a, clipped_loss = -clipped * a;
    Surrogate s{std::max(unclipped_loss, clipped_loss), 0.0, false, false};
    // The gradient flows through the unclipped term when it is the larger loss.
    const bool through_ratio = unclipped_loss >= clipped_loss;
    s.dratio = through_ratio ? -a : 0.0;
    s.low = a < 0 && ratio < lo;
    s.high = a > 0 && ratio > hi;
    if (o.dual_clip > 1.0 && a < 0 && s.loss > -o.dual_clip * a) {
        s.loss = -o.dual_clip * a;  // dual-clip (Ye et al. 2020): bounded loss for A < 0
        s.dratio = 0.0;
    }
    return s;
}

// The KL estimator's value and its derivative with respect to the policy's logp.
std::pair<double, double> kl_term(KlEstimator k, double logp, double ref) {
    const double d = ref - logp;  // log(pi_ref / pi)
    switch (k) {
        case KlEstimator::k1:
            return {-d, 1.0};
        case KlEstimator::k2:
            return {0.5 * d * d, -d};
        case KlEstimator::k3:
            return {std::exp(d) - d - 1.0, 1.0 - std::exp(d)};
    }
    return {0.0, 0.0};
}

}  // namespace

void sequence_loss(const PolicyLossOptions& o, const MiniBatchSize& mb, double advantage,
                   std::span<const float> logp, std::span<const float> old_logp,
                   std::span<const float> ref_logp, std::span<double> dlogp, LossStats* stats) {
    const int len = static_cast<int>(logp.size());
    if (old_logp.size() != logp.size() || dlogp.size() != logp.size() ||
        (o.kl_beta != 0.0 && ref_logp.size() != logp.size())) {
        throw Error("sequence_loss: logp, old_logp, ref_logp and dlogp differ in length");
    }
    const double w = aggregation_weight(o, mb, len);
    double loss = 0.0;
    if (o.ratio == RatioLevel::sequence && len > 0) {
        // GSPO: s = exp(mean_t(logp - old)); every token carries the sequence's surrogate.
        double mean_log_ratio = 0.0;
        for (int t = 0; t < len; t++) mean_log_ratio += double(logp[t]) - double(old_logp[t]);
        mean_log_ratio /= len;
        const double s = std::exp(mean_log_ratio);
        const Surrogate sur = clipped_surrogate(o, s, advantage);
        loss += w * len * sur.loss;
        // d(w * len * loss(s)) / d logp_t = w * len * dloss/ds * s / len
        for (int t = 0; t < len; t++) dlogp[t] = w * sur.dratio * s;
        stats->clipped_low += sur.low ? len : 0;
        stats->clipped_high += sur.high ? len : 0;
        stats->ratio_sum += s * len;
    } else {
        for (int t = 0; t < len; t++) {
            const double r = std::exp(double(logp[t]) - double(old_logp[t]));
            const Surrogate sur = clipped_surrogate(o, r, advantage);
            loss += w * sur.loss;
            dlogp[t] = w * sur.dratio * r;
            stats->clipped_low += sur.low;
            stats->clipped_high += sur.high;
            stats->ratio_sum += r;
        }
    }
    if (o.kl_beta != 0.0) {
        for (int t = 0; t < len; t++) {
            const auto [k, dk] = kl_term(o.kl, logp[t], ref_logp[t]);
            loss += w * o.kl_beta * k;
            dlogp[t] += w * o.kl_beta * dk;
            stats->kl_sum += k;
        }
    }
    stats->loss += loss;
    stats->tokens += len;
}

void masked_sequence_loss(const PolicyLossOptions& o, const MiniBatchSize& mb, double advantage,
                          std::span<const uint8_t> mask, std::span<const float> logp,
                          std::span<const float> old_logp, std::span<const float> ref_logp,
                          std::span<double> dlogp, LossStats* stats) {
    if (mask.empty())
        return sequence_loss(o, mb, advantage, logp, old_logp, ref_logp, dlogp, stats);
    if (mask.size() != logp.size() || dlogp.size() != logp.size()) {
        throw Error("masked_sequence_loss: mask, logp and dlogp differ in length");
    }
    std::vector<float> model_logp;
    for (size_t t = 0; t < mask.size(); t++)
        if (mask[t]) model_logp.push_back(logp[t]);
    std::vector<double> model_dlogp(model_logp.size(), 0.0);
    sequence_loss(o, mb, advantage, model_logp, old_logp, ref_logp, model_dlogp, stats);
    for (size_t t = 0, j = 0; t < mask.size(); t++) dlogp[t] = mask[t] ? model_dlogp[j++] : 0.0;
}

double soft_overlong_penalty(int length, int max_length, int cache) {
    const int expected = max_length - cache;
    if (length <= expected) return 0.0;
    if (length > max_length || cache <= 0) return -1.0;
    return static_cast<double>(expected - length) / cache;
}

}  // namespace crucible::rl
