// The GRPO family's math against values worked out by hand, and the clipped objective's
// derivative against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "rl/objective.h"
#include "test_util.h"

namespace crucible::rl {
namespace {

std::vector<double> advantages(AdvantageMode mode, std::vector<double> r, std::vector<int> g,
                               std::vector<uint8_t> valid = {}, std::vector<int> len = {}) {
    if (valid.empty()) valid.assign(r.size(), 1);
    if (len.empty()) len.assign(r.size(), 1);
    return compute_advantages(mode, r, g, valid, len);
}

TEST(RlAdvantages, GrpoDividesByTheGroupsUnbiasedStd) {
    // Group [1,0,0,1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.5773503.
    const auto a = advantages(AdvantageMode::grpo, {1, 0, 0, 1}, {0, 0, 0, 0});
    const double s = std::sqrt(1.0 / 3.0);
    EXPECT_NEAR(a[0], 0.5 / (s + kStdEps), 1e-12);
    EXPECT_NEAR(a[1], -0.5 / (s + kStdEps), 1e-12);
    EXPECT_NEAR(a[0], 0.8660254, 1e-5);
}

TEST(RlAdvantages, DrGrpoOnlyCentres) {
    const auto a = advantages(AdvantageMode::dr_grpo, {1, 0, 0, 1, 3, 1}, {0, 0, 0, 0, 1, 1});
    EXPECT_DOUBLE_EQ(a[0], 0.5);
    EXPECT_DOUBLE_EQ(a[1], -0.5);
    EXPECT_DOUBLE_EQ(a[4], 1.0);  // group 1: mean 2
    EXPECT_DOUBLE_EQ(a[5], -1.0);
}

TEST(RlAdvantages, RlooUsesTheMeanOfTheOthers) {
    const auto a = advantages(AdvantageMode::rloo, {1, 0, 0, 1}, {0, 0, 0, 0});
    EXPECT_NEAR(a[0], 1.0 - 1.0 / 3.0, 1e-12);  // others: 0, 0, 1
    EXPECT_NEAR(a[1], 0.0 - 2.0 / 3.0, 1e-12);  // others: 1, 0, 1
}

TEST(RlAdvantages, BatchStdScalesByTheWholeBatch) {
    // Batch [1,0,0,1 | 1,1,1,0]: mean 0.625, sum of squared deviations 1.875, std
    // sqrt(1.875/7) = 0.5175492. Group 1 has mean 0.75.
    const auto a =
        advantages(AdvantageMode::batch_std, {1, 0, 0, 1, 1, 1, 1, 0}, {0, 0, 0, 0, 1, 1, 1, 1});
    const double s = std::sqrt(1.875 / 7.0);
    EXPECT_NEAR(a[4], 0.25 / (s + kStdEps), 1e-12);
    EXPECT_NEAR(a[7], -0.75 / (s + kStdEps), 1e-12);
    EXPECT_NEAR(a[0], 0.5 / (s + kStdEps), 1e-12);
}

TEST(RlAdvantages, ReinforcePlusPlusWhitensOverTokens) {
    // Centred [0.5, -0.5] with lengths [2, 4]: token mean -1/6, token variance 2/9.
    const auto a = advantages(AdvantageMode::reinforce_pp_baseline, {1, 0}, {0, 0}, {}, {2, 4});
    EXPECT_NEAR(a[0], (2.0 / 3.0) / std::sqrt(2.0 / 9.0), 1e-9);   // 1.4142136
    EXPECT_NEAR(a[1], (-1.0 / 3.0) / std::sqrt(2.0 / 9.0), 1e-9);  // -0.7071068
}

TEST(RlAdvantages, InvalidSamplesTakeNoPartAndLoneSamplesGetZero) {
    // Group 0: [1, 0, invalid]: statistics over [1, 0] (std sqrt(0.5)). Group 1: one sample.
    const auto a = advantages(AdvantageMode::grpo, {1, 0, 100, 5}, {0, 0, 0, 1}, {1, 1, 0, 1});
    EXPECT_NEAR(a[0], 0.5 / (std::sqrt(0.5) + kStdEps), 1e-12);
    EXPECT_EQ(a[2], 0.0);
    EXPECT_EQ(a[3], 0.0);
}

TEST(RlAdvantages, AllEqualRewardsGiveZero) {
    for (auto mode : {AdvantageMode::grpo, AdvantageMode::dr_grpo, AdvantageMode::rloo}) {
        for (double v : advantages(mode, {1, 1, 1}, {0, 0, 0})) EXPECT_EQ(v, 0.0);
    }
}

struct Case {
    double loss;
    std::vector<double> dlogp;
    LossStats stats;
};

Case run(const PolicyLossOptions& o, MiniBatchSize mb, double adv, std::vector<float> logp,
         std::vector<float> old, std::vector<float> ref = {}) {
    Case c;
    c.dlogp.assign(logp.size(), 0.0);
    sequence_loss(o, mb, adv, logp, old, ref, c.dlogp, &c.stats);
    c.loss = c.stats.loss;
    return c;
}

TEST(RlPolicyLoss, OnPolicyTokenMeanIsMinusTheAdvantage) {
    PolicyLossOptions o;  // token ratio, token_mean
    // Two tokens of a mini-batch of 4: each weighs 1/4; ratio 1, so loss = -A per token.
    const Case c = run(o, {2, 4}, 1.5, {-1.0f, -2.0f}, {-1.0f, -2.0f});
    EXPECT_DOUBLE_EQ(c.loss, -1.5 * 2 / 4);
    EXPECT_DOUBLE_EQ(c.dlogp[0], -1.5 / 4);  // d(-r A)/dlogp = -A r
    EXPECT_EQ(c.stats.clipped_low + c.stats.clipped_high, 0);
    EXPECT_DOUBLE_EQ(c.stats.ratio_sum, 2.0);
}

TEST(RlPolicyLoss, ClipHigherAndClipLow) {
    PolicyLossOptions o;
    o.clip_low = 0.2;
    o.clip_high = 0.28;
    const float l15 = std::log(1.5f), l05 = std::log(0.5f);
    // A > 0, ratio 1.5 > 1.28: loss -1.28 A w, no gradient, counted high.
    Case c = run(o, {1, 1}, 1.0, {l15}, {0.0f});
    EXPECT_NEAR(c.loss, -1.28, 1e-12);
    EXPECT_EQ(c.dlogp[0], 0.0);
    EXPECT_EQ(c.stats.clipped_high, 1);
    // A < 0, ratio 0.5 < 0.8: loss -0.8 A = 0.8, no gradient, counted low.
    c = run(o, {1, 1}, -1.0, {l05}, {0.0f});
    EXPECT_NEAR(c.loss, 0.8, 1e-12);
    EXPECT_EQ(c.dlogp[0], 0.0);
    EXPECT_EQ(c.stats.clipped_low, 1);
    // A < 0, ratio 1.5: the unclipped term is the larger loss; gradient -A r = 1.5.
    c = run(o, {1, 1}, -1.0, {l15}, {0.0f});
    EXPECT_NEAR(c.loss, 1.5, 1e-6);
    EXPECT_NEAR(c.dlogp[0], 1.5, 1e-6);
    EXPECT_EQ(c.stats.clipped_low + c.stats.clipped_high, 0);
    // A > 0, ratio 0.5: unclipped -0.5 A is the larger loss (pessimistic bound); gradient -A r.
    c = run(o, {1, 1}, 1.0, {l05}, {0.0f});
    EXPECT_NEAR(c.loss, -0.5, 1e-6);
    EXPECT_NEAR(c.dlogp[0], -0.5, 1e-6);
}

TEST(RlPolicyLoss, DualClipCapsNegativeAdvantageLoss) {
    PolicyLossOptions o;
    o.dual_clip = 3.0;
    const Case c = run(o, {1, 1}, -2.0, {std::log(4.0f)}, {0.0f});
    EXPECT_NEAR(c.loss, 6.0, 1e-12);  // min(4 * 2, 3 * 2)
    EXPECT_EQ(c.dlogp[0], 0.0);
    o.dual_clip = 0.0;
    EXPECT_NEAR(run(o, {1, 1}, -2.0, {std::log(4.0f)}, {0.0f}).loss, 8.0, 1e-5);
}

TEST(RlPolicyLoss, AggregationWeights) {
    PolicyLossOptions o;
    o.aggregation = LossAggregation::seq_mean_token_mean;
    EXPECT_DOUBLE_EQ(aggregation_weight(o, {2, 5}, 2), 1.0 / 4);
    EXPECT_DOUBLE_EQ(aggregation_weight(o, {2, 5}, 3), 1.0 / 6);
    o.aggregation = LossAggregation::token_mean;
    EXPECT_DOUBLE_EQ(aggregation_weight(o, {2, 5}, 3), 1.0 / 5);
    o.aggregation = LossAggregation::seq_sum_norm;
    o.max_completion_tokens = 8;
    EXPECT_DOUBLE_EQ(aggregation_weight(o, {2, 5}, 3), 1.0 / 16);
    // verl's seq-mean-token-sum: each sequence's token sum, averaged over the B sequences.
    o.aggregation = LossAggregation::seq_mean_token_sum;
    EXPECT_DOUBLE_EQ(aggregation_weight(o, {2, 5}, 3), 1.0 / 2);
    EXPECT_DOUBLE_EQ(run(o, {2, 5}, 1.0, {0, 0, 0}, {0, 0, 0}).loss, -1.5);
    // GRPO's seq-mean-token-mean: a sequence's tokens weigh 1/B in total, whatever its length.
    o.aggregation = LossAggregation::seq_mean_token_mean;
    EXPECT_DOUBLE_EQ(run(o, {2, 5}, 1.0, {0, 0, 0}, {0, 0, 0}).loss, -0.5);
    EXPECT_DOUBLE_EQ(run(o, {2, 5}, 1.0, {0, 0}, {0, 0}).loss, -0.5);
}

TEST(RlPolicyLoss, GspoUsesTheLengthNormalisedSequenceRatio) {
    PolicyLossOptions o;
    o.ratio = RatioLevel::sequence;
    o.aggregation = LossAggregation::seq_mean_token_mean;
    const std::vector<float> logp = {std::log(1.1f), std::log(1.3f)}, old = {0.0f, 0.0f};
    const double s = std::exp((double(logp[0]) + double(logp[1])) / 2);  // sqrt(1.43)
    EXPECT_NEAR(s, std::sqrt(1.43), 1e-6);
    // Wide clip: unclipped. Mini-batch of 1 sequence: loss -s A, dL/dlogp_t = -A s / 2.
    o.clip_low = o.clip_high = 0.5;
    Case c = run(o, {1, 2}, 2.0, logp, old);
    EXPECT_NEAR(c.loss, -2.0 * s, 1e-12);
    EXPECT_NEAR(c.dlogp[0], -2.0 * s / 2, 1e-12);
    EXPECT_NEAR(c.dlogp[1], -2.0 * s / 2, 1e-12);
    // GSPO's own range (3e-4, 4e-4): the sequence is clipped as a whole.
    o.clip_low = 3e-4;
    o.clip_high = 4e-4;
    c = run(o, {1, 2}, 2.0, logp, old);
    EXPECT_NEAR(c.loss, -2.0 * (1 + 4e-4), 1e-12);
    EXPECT_EQ(c.dlogp[0], 0.0);
    EXPECT_EQ(c.stats.clipped_high, 2);
}

TEST(RlPolicyLoss, KlEstimators) {
    PolicyLossOptions o;
    o.kl_beta = 0.5;
    // logp = -1, ref = -1.5: d = ref - logp = -0.5. On policy, so the PG part is -A w = 0 (A=0).
    const double d = -0.5;
    o.kl = KlEstimator::k3;
    Case c = run(o, {1, 1}, 0.0, {-1.0f}, {-1.0f}, {-1.5f});
    EXPECT_NEAR(c.loss, 0.5 * (std::exp(d) - d - 1), 1e-7);  // 0.5 * 0.1065307
    EXPECT_NEAR(c.dlogp[0], 0.5 * (1 - std::exp(d)), 1e-7);
    o.kl = KlEstimator::k2;
    c = run(o, {1, 1}, 0.0, {-1.0f}, {-1.0f}, {-1.5f});
    EXPECT_NEAR(c.loss, 0.5 * 0.5 * d * d, 1e-7);
    EXPECT_NEAR(c.dlogp[0], 0.5 * -d, 1e-7);
    o.kl = KlEstimator::k1;
    c = run(o, {1, 1}, 0.0, {-1.0f}, {-1.0f}, {-1.5f});
    EXPECT_NEAR(c.loss, 0.5 * 0.5, 1e-7);
    EXPECT_NEAR(c.dlogp[0], 0.5, 1e-7);
}

// dL/dlogp against central differences for every combination of ratio level (token,
// sequence), aggregation (all four), KL (off, k1, k2, k3) and dual-clip (off, on for token
// ratios), at random points away from the kinks. Log-ratios up to +-1.4 (ratios 0.25..4) reach
// both clip regions and, with A < 0 and c = 2, the dual-clip region; every combination must
// have checked points in the unclipped and clipped regions, and every dual-clip one in the
// dual-clip region.
TEST(RlPolicyLoss, GradientMatchesFiniteDifferencesInEveryModeAndRegion) {
    Rng rng(7);
    const double c_dual = 2.0;
    int checked = 0, combos = 0;
    for (RatioLevel ratio : {RatioLevel::token, RatioLevel::sequence}) {
        for (LossAggregation agg :
             {LossAggregation::seq_mean_token_mean, LossAggregation::token_mean,
              LossAggregation::seq_sum_norm, LossAggregation::seq_mean_token_sum}) {
            for (int kl = -1; kl < 3; kl++) {  // -1: no KL term
                for (bool dual : {false, true}) {
                    if (dual && ratio == RatioLevel::sequence) continue;  // refused by config
                    combos++;
                    int in_dual = 0, in_clip = 0, in_unclipped = 0;
                    PolicyLossOptions o;
                    o.ratio = ratio;
                    o.aggregation = agg;
                    o.clip_low = 0.2;
                    o.clip_high = 0.28;
                    o.max_completion_tokens = 9;
                    o.kl_beta = kl < 0 ? 0.0 : 0.1;
                    o.kl = static_cast<KlEstimator>(std::max(kl, 0));
                    o.dual_clip = dual ? c_dual : 0.0;
                    for (int trial = 0; trial < 40; trial++) {
                        const int len = 1 + static_cast<int>(rng.below(5));
                        std::vector<float> logp(len), old(len), ref(len);
                        for (int t = 0; t < len; t++) {
                            old[t] = static_cast<float>(-0.2 - 2 * rng.uniform());
                            logp[t] = old[t] + static_cast<float>(2.8 * (rng.uniform() - 0.5));
                            ref[t] = old[t] + static_cast<float>(0.8 * (rng.uniform() - 0.5));
                        }
                        const double adv = 2 * rng.uniform() - 1;
                        const MiniBatchSize mb{3, 11};
                        const Case c = run(o, mb, adv, logp, old, ref);
                        auto ratio_at = [&](const std::vector<float>& l, int t) {
                            if (o.ratio == RatioLevel::token)
                                return std::exp(double(l[t]) - old[t]);
                            double m = 0;
                            for (int u = 0; u < len; u++) m += double(l[u]) - old[u];
                            return std::exp(m / len);
                        };
                        for (int t = 0; t < len; t++) {
                            const float h = 1e-3f;
                            auto with = [&](float x) {
                                std::vector<float> l = logp;
                                l[t] = x;
                                return l;
                            };
                            // The objective has kinks at 1 - eps_low, 1 + eps_high and c.
                            auto near_kink = [&](float x) {
                                const double r = ratio_at(with(x), t);
                                const double margin = 5e-3 * r;
                                return std::abs(r - 0.8) < margin || std::abs(r - 1.28) < margin ||
                                       (o.dual_clip > 0 && std::abs(r - c_dual) < margin);
                            };
                            if (near_kink(logp[t] - h) || near_kink(logp[t] + h)) continue;
                            const double r = ratio_at(logp, t);
                            if (o.dual_clip > 0 && adv < 0 && r > c_dual) {
                                in_dual++;
                            } else if ((adv > 0 && r > 1.28) || (adv < 0 && r < 0.8)) {
                                in_clip++;
                            } else {
                                in_unclipped++;
                            }
                            const float up = logp[t] + h, down = logp[t] - h;
                            const double fd = (run(o, mb, adv, with(up), old, ref).loss -
                                               run(o, mb, adv, with(down), old, ref).loss) /
                                              (double(up) - double(down));
                            EXPECT_NEAR(c.dlogp[t], fd, 1e-5 * std::max(1.0, std::abs(fd)))
                                << "ratio " << int(ratio) << " aggregation " << int(agg) << " kl "
                                << kl << " dual " << dual << " token " << t;
                            checked++;
                        }
                    }
                    const std::string combo = "ratio " + std::to_string(int(ratio)) +
                                              " aggregation " + std::to_string(int(agg)) + " kl " +
                                              std::to_string(kl) + " dual " + std::to_string(dual);
                    EXPECT_GE(in_unclipped, 5) << combo;
                    EXPECT_GE(in_clip, 5) << combo;
                    if (dual) {
                        EXPECT_GE(in_dual, 3) << combo;
                    }
                }
            }
        }
    }
    EXPECT_EQ(combos, 48);
    EXPECT_GT(checked, 2000);
}

TEST(RlSoftOverlong, PenaltyAtTheBoundaries) {
    // L_max 16, L_cache 4: free up to 12, then linear to -1 at 16, -1 beyond.
    EXPECT_EQ(soft_overlong_penalty(0, 16, 4), 0.0);
    EXPECT_EQ(soft_overlong_penalty(12, 16, 4), 0.0);
    EXPECT_DOUBLE_EQ(soft_overlong_penalty(13, 16, 4), -0.25);
    EXPECT_DOUBLE_EQ(soft_overlong_penalty(14, 16, 4), -0.5);
    EXPECT_DOUBLE_EQ(soft_overlong_penalty(16, 16, 4), -1.0);
    EXPECT_DOUBLE_EQ(soft_overlong_penalty(17, 16, 4), -1.0);
}

TEST(RlConfigParsing, UnknownModesNameTheKey) {
    const std::string m =
        testutil::error_of([] { parse_advantage_mode("grpo2", "algorithm.advantage"); });
    EXPECT_NE(m.find("algorithm.advantage"), std::string::npos) << m;
    EXPECT_NE(m.find("grpo2"), std::string::npos) << m;
    EXPECT_NE(m.find("dr_grpo"), std::string::npos) << m;
}

}  // namespace
}  // namespace crucible::rl
