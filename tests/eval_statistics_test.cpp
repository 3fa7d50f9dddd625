// Eval statistics against values worked out by hand (in the comments), closed forms, and
// reference numbers computed outside this code base (each names its source).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "eval/statistics.h"

namespace crucible::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Exact binomial coefficient in integers, independent of the library's product form.
uint64_t choose(int n, int k) {
    if (k < 0 || k > n) return 0;
    uint64_t r = 1;
    for (int i = 1; i <= k; ++i)
        r = r * static_cast<uint64_t>(n - k + i) / static_cast<uint64_t>(i);
    return r;
}

// ---- distributions ----------------------------------------------------------------------------

TEST(EvalDistributions, NormalQuantile) {
    // z_{0.975} = 1.959963984540054 (mpmath: sqrt(2) * erfinv(0.95)); z_{0.8} = 0.8416212335729143.
    EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-13);
    EXPECT_NEAR(normal_quantile(0.8), 0.8416212335729143, 1e-13);
    EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-15);
    EXPECT_NEAR(normal_quantile(0.001), -3.090232306167813, 1e-12);
    EXPECT_NEAR(normal_quantile(1e-10), -6.361340902404056, 1e-9);
    for (double p : {1e-8, 0.01, 0.2, 0.5, 0.7, 0.99, 1 - 1e-8})
        EXPECT_NEAR(normal_cdf(normal_quantile(p)), p, 1e-14 + 1e-12 * p);
    EXPECT_EQ(normal_quantile(0.0), -std::numeric_limits<double>::infinity());
    EXPECT_NEAR(z_for_level(0.95), 1.959963984540054, 1e-13);
}

TEST(EvalDistributions, IncompleteBetaClosedForms) {
    for (double x : {0.0, 0.01, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0}) {
        EXPECT_NEAR(incomplete_beta(1, 1, x), x, 1e-14);
        EXPECT_NEAR(incomplete_beta(3.5, 1, x), std::pow(x, 3.5), 1e-14);          // x^a
        EXPECT_NEAR(incomplete_beta(1, 2.5, x), 1 - std::pow(1 - x, 2.5), 1e-14);  // 1-(1-x)^b
        // Arcsine law: I_x(1/2, 1/2) = (2/pi) asin(sqrt(x)).
        EXPECT_NEAR(incomplete_beta(0.5, 0.5, x), 2 / std::numbers::pi * std::asin(std::sqrt(x)),
                    1e-13);
        // Beta(2,3) CDF = 6x^2 - 8x^3 + 3x^4.
        EXPECT_NEAR(incomplete_beta(2, 3, x), 6 * x * x - 8 * x * x * x + 3 * x * x * x * x, 1e-14);
    }
    // mpmath 1.3.0 betainc(a, b, 0, x, regularized=True) at 40 digits.
    EXPECT_NEAR(incomplete_beta(2.5, 3.5, 0.3), 0.2967529892956664, 1e-14);
    EXPECT_NEAR(incomplete_beta(30, 70, 0.25), 0.1358149042834274, 1e-13);
    EXPECT_NEAR(incomplete_beta(0.1, 0.2, 0.9), 0.7804880320024467, 1e-13);
}

TEST(EvalDistributions, BetaQuantileInvertsTheCdf) {
    for (double a : {0.5, 1.0, 2.5, 40.0})
        for (double b : {0.5, 3.0, 11.0})
            for (double p : {0.001, 0.025, 0.5, 0.975})
                EXPECT_NEAR(incomplete_beta(a, b, beta_quantile(a, b, p)), p, 1e-12);
    // Closed form: Beta(a,1) quantile is p^(1/a); arcsine: sin^2(pi p / 2).
    EXPECT_NEAR(beta_quantile(4, 1, 0.3), std::pow(0.3, 0.25), 1e-14);
    EXPECT_NEAR(beta_quantile(0.5, 0.5, 0.8), std::pow(std::sin(std::numbers::pi * 0.4), 2), 1e-14);
}

TEST(EvalDistributions, StudentT) {
    // df = 1 is Cauchy: 1/2 + atan(t)/pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2)).
    for (double t : {-3.0, -0.5, 0.0, 0.7, 4.0}) {
        EXPECT_NEAR(student_t_cdf(t, 1), 0.5 + std::atan(t) / std::numbers::pi, 1e-14);
        EXPECT_NEAR(student_t_cdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-14);
    }
    // Textbook t table: t_{0.975, 9} = 2.262157 (mpmath gives 0.97499999335 at that t).
    EXPECT_NEAR(student_t_cdf(2.262157, 9), 0.974999993347784, 1e-12);
}

// ---- avg@K and standard errors on a five-item dataset ------------------------------------------
//
// Items (K = 2 samples each) and their means s_i:
//   0: [1, 1] -> 1     1: [1, 0] -> 0.5     2: [0, 0] -> 0     3: [1, 1] -> 1     4: [0, 1] -> 0.5
// s_bar = 3/5 = 0.6; residuals r = (0.4, -0.1, -0.6, 0.4, -0.1); sum r^2 = 0.70.
// SE_CLT = sqrt(0.70 / (5 * 4)) = sqrt(0.035) = 0.18708287.
// Clusters {0, 3} "p", {1, 4} "q", {2} "r": cluster sums of r: 0.8, -0.2, -0.6.
//   Miller: cross terms sum_c [(sum r)^2 - sum r^2] = (0.64 - 0.32) + (0.04 - 0.02) + 0 = 0.34;
//           SE^2 = 0.035 + 0.34 / 25 = 0.0486, SE = 0.22045408.
//   inspect (C = 3): SE = sqrt(3/2 * (0.64 + 0.04 + 0.36)) / 5 = sqrt(1.56) / 5 = 0.24979992.

ScoreRows five_items() {
    return {{1, 1}, {1, 0}, {0, 0}, {1, 1}, {0, 1}};
}

TEST(EvalMeanAccuracy, FiveItemsByHand) {
    const Estimate e = mean_accuracy(five_items());
    EXPECT_DOUBLE_EQ(e.mean, 0.6);
    EXPECT_NEAR(e.se, std::sqrt(0.035), 1e-15);
    EXPECT_EQ(e.n_items, 5);
    EXPECT_EQ(e.n_excluded, 0);
}

TEST(EvalMeanAccuracy, ClusteredByHand) {
    const std::vector<std::string> clusters = {"p", "q", "r", "p", "q"};
    EXPECT_NEAR(mean_accuracy_clustered(five_items(), clusters).se, std::sqrt(0.0486), 1e-15);
    EXPECT_NEAR(mean_accuracy_clustered(five_items(), clusters, true).se, std::sqrt(1.56) / 5,
                1e-15);
    // One item per cluster: both forms reduce to SE_CLT.
    const std::vector<std::string> singletons = {"a", "b", "c", "d", "e"};
    EXPECT_NEAR(mean_accuracy_clustered(five_items(), singletons).se, std::sqrt(0.035), 1e-15);
    EXPECT_NEAR(mean_accuracy_clustered(five_items(), singletons, true).se, std::sqrt(0.035),
                1e-15);
}

TEST(EvalMeanAccuracy, MissingSamplesAndItems) {
    // Item 1 lost one sample (mean of the rest), item 2 lost all (excluded).
    const ScoreRows s = {{1, 0, 1, 0}, {1, kNaN, 1, 1}, {kNaN, kNaN}, {0, 0, 0, 0}};
    const Estimate e = mean_accuracy(s);
    // Means 0.5, 1, 0 -> 0.5; residuals 0, 0.5, -0.5 -> SE = sqrt(0.5 / (3 * 2)).
    EXPECT_DOUBLE_EQ(e.mean, 0.5);
    EXPECT_NEAR(e.se, std::sqrt(0.5 / 6), 1e-15);
    EXPECT_EQ(e.n_items, 3);
    EXPECT_EQ(e.n_excluded, 1);
    // A single item: a mean, no SE.
    const Estimate one = mean_accuracy({{1, 0}});
    EXPECT_DOUBLE_EQ(one.mean, 0.5);
    EXPECT_TRUE(std::isnan(one.se));
    // The binary K = 1 case is the textbook sqrt(p(1-p)/n) up to the n/(n-1) factor.
    const Estimate bin = mean_accuracy({{1}, {1}, {1}, {0}});
    EXPECT_NEAR(bin.se, std::sqrt(0.75 * 0.25 / 4 * 4.0 / 3.0), 1e-15);
}

// ---- pass@k, pass^k, maj@k --------------------------------------------------------------------

TEST(EvalPassAtK, MatchesTheCombinatorialDefinition) {
    // n = 10, c = 3: pass@k = 1 - C(7,k)/C(10,k) = 0.3, 1-21/45, 1-35/120, 1-35/210, 1-21/252.
    const double by_hand[] = {0.3, 1 - 21.0 / 45, 1 - 35.0 / 120, 1 - 35.0 / 210, 1 - 21.0 / 252};
    for (int k = 1; k <= 5; ++k) {
        const double exact = 1.0 - static_cast<double>(choose(7, k)) / choose(10, k);
        EXPECT_NEAR(exact, by_hand[k - 1], 1e-15);
        EXPECT_NEAR(pass_at_k_item(10, 3, k), exact, 1e-15) << "k=" << k;
    }
    // Everything from small n, c against the definition.
    for (int n = 1; n <= 20; ++n)
        for (int c = 0; c <= n; ++c)
            for (int k = 1; k <= n; ++k) {
                const double exact = 1.0 - static_cast<double>(choose(n - c, k)) / choose(n, k);
                ASSERT_NEAR(pass_at_k_item(n, c, k), exact, 1e-13) << n << " " << c << " " << k;
                const double hat = static_cast<double>(choose(c, k)) / choose(n, k);
                ASSERT_NEAR(pass_hat_k_item(n, c, k), hat, 1e-13) << n << " " << c << " " << k;
            }
    // The product form stays finite where the binomials overflow doubles (C(2000, 1000)).
    EXPECT_NEAR(pass_at_k_item(2000, 1, 1000), 0.5, 1e-12);
    EXPECT_GT(pass_at_k_item(2000, 2, 1000), 0.74);
}

TEST(EvalPassAtK, AveragedOverItems) {
    // Item A: 4 samples, 1 correct; item B: 4 samples, 4 correct; item C: 4, none.
    const ScoreRows s = {{0, 1, 0, 0}, {1, 1, 1, 1}, {0, 0, 0, 0}};
    // pass@1 = (1/4 + 1 + 0)/3; pass@2 = (1 - C(3,2)/C(4,2) + 1 + 0)/3 = (0.5 + 1)/3.
    EXPECT_NEAR(pass_at_k(s, 1).mean, 1.25 / 3, 1e-15);
    EXPECT_NEAR(pass_at_k(s, 2).mean, 1.5 / 3, 1e-15);
    // pass@2 per item (0.5, 1, 0): SE = sqrt(sum (v - 0.5)^2 / (3 * 2)) = sqrt(0.5 / 6).
    EXPECT_NEAR(pass_at_k(s, 2).se, std::sqrt(0.5 / 6), 1e-15);
    const auto curve = pass_at_k_curve(s);
    ASSERT_EQ(curve.size(), 4u);
    EXPECT_NEAR(curve[3].mean, 2.0 / 3, 1e-15);  // pass@4: any correct among all four
    // pass@1 equals avg@K for 0/1 scores.
    EXPECT_NEAR(curve[0].mean, mean_accuracy(s).mean, 1e-15);
    // pass^2 = (0 + 1 + 0)/3; pass^1 = pass@1.
    EXPECT_NEAR(pass_hat_k(s, 2).mean, 1.0 / 3, 1e-15);
    EXPECT_NEAR(pass_hat_k(s, 1).mean, 1.25 / 3, 1e-15);
    // Partial credit counts as correct only at the threshold.
    EXPECT_NEAR(pass_at_k({{0.6, 0.4}}, 1).mean, 0.0, 1e-15);
    EXPECT_NEAR(pass_at_k({{0.6, 0.4}}, 1, 0.5).mean, 0.5, 1e-15);
}

TEST(EvalPassAtK, ItemsWithTooFewSamplesAreExcluded) {
    const ScoreRows s = {{1, 0, 1}, {1, kNaN, kNaN}, {0, 0, 1}};
    const Estimate e = pass_at_k(s, 2);
    EXPECT_EQ(e.n_items, 2);
    EXPECT_EQ(e.n_excluded, 1);
    // Items 0 and 2: 1 - C(1,2)/C(3,2) = 1 and 1 - C(2,2)/C(3,2) = 2/3.
    EXPECT_NEAR(e.mean, (1 + 2.0 / 3) / 2, 1e-15);
}

// Ragged sample counts (failed samples): item A has 4 samples, 1 correct; B 4 samples, 2
// correct; C only 2 samples (1 correct); D only 1 (wrong). The curve stands on the items with
// all K = 4 samples, A and B, for every k (C and D left out, n_excluded = 2 at each k).
// Chen et al.'s estimator 1 - C(n-c, k)/C(n, k), by hand:
//   k = 1: A 1 - C(3,1)/C(4,1) = 1/4,  B 1 - C(2,1)/C(4,1) = 1/2  -> (1/4 + 1/2)/2 = 3/8
//   k = 2: A 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2,  B 1 - C(2,2)/C(4,2) = 5/6  -> 2/3
//   k = 3: A 1 - C(3,3)/C(4,3) = 3/4,  B n-c = 2 < 3 -> 1  -> 7/8
//   k = 4: A 1, B 1 -> 1
// The old curve took each k over the items with >= k samples: pass@1 over all four,
// (1/4 + 1/2 + 1/2 + 0)/4 = 5/16, and pass@2 over A, B and C, (1/2 + 5/6 + 1)/3 = 7/9; the
// points then describe different item sets, and the curve could even fall as k grows.
TEST(EvalPassAtK, TheCurveUsesOneItemSet) {
    const ScoreRows s = {{1, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, kNaN, kNaN}, {0, kNaN, kNaN, kNaN}};
    const std::vector<Estimate> curve = pass_at_k_curve(s);
    ASSERT_EQ(curve.size(), 4u);
    const double want[] = {3.0 / 8, 2.0 / 3, 7.0 / 8, 1.0};
    for (int k = 1; k <= 4; ++k) {
        EXPECT_NEAR(curve[k - 1].mean, want[k - 1], 1e-15) << "pass@" << k;
        EXPECT_EQ(curve[k - 1].n_items, 2) << "pass@" << k;
        EXPECT_EQ(curve[k - 1].n_excluded, 2) << "pass@" << k;
    }
    // pass@2 per item (1/2, 5/6): SE = |1/2 - 5/6| / 2 = 1/6.
    EXPECT_NEAR(curve[1].se, 1.0 / 6, 1e-15);
    // The K of the set is the most samples any item has, here 4.
    EXPECT_EQ(full_sample_count(s), 4);
    // pass_at_k and pass_hat_k take the same set with min_samples = K...
    EXPECT_NEAR(pass_at_k(s, 2, 1.0, 4).mean, 2.0 / 3, 1e-15);
    EXPECT_EQ(pass_at_k(s, 2, 1.0, 4).n_excluded, 2);
    // pass^2 = C(c,2)/C(4,2): A 0, B 1/6.
    EXPECT_NEAR(pass_hat_k(s, 2, 1.0, 4).mean, 1.0 / 12, 1e-15);
    // ... and alone each k keeps its own rule (items with >= k samples).
    EXPECT_NEAR(pass_at_k(s, 2).mean, 7.0 / 9, 1e-15);
    EXPECT_EQ(pass_at_k(s, 2).n_excluded, 1);
    // An item with no sample at all is left out too; no item at all gives an empty curve.
    EXPECT_EQ(pass_at_k_curve({{kNaN, kNaN}, {1, 0}})[0].n_excluded, 1);
    EXPECT_TRUE(pass_at_k_curve({{kNaN}}).empty());
}

TEST(EvalMajAtK, VotesOnTheFirstKSamples) {
    const std::vector<std::vector<std::string>> answers = {
        {"4", "5", "4", "5", "5"},  // maj@3: "4" (2 of 3), correct; maj@5: "5", wrong
        {"7", "8", "9", "", ""},    // maj@3: three-way tie -> first seen, "7" (wrong)
        {"", "2", "", "3", "3"},    // maj@3: abstentions do not vote -> "2" (correct)
        {"", "", "", "1", "1"},     // maj@3: all abstain -> 0
    };
    const ScoreRows scores = {
        {1, 0, 1, 0, 0},
        {0, 1, 0, 0, 0},
        {0, 1, 0, 0, 0},
        {0, 0, 0, 1, 1},
    };
    const Estimate m3 = maj_at_k(answers, scores, 3);
    EXPECT_EQ(m3.n_items, 4);
    EXPECT_NEAR(m3.mean, 2.0 / 4, 1e-15);
    const Estimate m5 = maj_at_k(answers, scores, 5);
    // Item 0: "5" wins 3-2 (wrong); item 1: "7","8","9" tie -> "7" (wrong);
    // item 2: "3" wins 2-1 (wrong); item 3: "1" (correct).
    EXPECT_NEAR(m5.mean, 1.0 / 4, 1e-15);
    // maj@1 is the first present sample's score.
    EXPECT_NEAR(maj_at_k(answers, scores, 1).mean, 1.0 / 4, 1e-15);
    // Missing samples are skipped; an item without k present samples is excluded.
    const Estimate skip = maj_at_k({{"a", "b", "b"}}, {{1, kNaN, 0}}, 2);
    EXPECT_NEAR(skip.mean, 1.0, 1e-15);  // "a" and "b" tie: "a" came first
    EXPECT_EQ(maj_at_k({{"a", "b", "b"}}, {{1, kNaN, 0}}, 3).n_excluded, 1);
}

// ---- intervals --------------------------------------------------------------------------------

TEST(EvalIntervals, Wilson) {
    // Wilson (1927) closed form evaluated with mpmath at 30 digits, z = 1.959963984540054:
    // 8/10 -> (0.4901624715, 0.9433178485), the interval R's prop.test(8, 10, correct = FALSE)
    // reports; 0/10 -> (0, z^2 / (10 + z^2)) = (0, 0.2775327999).
    const Interval a = wilson_interval(8, 10);
    EXPECT_NEAR(a.lo, 0.4901624715366417, 1e-12);
    EXPECT_NEAR(a.hi, 0.9433178485456247, 1e-12);
    const Interval b = wilson_interval(0, 10);
    EXPECT_NEAR(b.lo, 0.0, 1e-15);
    EXPECT_NEAR(b.hi, 0.2775327998628893, 1e-12);
    // Symmetry: 10/10 mirrors 0/10.
    const Interval c = wilson_interval(10, 10);
    EXPECT_NEAR(c.lo, 1 - 0.2775327998628893, 1e-12);
    EXPECT_NEAR(c.hi, 1.0, 1e-15);
}

TEST(EvalIntervals, JeffreysAndClopperPearson) {
    // Jeffreys 8/10 = Beta(8.5, 2.5) quantiles 0.025 / 0.975, computed by bisection on mpmath's
    // betainc at 40 digits: (0.497225503560007, 0.955940586447369).
    const Interval j = jeffreys_interval(8, 10);
    EXPECT_NEAR(j.lo, 0.497225503560007, 1e-12);
    EXPECT_NEAR(j.hi, 0.955940586447369, 1e-12);
    // 0/10: the lower end is 0 by convention (Brown, Cai & DasGupta 2001); upper is the 0.975
    // quantile of Beta(0.5, 10.5) = 0.217196267509211 (mpmath).
    const Interval j0 = jeffreys_interval(0, 10);
    EXPECT_EQ(j0.lo, 0.0);
    EXPECT_NEAR(j0.hi, 0.217196267509211, 1e-12);
    // Without the convention the posterior interval starts above 0.
    EXPECT_NEAR(beta_posterior_interval(0, 10).lo, 4.78904331575819e-5, 1e-15);
    // Jeffreys prior on 3/10: Beta(3.5, 7.5) quantiles = (0.0926945939381532, 0.605818318148671)
    // (mpmath).
    const Interval j3 = beta_posterior_interval(3, 10);
    EXPECT_NEAR(j3.lo, 0.0926945939381532, 1e-12);
    EXPECT_NEAR(j3.hi, 0.605818318148671, 1e-12);
    // Uniform prior Beta(1,1) on 1/8 -> Beta(2, 8): lower 0.025 quantile via closed-form check.
    const Interval u = beta_posterior_interval(1, 8, 0.95, 1.0, 1.0);
    EXPECT_NEAR(incomplete_beta(2, 8, u.lo), 0.025, 1e-12);
    EXPECT_NEAR(incomplete_beta(2, 8, u.hi), 0.975, 1e-12);
    // Clopper-Pearson 8/10: the textbook (0.4439, 0.9748) = Beta(8,3) 0.025 / Beta(9,2) 0.975.
    const Interval cp = clopper_pearson_interval(8, 10);
    EXPECT_NEAR(cp.lo, 0.443904537692358, 1e-12);
    EXPECT_NEAR(cp.hi, 0.974789273673167, 1e-12);
    // 0/10 has the closed form upper = 1 - 0.025^(1/10) = 0.3084971078.
    const Interval cp0 = clopper_pearson_interval(0, 10);
    EXPECT_EQ(cp0.lo, 0.0);
    EXPECT_NEAR(cp0.hi, 1 - std::pow(0.025, 0.1), 1e-13);
}

TEST(EvalIntervals, Normal) {
    const Interval n = normal_interval(0.6, 0.1);
    EXPECT_NEAR(n.lo, 0.6 - 0.1959963984540054, 1e-13);
    EXPECT_NEAR(n.hi, 0.6 + 0.1959963984540054, 1e-13);
    // 90%: z = 1.6448536269514722.
    EXPECT_NEAR(normal_interval(0, 1, 0.9).hi, 1.6448536269514722, 1e-12);
}

// ---- bootstrap --------------------------------------------------------------------------------

TEST(EvalBootstrap, ReproducibleForASeed) {
    const std::vector<double> v = {1, 0, 1, 1, 0.5, 0, 1, 0.25, 1, 0, 0.75, 1};
    const BootstrapResult a = bootstrap_mean(v, 2000, 42);
    const BootstrapResult b = bootstrap_mean(v, 2000, 42);
    EXPECT_EQ(a.interval.lo, b.interval.lo);
    EXPECT_EQ(a.interval.hi, b.interval.hi);
    EXPECT_EQ(a.se, b.se);
    const BootstrapResult c = bootstrap_mean(v, 2000, 43);
    EXPECT_NE(c.se, a.se);
    // The estimate is the plain mean; the interval contains it.
    EXPECT_NEAR(a.estimate, 7.5 / 12, 1e-15);
    EXPECT_LT(a.interval.lo, a.estimate);
    EXPECT_GT(a.interval.hi, a.estimate);
    // The bootstrap SE of a mean is the plug-in SE sqrt(sum (v - m)^2) / n up to Monte Carlo
    // noise (2000 resamples: about 1.6% relative).
    const double m = 7.5 / 12;
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    EXPECT_NEAR(a.se, std::sqrt(ss) / 12, 0.08 * std::sqrt(ss) / 12);
}

TEST(EvalBootstrap, DegenerateAndGeneralStatistic) {
    const BootstrapResult r = bootstrap_mean(std::vector<double>{0.5, 0.5, 0.5}, 100, 1);
    EXPECT_EQ(r.interval.lo, 0.5);
    EXPECT_EQ(r.interval.hi, 0.5);
    EXPECT_EQ(r.se, 0.0);
    // A statistic over item indices: the maximum of {0, 1, 2, 3} ranges within [0, 3] and the
    // 97.5% percentile of 1000 maxima of 4 draws is 3 (P(max < 3) = (3/4)^4 = 0.32).
    const std::vector<double> v = {0, 1, 2, 3};
    const BootstrapResult mx = bootstrap(
        v.size(),
        [&](std::span<const size_t> idx) {
            double best = -1;
            for (size_t i : idx) best = std::max(best, v[i]);
            return best;
        },
        1000, 7);
    EXPECT_EQ(mx.estimate, 3.0);
    EXPECT_EQ(mx.interval.hi, 3.0);
    EXPECT_GE(mx.interval.lo, 0.0);
}

// ---- paired comparison ------------------------------------------------------------------------
//
// a = (1, .5, 1, 0, .5, 1, .5, 1), b = (.5, .5, 0, 0, 0, 1, .5, .5):
// d = (.5, 0, 1, 0, .5, 0, 0, .5); mean 2.5/8 = 0.3125; sum (d - 0.3125)^2 = 0.96875;
// Var(d) = 0.96875 / 7 = 0.13839286; SE = sqrt(Var/8) = 0.13152607; z = 2.37595482;
// p = erfc(z / sqrt 2) = 0.01750361; paired t (7 df): p = I_{7/(7+z^2)}(3.5, 0.5) = 0.04917371
// (mpmath). Sign flips: the nonzero d are .5, 1, .5, .5 (sum 2.5); only all-plus and all-minus
// reach |sum| >= 2.5, so the exact p = 2/16 = 0.125.

TEST(EvalPaired, ConstructedData) {
    const std::vector<double> a = {1, .5, 1, 0, .5, 1, .5, 1};
    const std::vector<double> b = {.5, .5, 0, 0, 0, 1, .5, .5};
    const PairedComparison pc = compare_paired(a, b);
    EXPECT_EQ(pc.n_items, 8);
    EXPECT_DOUBLE_EQ(pc.mean_a, 0.6875);
    EXPECT_DOUBLE_EQ(pc.mean_b, 0.375);
    EXPECT_DOUBLE_EQ(pc.diff, 0.3125);
    EXPECT_NEAR(pc.se, 0.13152607020228782, 1e-14);
    EXPECT_NEAR(pc.z, 2.3759548165574573, 1e-12);
    EXPECT_NEAR(pc.p_value, 0.017503606022017257, 1e-12);
    EXPECT_NEAR(pc.p_value_t, 0.0491737142048034, 1e-12);
    EXPECT_NEAR(pc.correlation, 0.47519096331149147, 1e-13);
    EXPECT_NEAR(pc.unpaired_se, 0.18145001279376408, 1e-13);
    EXPECT_NEAR(pc.interval.lo, 0.3125 - 1.959963984540054 * pc.se, 1e-13);
    EXPECT_NEAR(pc.interval.hi, 0.3125 + 1.959963984540054 * pc.se, 1e-13);
    // Pairing helps when items correlate.
    EXPECT_LT(pc.se, pc.unpaired_se);

    std::vector<double> d(a.size());
    for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
    EXPECT_DOUBLE_EQ(sign_flip_p_value(d, 0, 0), 0.125);
    // Monte Carlo (forced by exact_max_items = 0) agrees within noise and is reproducible.
    const double mc = sign_flip_p_value(d, 20000, 5, 0);
    EXPECT_NEAR(mc, 0.125, 0.01);
    EXPECT_EQ(mc, sign_flip_p_value(d, 20000, 5, 0));
}

TEST(EvalPaired, IdenticalRunsAndMissingItems) {
    const std::vector<double> a = {1, 0, 0.5, 1};
    const PairedComparison same = compare_paired(a, a);
    EXPECT_EQ(same.diff, 0.0);
    EXPECT_EQ(same.se, 0.0);
    EXPECT_EQ(same.p_value, 1.0);
    EXPECT_DOUBLE_EQ(sign_flip_p_value(std::vector<double>{0, 0, 0}, 0, 0), 1.0);
    // A NaN on either side drops the item from both.
    const std::vector<double> b = {0, kNaN, 0.5, 0};
    const PairedComparison pc = compare_paired(a, b);
    EXPECT_EQ(pc.n_items, 3);
    EXPECT_DOUBLE_EQ(pc.diff, 2.0 / 3);
    EXPECT_DOUBLE_EQ(pc.mean_a, 2.5 / 3);
}

// ---- power analysis ---------------------------------------------------------------------------

// Six items in three clusters, d = a - b = (1, 1 | 1, 1 | 0, -1), d_bar = 1/2, residuals
// r = (1/2, 1/2 | 1/2, 1/2 | -1/2, -3/2), sum r^2 = 14/4.
//   unclustered: SE^2 = (14/4) / (6 * 5) = 7/60
//   clustered (Miller, statistics.h clustered_se): SE^2 = 7/60 + (1/36) sum_c [(sum_c r)^2 -
//   sum_c r^2] = 7/60 + (1/36) [(1 - 1/2) + (1 - 1/2) + (4 - 10/4)] = 7/60 + 5/72 = 67/360.
// t = (1/2) / sqrt(67/360) with C - 1 = 2 degrees of freedom, whose CDF has a closed form:
//   F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2).
TEST(EvalPaired, ClusteredByHand) {
    const std::vector<double> a = {1, 1, 1, 1, 0, 0}, b = {0, 0, 0, 0, 0, 1};
    const std::vector<std::string> clusters = {"g1", "g1", "g2", "g2", "g3", "g3"};
    const PairedComparison pc = compare_paired_clustered(a, b, clusters);
    EXPECT_EQ(pc.n_items, 6);
    EXPECT_EQ(pc.n_clusters, 3);
    EXPECT_NEAR(pc.diff, 0.5, 1e-15);
    EXPECT_NEAR(pc.se, std::sqrt(67.0 / 360), 1e-15);
    EXPECT_NEAR(pc.se_items, std::sqrt(7.0 / 60), 1e-15);
    const double t = 0.5 / std::sqrt(67.0 / 360);
    EXPECT_NEAR(pc.z, t, 1e-13);
    EXPECT_NEAR(pc.p_value_t, 1 - t / std::sqrt(2 + t * t), 1e-12);
    EXPECT_NEAR(pc.p_value, 2 * normal_cdf(-t), 1e-15);
    EXPECT_NEAR(pc.interval.lo, 0.5 - 1.959963984540054 * std::sqrt(67.0 / 360), 1e-12);
    // Unclustered, the same data claims a smaller SE (anti-conservative here).
    const PairedComparison plain = compare_paired(a, b);
    EXPECT_EQ(plain.n_clusters, 0);
    EXPECT_NEAR(plain.se, std::sqrt(7.0 / 60), 1e-15);
    // One item per cluster is the plain comparison; a missing item drops out of its cluster.
    const std::vector<std::string> own = {"1", "2", "3", "4", "5", "6"};
    EXPECT_NEAR(compare_paired_clustered(a, b, own).se, plain.se, 1e-15);
    EXPECT_NEAR(compare_paired_clustered(a, b, own).p_value_t, plain.p_value_t, 1e-15);
    std::vector<double> a2 = a;
    a2[5] = kNaN;
    EXPECT_EQ(compare_paired_clustered(a2, b, clusters).n_items, 5);
    EXPECT_EQ(compare_paired_clustered(a2, b, clusters).n_clusters, 3);
}

TEST(EvalPower, FormulasAndRoundTrip) {
    PowerInputs in;
    in.omega2 = 0.05;
    in.sigma2_a = in.sigma2_b = 0.2;
    in.k_a = in.k_b = 4;
    // z = 1.959963984540054 + 0.8416212335729143 = 2.801585218; z^2 = 7.848879734 (Miller's
    // "(1.96 + 0.84)^2 = 7.84"). Total variance 0.05 + 0.05 + 0.05 = 0.15.
    const double z = 1.959963984540054 + 0.8416212335729143;
    EXPECT_NEAR(minimum_detectable_effect(in, 100), z * std::sqrt(0.15 / 100), 1e-12);
    EXPECT_NEAR(items_needed(in, 0.1), z * z * 0.15 / 0.01, 1e-9);
    EXPECT_NEAR(z * z, 7.848879734349088, 1e-12);
    // Round trip: the MDE at n items needs n items.
    for (double n : {30.0, 100.0, 198.0, 1000.0}) {
        EXPECT_NEAR(items_needed(in, minimum_detectable_effect(in, n)), n, 1e-9 * n);
    }
    // Samples per item: the K that makes the MDE at n equal delta is the K we started from.
    EXPECT_NEAR(samples_needed(in, 100, minimum_detectable_effect(in, 100)), 4.0, 1e-9);
    // Below the between-item floor no K is enough.
    EXPECT_TRUE(std::isinf(samples_needed(in, 100, 0.01)));
    // More samples shrink the MDE, but not below the omega floor.
    PowerInputs many = in;
    many.k_a = many.k_b = 1000000;
    EXPECT_LT(minimum_detectable_effect(many, 100), minimum_detectable_effect(in, 100));
    EXPECT_NEAR(minimum_detectable_effect(many, 100), z * std::sqrt(0.05 / 100), 1e-5);
}

TEST(EvalPower, EstimatedFromRuns) {
    // Run A, K = 2: items [1,0] [1,1] [0,0] [1,0]; within-item variances (n-1 denominator):
    // 0.5, 0, 0, 0.5 -> sigma2_a = 0.25. Run B: [0,0] [1,0] [0,0] [0,0] -> 0, .5, 0, 0 -> 0.125.
    // Means a = (.5, 1, 0, .5), b = (0, .5, 0, 0): d = (.5, .5, 0, .5), mean .375,
    // Var(d) = (3 * .015625 + .140625) / 3 = 0.0625.
    // omega2 = max(0, 0.0625 - 0.25/2 - 0.125/2) = 0.
    const ScoreRows a = {{1, 0}, {1, 1}, {0, 0}, {1, 0}};
    const ScoreRows b = {{0, 0}, {1, 0}, {0, 0}, {0, 0}};
    const PowerInputs in = estimate_power_inputs(a, b);
    EXPECT_DOUBLE_EQ(in.sigma2_a, 0.25);
    EXPECT_DOUBLE_EQ(in.sigma2_b, 0.125);
    EXPECT_EQ(in.k_a, 2);
    EXPECT_EQ(in.k_b, 2);
    EXPECT_DOUBLE_EQ(in.omega2, 0.0);
    // K = 1: all variance goes to omega2.
    const PowerInputs one = estimate_power_inputs({{1}, {0}, {1}}, {{0}, {0}, {0}});
    EXPECT_EQ(one.sigma2_a, 0.0);
    EXPECT_NEAR(one.omega2, 1.0 / 3, 1e-15);  // d = (1, 0, 1): Var = (2 * 1/9 + 4/9) / 2
}

}  // namespace
}  // namespace crucible::eval
