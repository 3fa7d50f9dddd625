// Statistics for evals: accuracy with honest standard errors, pass@k / pass^k / maj@k,
// small-n intervals, the seeded bootstrap, paired comparisons and power analysis.
//
// Pure functions, no I/O. Formulas follow /shared/reference/evals-rubrics.md §1:
// Miller, "Adding Error Bars to Evals" (arXiv 2411.00640), the Codex pass@k estimator
// (Chen et al. 2021), Wilson (1927), the Jeffreys interval (Brown, Cai & DasGupta 2001).
//
// Scores come as a ragged matrix `ScoreRows`: one row per item, one entry per sample index,
// each in [0, 1]; NaN marks a missing sample (e.g. an endpoint error). An item with no
// present sample is left out of every statistic, and the result counts it in `n_excluded`.
//
// Notation used below: n items, item i has K_i present samples and per-item mean s_i;
// s_bar = (1/n) sum_i s_i.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace crucible::eval {

using ScoreRows = std::vector<std::vector<double>>;

// A point estimate over items with its standard error.
struct Estimate {
    double mean = 0.0;   // NaN when no item contributed
    double se = 0.0;     // NaN when fewer than two items contributed
    int n_items = 0;     // items that contributed
    int n_excluded = 0;  // items left out (no present sample, or fewer than k for @k metrics)
};

struct Interval {
    double lo = 0.0;
    double hi = 0.0;
};

// ---- distributions ----------------------------------------------------------------------------

// Standard normal CDF Phi(x).
double normal_cdf(double x);
// Phi^{-1}(p) for p in (0, 1) (Acklam's rational approximation refined by one Halley step;
// absolute error below 1e-14). Returns -inf / +inf at p = 0 / 1.
double normal_quantile(double p);
// The regularized incomplete beta function I_x(a, b) for a, b > 0, x in [0, 1], by the
// continued fraction (modified Lentz), using the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) where
// the fraction converges faster.
double incomplete_beta(double a, double b, double x);
// The p-quantile of Beta(a, b): the x with I_x(a, b) = p, by bisection on [0, 1] to machine
// precision (I_x is monotone, so bisection cannot fail).
double beta_quantile(double a, double b, double p);
// Student t CDF with `df` degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0.
double student_t_cdf(double t, double df);

// ---- per-item reductions ----------------------------------------------------------------------

// s_i: the mean of item i's present samples, NaN for an item with none.
std::vector<double> item_means(const ScoreRows& scores);

// The sample standard deviation (n - 1 denominator) of `values`; NaN for fewer than two.
double sample_sd(const std::vector<double>& values);

// Mean of the non-NaN `values` with the CLT standard error
//   SE = sqrt( 1/(n(n-1)) * sum_i (v_i - v_bar)^2 ).
Estimate mean_with_se(std::span<const double> values);

// avg@K: the mean of per-item means, with the SE taken over items (Miller §1.1: the unit of
// resampling is the question; the K samples of one item are clustered in it, so this is the
// clustered-by-item SE). Equals pass@1 estimated from all samples.
Estimate mean_accuracy(const ScoreRows& scores);

// Clustered SE of the mean of `values` (one per item, NaN ignored) where `clusters[i]` names
// item i's cluster. REQUIRES: clusters.size() == values.size().
//  finite_correction = false (Miller's formula, arXiv 2411.00640):
//    SE^2 = SE_CLT^2 + (1/n^2) sum_c sum_{i in c} sum_{j in c, j != i} (v_i - v_bar)(v_j - v_bar)
//  finite_correction = true (inspect_ai's stderr(cluster=...)):
//    SE^2 = C/(C-1) * sum_c ( sum_{i in c} (v_i - v_bar) )^2 / n^2,  C = number of clusters.
// With one item per cluster both equal SE_CLT. Returns NaN with fewer than two items (or,
// with the correction, fewer than two clusters).
double clustered_se(std::span<const double> values, std::span<const std::string> clusters,
                    bool finite_correction = false);

// avg@K with the clustered SE over per-item means (see clustered_se).
Estimate mean_accuracy_clustered(const ScoreRows& scores, std::span<const std::string> clusters,
                                 bool finite_correction = false);

// ---- pass@k, pass^k, maj@k --------------------------------------------------------------------

// Unbiased pass@k for one item with n samples of which c are correct (Chen et al. 2021):
//   1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i),   and 1 when n - c < k.
// REQUIRES: 0 <= c <= n, 1 <= k <= n.
double pass_at_k_item(int n, int c, int k);
// Unbiased pass^k (all k attempts succeed; tau-bench): C(c, k)/C(n, k)
//   = prod_{i=0}^{k-1} (c - i)/(n - i),   and 0 when c < k.
// REQUIRES: 0 <= c <= n, 1 <= k <= n.
double pass_hat_k_item(int n, int c, int k);

// A sample counts as correct when its score is >= `correct_at` (default: full credit).
// pass@k averaged over items, SE across items. Items with fewer than max(k, min_samples)
// present samples are excluded (counted in n_excluded), as human-eval and inspect refuse
// k > n. With min_samples = full_sample_count(scores), every k is taken on the same items (the
// ones with all K samples): that is how a run's pass@k, pass^k and curve are reported.
Estimate pass_at_k(const ScoreRows& scores, int k, double correct_at = 1.0, int min_samples = 0);
// K of a run's @k metrics: the largest number of present samples an item has (0 for none).
int full_sample_count(const ScoreRows& scores);
// pass@k for k = 1 .. K, K = full_sample_count(scores), all on ONE item set: the items with
// K present samples. Element k-1 holds pass@k; every element has the same n_items, and the
// same n_excluded (items with fewer than K present samples, those with none included), so the
// curve never mixes item sets (an item with fewer samples would enter only its low-k points).
std::vector<Estimate> pass_at_k_curve(const ScoreRows& scores, double correct_at = 1.0);
// pass^k averaged over items, SE across items; same exclusion rule as pass_at_k.
Estimate pass_hat_k(const ScoreRows& scores, int k, double correct_at = 1.0, int min_samples = 0);

// maj@k: per item, a majority vote over the answers of its first k present samples (in sample
// index order); the item scores the score of the first sample that gave the winning answer.
// `answers[i][j]` is sample j's canonical answer (the caller canonicalises, e.g. with the math
// normaliser, so equivalent answers are spelled the same); an empty answer abstains. Ties go
// to the tied answer that appeared first among those k samples. An item whose k samples all
// abstain scores 0. Items with fewer than k present samples are excluded.
// REQUIRES: answers has the shape of scores (missing samples may have any answer).
Estimate maj_at_k(const std::vector<std::vector<std::string>>& answers, const ScoreRows& scores,
                  int k);

// ---- intervals for a proportion ---------------------------------------------------------------

// Two-sided z for a central interval of probability `level` (1.959964 for 0.95).
double z_for_level(double level);
// mean +- z * se.
Interval normal_interval(double mean, double se, double level = 0.95);
// Wilson score interval for `successes` out of `n` trials (successes may be fractional, e.g.
// the sum of per-item means):
//   (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n),  p = successes/n.
// REQUIRES: n > 0, 0 <= successes <= n.
Interval wilson_interval(double successes, double n, double level = 0.95);
// Equal-tailed posterior interval of Beta(successes + prior_a, n - successes + prior_b).
// prior 0.5/0.5 is the Jeffreys interval (Brown, Cai & DasGupta 2001 additionally set the lower
// end to 0 when successes = 0 and the upper end to 1 when successes = n; jeffreys_interval does,
// this function does not). prior 1/1 is the uniform-prior Bayesian interval of bayes_evals.
Interval beta_posterior_interval(double successes, double n, double level = 0.95,
                                 double prior_a = 0.5, double prior_b = 0.5);
Interval jeffreys_interval(double successes, double n, double level = 0.95);
// Clopper-Pearson exact interval: [Beta^{-1}(a/2; x, n-x+1), Beta^{-1}(1-a/2; x+1, n-x)],
// with 0 / 1 at the boundaries.
Interval clopper_pearson_interval(double successes, double n, double level = 0.95);

// ---- bootstrap --------------------------------------------------------------------------------

struct BootstrapResult {
    double estimate = 0.0;  // the statistic on the original items
    double se = 0.0;        // standard deviation of the replicates
    Interval interval;      // percentile interval (linear interpolation, numpy's default)
};

// Percentile bootstrap over items: `resamples` times draw n item indices with replacement
// (Rng(seed), so the result is a function of the seed), evaluate `statistic` on them.
// REQUIRES: n_items > 0, resamples > 0.
BootstrapResult bootstrap(size_t n_items,
                          const std::function<double(std::span<const size_t>)>& statistic,
                          int resamples, uint64_t seed, double level = 0.95);
// The bootstrap of the mean of `values` (NaN entries are dropped first).
BootstrapResult bootstrap_mean(std::span<const double> values, int resamples, uint64_t seed,
                               double level = 0.95);

// ---- paired comparison ------------------------------------------------------------------------

// Two runs scored on the same items: d_i = a_i - b_i over the items present in both.
struct PairedComparison {
    int n_items = 0;      // items present in both runs
    int n_clusters = 0;   // clusters among them (compare_paired_clustered); 0: unclustered
    double mean_a = 0.0;  // over the paired items
    double mean_b = 0.0;
    double diff = 0.0;         // mean of d_i = mean_a - mean_b
    double se = 0.0;           // sqrt(Var(d)/n), Var with n-1 (Miller §1.1); clustered: below
    double se_items = 0.0;     // sqrt(Var(d)/n) always (equals se when unclustered)
    double unpaired_se = 0.0;  // sqrt(SE_a^2 + SE_b^2), for contrast
    double correlation = 0.0;  // Pearson correlation of a_i and b_i (NaN if either is constant)
    Interval interval;         // diff +- z se at `level`
    double z = 0.0;            // diff / se
    double p_value = 0.0;      // two-sided, normal approximation: 2 (1 - Phi(|z|))
    double p_value_t = 0.0;    // two-sided t: n-1 degrees of freedom (clustered: C-1)
};

// Paired comparison of per-item values (e.g. item_means of two runs); NaN in either drops
// the item. With se = 0 (all differences equal): p = 1 if diff = 0, else 0.
// REQUIRES: a.size() == b.size().
PairedComparison compare_paired(std::span<const double> a, std::span<const double> b,
                                double level = 0.95);
// The same with items grouped in clusters (`clusters[i]` names item i's; give an item
// without one a cluster of its own): se is clustered_se of the differences d_i (Miller's
// formula, no finite-cluster correction), the interval and p-values come from it, and the t
// test has C-1 degrees of freedom (C = clusters with a paired item). Items of one cluster
// are correlated, so the plain sqrt(Var(d)/n) understates the error.
// REQUIRES: a.size() == b.size() == clusters.size().
PairedComparison compare_paired_clustered(std::span<const double> a, std::span<const double> b,
                                          std::span<const std::string> clusters,
                                          double level = 0.95);

// Two-sided sign-flip permutation test of "mean of d is 0" (under H0 each d_i is symmetric
// about 0). The statistic is |sum d_i|; p = share of sign assignments with a statistic at
// least the observed one. With n <= exact_max_items all 2^n assignments are enumerated (exact;
// the seed is unused); otherwise `resamples` random assignments from Rng(seed), and
// p = (1 + hits) / (1 + resamples) (never 0). NaN entries are dropped.
double sign_flip_p_value(std::span<const double> diffs, int resamples, uint64_t seed,
                         int exact_max_items = 20);

// ---- power analysis (Miller §1.1) ---------------------------------------------------------------
//
// Two runs A, B on the same n items with K_A, K_B samples per item. omega2 = Var(x_A - x_B),
// the between-item variance of the paired difference of conditional means; sigma2_a/b =
// E[sigma_i^2], the within-item (sample-to-sample) variance. With z = z_{alpha/2} + z_{beta}:
//   MDE   delta = z * sqrt( (omega2 + sigma2_a/K_A + sigma2_b/K_B) / n )
//   items n     = z^2 * (omega2 + sigma2_a/K_A + sigma2_b/K_B) / delta^2
//   samples K   = z^2 (sigma2_a + sigma2_b) / (n delta^2 - z^2 omega2)   (with K_A = K_B = K)
// For alpha = 0.05 and power 0.8, z^2 = (1.959964 + 0.841621)^2 = 7.849.
struct PowerInputs {
    double omega2 = 0.0;
    double sigma2_a = 0.0;
    double sigma2_b = 0.0;
    int k_a = 1;
    int k_b = 1;
    double alpha = 0.05;
    double power = 0.8;
};

// The smallest true difference detected with probability `power` by a two-sided test at
// `alpha` on n_items items. REQUIRES: n_items > 0.
double minimum_detectable_effect(const PowerInputs& in, double n_items);
// Items needed to detect `delta` (a real number; round up for a count). REQUIRES: delta != 0.
double items_needed(const PowerInputs& in, double delta);
// Samples per item (K_A = K_B = K) needed at n_items to detect `delta`; +inf when even
// K -> infinity does not suffice (the between-item floor omega2 is too large).
double samples_needed(const PowerInputs& in, double n_items, double delta);

// Variance components from two runs' score matrices on the same items (rows aligned):
//   sigma2 = mean over items of the within-item sample variance (n-1 denominator; items with
//            fewer than two samples skipped; 0 when no item has two),
//   omega2 = max(0, Var_i(s_A,i - s_B,i) - sigma2_a/K_A - sigma2_b/K_B),
// with K_A, K_B the mean present samples per item (rounded to the nearest integer, >= 1).
// With K = 1 the within-item variance cannot be separated: sigma2 = 0 and omega2 carries the
// whole variance, so MDE and items_needed stay right but samples_needed is not meaningful.
// REQUIRES: a.size() == b.size().
PowerInputs estimate_power_inputs(const ScoreRows& a, const ScoreRows& b);

// ---- experiments: seeds x items ----------------------------------------------------------------
// `runs[s][i]`: run s's value on item i (its per-item mean; NaN: missing), every run over the
// same items. The estimate is the mean over runs of each run's mean over its present items (a
// run with none is left out). Two-stage percentile bootstrap (Davison & Hinkley 1997, §3.8, the
// "hierarchical bootstrap"): each replicate draws S runs with replacement, then n items with
// replacement — one draw for all chosen runs, since an item is hard or easy for every seed
// alike — and evaluates the estimate on them. Its spread carries both the seed-to-seed variance
// and the item sampling: with identical runs it is the item bootstrap, with items that score the
// same it is the bootstrap over seeds. REQUIRES: runs non-empty, rows of one length > 0.
BootstrapResult seeds_and_items_bootstrap(const ScoreRows& runs, int resamples, uint64_t seed,
                                          double level = 0.95);
// The difference b - a of two arms' estimates over the same items: each replicate draws the
// items once for both (paired on items) and each arm's runs on their own (a seed of one arm is
// not the same run as that seed of the other).
BootstrapResult seeds_and_items_bootstrap_diff(const ScoreRows& a, const ScoreRows& b,
                                               int resamples, uint64_t seed, double level = 0.95);
// The true difference a two-sided test at level 0.05 detects with probability 0.8 given the
// difference's standard error: (z_0.975 + z_0.8) * se = 2.8016 * se.
double minimum_detectable_difference(double se);

}  // namespace crucible::eval
