#include "eval/statistics.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>
#include <unordered_map>

#include "core/rng.h"

namespace crucible::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Continued fraction for I_x(a, b) (Numerical Recipes' betacf, modified Lentz).
double beta_continued_fraction(double a, double b, double x) {
    constexpr double kTiny = 1e-300;
    constexpr double kEps = 1e-16;
    const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0;
    double d = 1.0 - qab * x / qap;
    if (std::fabs(d) < kTiny) d = kTiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; ++m) {
        const double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::fabs(del - 1.0) < kEps) break;
    }
    return h;
}

// Type-7 (linear interpolation) quantile of sorted values, numpy's default.
double sorted_quantile(const std::vector<double>& sorted, double q) {
    const double pos = q * static_cast<double>(sorted.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    const double frac = pos - static_cast<double>(lo);
    return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

std::vector<double> present(std::span<const double> values) {
    std::vector<double> out;
    out.reserve(values.size());
    for (double v : values)
        if (!std::isnan(v)) out.push_back(v);
    return out;
}

double mean_of(const std::vector<double>& v) {
    double s = 0.0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}

// Sample variance with the n-1 denominator; NaN for fewer than two values.
double sample_variance(const std::vector<double>& v) {
    if (v.size() < 2) return kNaN;
    const double m = mean_of(v);
    double ss = 0.0;
    for (double x : v) ss += (x - m) * (x - m);
    return ss / static_cast<double>(v.size() - 1);
}

// One item's present samples n and correct samples c.
struct ItemCounts {
    int n = 0;
    int c = 0;
};

ItemCounts count_item(const std::vector<double>& row, double correct_at) {
    ItemCounts ic;
    for (double v : row) {
        if (std::isnan(v)) continue;
        ++ic.n;
        if (v >= correct_at) ++ic.c;
    }
    return ic;
}

// Averages a per-item value over items with at least max(k, min_samples) present samples.
template <typename F>
Estimate per_item_k_metric(const ScoreRows& scores, int k, int min_samples, double correct_at,
                           F item_value) {
    std::vector<double> values;
    int excluded = 0;
    for (const auto& row : scores) {
        const ItemCounts ic = count_item(row, correct_at);
        if (k < 1 || ic.n < k || ic.n < min_samples || ic.n == 0) {
            ++excluded;
            continue;
        }
        values.push_back(item_value(ic.n, ic.c, k));
    }
    Estimate e = mean_with_se(values);
    e.n_excluded = excluded;
    return e;
}

}  // namespace

// ---- distributions ----------------------------------------------------------------------------

double normal_cdf(double x) {
    return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double normal_quantile(double p) {
    if (std::isnan(p) || p < 0.0 || p > 1.0) return kNaN;
    if (p == 0.0) return -kInf;
    if (p == 1.0) return kInf;
    // Acklam's coefficients.
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    constexpr double kLow = 0.02425;
    double x;
    if (p < kLow) {
        const double q = std::sqrt(-2.0 * std::log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (p <= 1.0 - kLow) {
        const double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        const double q = std::sqrt(-2.0 * std::log1p(-p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    // One Halley step on Phi(x) - p brings the 1e-9 approximation to machine precision.
    for (int it = 0; it < 2; ++it) {
        const double e = normal_cdf(x) - p;
        const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(x * x / 2.0);
        x = x - u / (1.0 + x * u / 2.0);
    }
    return x;
}

double incomplete_beta(double a, double b, double x) {
    if (std::isnan(x) || std::isnan(a) || std::isnan(b) || a <= 0.0 || b <= 0.0) return kNaN;
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    const double log_front =
        std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
    const double front = std::exp(log_front);
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(a, b, x) / a;
    return 1.0 - front * beta_continued_fraction(b, a, 1.0 - x) / b;
}

double beta_quantile(double a, double b, double p) {
    if (std::isnan(p) || p < 0.0 || p > 1.0 || a <= 0.0 || b <= 0.0) return kNaN;
    if (p == 0.0) return 0.0;
    if (p == 1.0) return 1.0;
    double lo = 0.0, hi = 1.0;
    for (int it = 0; it < 200; ++it) {
        const double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;  // no representable point left between them
        if (incomplete_beta(a, b, mid) < p) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 0.5 * (lo + hi);
}

double student_t_cdf(double t, double df) {
    if (std::isnan(t) || !(df > 0.0)) return kNaN;
    if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
    const double tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    return t >= 0.0 ? 1.0 - tail : tail;
}

// ---- per-item reductions ----------------------------------------------------------------------

std::vector<double> item_means(const ScoreRows& scores) {
    std::vector<double> means;
    means.reserve(scores.size());
    for (const auto& row : scores) {
        double s = 0.0;
        int n = 0;
        for (double v : row) {
            if (std::isnan(v)) continue;
            s += v;
            ++n;
        }
        means.push_back(n > 0 ? s / n : kNaN);
    }
    return means;
}

double sample_sd(const std::vector<double>& values) {
    return std::sqrt(sample_variance(values));
}

Estimate mean_with_se(std::span<const double> values) {
    const std::vector<double> v = present(values);
    Estimate e;
    e.n_items = static_cast<int>(v.size());
    e.n_excluded = static_cast<int>(values.size() - v.size());
    if (v.empty()) {
        e.mean = kNaN;
        e.se = kNaN;
        return e;
    }
    e.mean = mean_of(v);
    const double var = sample_variance(v);
    e.se = std::isnan(var) ? kNaN : std::sqrt(var / static_cast<double>(v.size()));
    return e;
}

Estimate mean_accuracy(const ScoreRows& scores) {
    const std::vector<double> means = item_means(scores);
    return mean_with_se(means);
}

double clustered_se(std::span<const double> values, std::span<const std::string> clusters,
                    bool finite_correction) {
    assert(values.size() == clusters.size());
    std::vector<double> v;
    std::vector<std::string_view> ids;
    for (size_t i = 0; i < values.size(); ++i) {
        if (std::isnan(values[i])) continue;
        v.push_back(values[i]);
        ids.push_back(clusters[i]);
    }
    const size_t n = v.size();
    if (n < 2) return kNaN;
    const double m = mean_of(v);
    // Per cluster: sum of residuals and sum of squared residuals. The cross terms of a cluster,
    // sum_{i != j} r_i r_j, are (sum r)^2 - sum r^2.
    std::map<std::string_view, std::pair<double, double>> sums;
    for (size_t i = 0; i < n; ++i) {
        auto& s = sums[ids[i]];
        const double r = v[i] - m;
        s.first += r;
        s.second += r * r;
    }
    const double nn = static_cast<double>(n);
    if (finite_correction) {
        const double nc = static_cast<double>(sums.size());
        if (sums.size() < 2) return kNaN;
        double total = 0.0;
        for (const auto& [id, s] : sums) total += s.first * s.first;
        return std::sqrt(nc / (nc - 1.0) * total) / nn;
    }
    double ss = 0.0, cross = 0.0;
    for (const auto& [id, s] : sums) {
        ss += s.second;
        cross += s.first * s.first - s.second;
    }
    const double var = ss / (nn * (nn - 1.0)) + cross / (nn * nn);
    return std::sqrt(std::max(0.0, var));
}

Estimate mean_accuracy_clustered(const ScoreRows& scores, std::span<const std::string> clusters,
                                 bool finite_correction) {
    const std::vector<double> means = item_means(scores);
    Estimate e = mean_with_se(means);
    e.se = clustered_se(means, clusters, finite_correction);
    return e;
}

// ---- pass@k, pass^k, maj@k --------------------------------------------------------------------

double pass_at_k_item(int n, int c, int k) {
    assert(0 <= c && c <= n && 1 <= k && k <= n);
    if (n - c < k) return 1.0;
    double prod = 1.0;
    for (int i = n - c + 1; i <= n; ++i) prod *= 1.0 - static_cast<double>(k) / i;
    return 1.0 - prod;
}

double pass_hat_k_item(int n, int c, int k) {
    assert(0 <= c && c <= n && 1 <= k && k <= n);
    if (c < k) return 0.0;
    double prod = 1.0;
    for (int i = 0; i < k; ++i) prod *= static_cast<double>(c - i) / (n - i);
    return prod;
}

Estimate pass_at_k(const ScoreRows& scores, int k, double correct_at, int min_samples) {
    return per_item_k_metric(scores, k, min_samples, correct_at, pass_at_k_item);
}

int full_sample_count(const ScoreRows& scores) {
    int kmax = 0;
    for (const auto& row : scores) kmax = std::max(kmax, count_item(row, 1.0).n);
    return kmax;
}

std::vector<Estimate> pass_at_k_curve(const ScoreRows& scores, double correct_at) {
    const int kmax = full_sample_count(scores);
    std::vector<Estimate> curve;
    for (int k = 1; k <= kmax; ++k) curve.push_back(pass_at_k(scores, k, correct_at, kmax));
    return curve;
}

Estimate pass_hat_k(const ScoreRows& scores, int k, double correct_at, int min_samples) {
    return per_item_k_metric(scores, k, min_samples, correct_at, pass_hat_k_item);
}

Estimate maj_at_k(const std::vector<std::vector<std::string>>& answers, const ScoreRows& scores,
                  int k) {
    assert(answers.size() == scores.size());
    std::vector<double> values;
    int excluded = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
        const auto& row = scores[i];
        assert(answers[i].size() >= row.size());
        // The first k present samples, in sample-index order.
        std::vector<size_t> picked;
        for (size_t j = 0; j < row.size() && static_cast<int>(picked.size()) < k; ++j)
            if (!std::isnan(row[j])) picked.push_back(j);
        if (k < 1 || static_cast<int>(picked.size()) < k) {
            ++excluded;
            continue;
        }
        // Votes per answer, remembering where each answer first appeared.
        std::unordered_map<std::string_view, std::pair<int, size_t>> votes;  // count, first pos
        for (size_t p = 0; p < picked.size(); ++p) {
            const std::string& ans = answers[i][picked[p]];
            if (ans.empty()) continue;
            auto [it, inserted] = votes.try_emplace(ans, 0, p);
            ++it->second.first;
        }
        double value = 0.0;
        int best_count = 0;
        size_t best_pos = 0;
        for (const auto& [ans, cv] : votes) {
            if (cv.first > best_count || (cv.first == best_count && cv.second < best_pos)) {
                best_count = cv.first;
                best_pos = cv.second;
            }
        }
        if (best_count > 0) value = row[picked[best_pos]];
        values.push_back(value);
    }
    Estimate e = mean_with_se(values);
    e.n_excluded = excluded;
    return e;
}

// ---- intervals for a proportion ---------------------------------------------------------------

double z_for_level(double level) {
    return normal_quantile(0.5 + level / 2.0);
}

Interval normal_interval(double mean, double se, double level) {
    const double z = z_for_level(level);
    return {mean - z * se, mean + z * se};
}

Interval wilson_interval(double successes, double n, double level) {
    const double z = z_for_level(level);
    const double p = successes / n;
    const double z2 = z * z;
    const double denom = 1.0 + z2 / n;
    const double center = (p + z2 / (2.0 * n)) / denom;
    const double half = z * std::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom;
    return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

Interval beta_posterior_interval(double successes, double n, double level, double prior_a,
                                 double prior_b) {
    const double a = successes + prior_a, b = n - successes + prior_b;
    const double tail = (1.0 - level) / 2.0;
    return {beta_quantile(a, b, tail), beta_quantile(a, b, 1.0 - tail)};
}

Interval jeffreys_interval(double successes, double n, double level) {
    Interval iv = beta_posterior_interval(successes, n, level, 0.5, 0.5);
    if (successes <= 0.0) iv.lo = 0.0;
    if (successes >= n) iv.hi = 1.0;
    return iv;
}

Interval clopper_pearson_interval(double successes, double n, double level) {
    const double tail = (1.0 - level) / 2.0;
    Interval iv;
    iv.lo = successes <= 0.0 ? 0.0 : beta_quantile(successes, n - successes + 1.0, tail);
    iv.hi = successes >= n ? 1.0 : beta_quantile(successes + 1.0, n - successes, 1.0 - tail);
    return iv;
}

// ---- bootstrap --------------------------------------------------------------------------------

namespace {

// The SE (standard deviation of the replicates) and percentile interval of `reps`.
BootstrapResult from_replicates(double estimate, std::vector<double> reps, double level) {
    BootstrapResult r;
    r.estimate = estimate;
    const double m = mean_of(reps);
    double ss = 0.0;
    for (double x : reps) ss += (x - m) * (x - m);
    r.se = reps.size() > 1 ? std::sqrt(ss / static_cast<double>(reps.size() - 1)) : 0.0;
    std::sort(reps.begin(), reps.end());
    const double tail = (1.0 - level) / 2.0;
    r.interval = {sorted_quantile(reps, tail), sorted_quantile(reps, 1.0 - tail)};
    return r;
}

}  // namespace

BootstrapResult bootstrap(size_t n_items,
                          const std::function<double(std::span<const size_t>)>& statistic,
                          int resamples, uint64_t seed, double level) {
    assert(n_items > 0 && resamples > 0);
    std::vector<size_t> idx(n_items);
    for (size_t i = 0; i < n_items; ++i) idx[i] = i;
    const double estimate = statistic(idx);
    Rng rng(seed);
    std::vector<double> reps(static_cast<size_t>(resamples));
    for (auto& rep : reps) {
        for (auto& j : idx) j = static_cast<size_t>(rng.below(n_items));
        rep = statistic(idx);
    }
    return from_replicates(estimate, std::move(reps), level);
}

BootstrapResult bootstrap_mean(std::span<const double> values, int resamples, uint64_t seed,
                               double level) {
    const std::vector<double> v = present(values);
    assert(!v.empty());
    return bootstrap(
        v.size(),
        [&v](std::span<const size_t> idx) {
            double s = 0.0;
            for (size_t i : idx) s += v[i];
            return s / static_cast<double>(idx.size());
        },
        resamples, seed, level);
}

// ---- paired comparison ------------------------------------------------------------------------

namespace {

// z, p-values and interval of a paired comparison from its se and the t test's df.
void paired_test(PairedComparison* pc, double df, double level) {
    pc->interval = normal_interval(pc->diff, pc->se, level);
    if (std::isnan(pc->se)) {  // one item (or cluster): no variance estimate
        pc->z = pc->p_value = pc->p_value_t = kNaN;
    } else if (pc->se == 0.0) {
        pc->z = pc->diff == 0.0 ? 0.0 : std::copysign(kInf, pc->diff);
        pc->p_value = pc->p_value_t = pc->diff == 0.0 ? 1.0 : 0.0;
    } else {
        pc->z = pc->diff / pc->se;
        pc->p_value = 2.0 * normal_cdf(-std::fabs(pc->z));
        pc->p_value_t = df > 0.0 ? 2.0 * student_t_cdf(-std::fabs(pc->z), df) : kNaN;
    }
}

}  // namespace

PairedComparison compare_paired(std::span<const double> a, std::span<const double> b,
                                double level) {
    assert(a.size() == b.size());
    std::vector<double> va, vb, d;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) || std::isnan(b[i])) continue;
        va.push_back(a[i]);
        vb.push_back(b[i]);
        d.push_back(a[i] - b[i]);
    }
    PairedComparison pc;
    pc.n_items = static_cast<int>(d.size());
    if (d.empty()) {
        pc.mean_a = pc.mean_b = pc.diff = pc.se = pc.se_items = pc.unpaired_se = kNaN;
        pc.correlation = pc.z = pc.p_value = pc.p_value_t = kNaN;
        pc.interval = {kNaN, kNaN};
        return pc;
    }
    const double n = static_cast<double>(d.size());
    pc.mean_a = mean_of(va);
    pc.mean_b = mean_of(vb);
    pc.diff = mean_of(d);
    pc.se = pc.se_items = std::sqrt(sample_variance(d) / n);
    pc.unpaired_se = std::sqrt(sample_variance(va) / n + sample_variance(vb) / n);
    double sab = 0.0, saa = 0.0, sbb = 0.0;
    for (size_t i = 0; i < d.size(); ++i) {
        sab += (va[i] - pc.mean_a) * (vb[i] - pc.mean_b);
        saa += (va[i] - pc.mean_a) * (va[i] - pc.mean_a);
        sbb += (vb[i] - pc.mean_b) * (vb[i] - pc.mean_b);
    }
    pc.correlation = (saa > 0.0 && sbb > 0.0) ? sab / std::sqrt(saa * sbb) : kNaN;
    paired_test(&pc, n - 1.0, level);
    return pc;
}

PairedComparison compare_paired_clustered(std::span<const double> a, std::span<const double> b,
                                          std::span<const std::string> clusters, double level) {
    assert(a.size() == b.size() && a.size() == clusters.size());
    PairedComparison pc = compare_paired(a, b, level);
    if (pc.n_items == 0) return pc;
    std::vector<double> d(a.size());
    std::map<std::string_view, int> seen;
    for (size_t i = 0; i < a.size(); ++i) {
        d[i] = a[i] - b[i];  // NaN when either is missing; clustered_se skips it
        if (!std::isnan(d[i])) seen[clusters[i]]++;
    }
    pc.n_clusters = static_cast<int>(seen.size());
    pc.se = clustered_se(d, clusters, false);
    paired_test(&pc, pc.n_clusters - 1.0, level);
    return pc;
}

double sign_flip_p_value(std::span<const double> diffs, int resamples, uint64_t seed,
                         int exact_max_items) {
    const std::vector<double> d = present(diffs);
    if (d.empty()) return kNaN;
    double observed = 0.0, scale = 0.0;
    for (double x : d) {
        observed += x;
        scale += std::fabs(x);
    }
    observed = std::fabs(observed);
    // Sums that differ only by rounding must count as ties.
    const double tol = 1e-12 * std::max(1.0, scale);
    const size_t n = d.size();
    if (static_cast<int>(n) <= exact_max_items && n < 63) {
        const uint64_t total = uint64_t{1} << n;
        uint64_t hits = 0;
        for (uint64_t mask = 0; mask < total; ++mask) {
            double s = 0.0;
            for (size_t i = 0; i < n; ++i) s += ((mask >> i) & 1) ? -d[i] : d[i];
            if (std::fabs(s) >= observed - tol) ++hits;
        }
        return static_cast<double>(hits) / static_cast<double>(total);
    }
    Rng rng(seed);
    int64_t hits = 0;
    for (int r = 0; r < resamples; ++r) {
        double s = 0.0;
        for (size_t i = 0; i < n; ++i) s += (rng.next_u64() >> 63) ? -d[i] : d[i];
        if (std::fabs(s) >= observed - tol) ++hits;
    }
    return static_cast<double>(1 + hits) / static_cast<double>(1 + resamples);
}

// ---- power analysis ---------------------------------------------------------------------------

namespace {

double power_z(const PowerInputs& in) {
    return normal_quantile(1.0 - in.alpha / 2.0) + normal_quantile(in.power);
}

double total_variance(const PowerInputs& in) {
    return in.omega2 + in.sigma2_a / in.k_a + in.sigma2_b / in.k_b;
}

// Within-item variance averaged over items with two or more samples, and the mean number of
// present samples per item.
void within_item(const ScoreRows& rows, double* sigma2, int* k) {
    double sum_var = 0.0, sum_n = 0.0;
    int n_var = 0, n_items = 0;
    for (const auto& row : rows) {
        const std::vector<double> v = present(row);
        if (v.empty()) continue;
        ++n_items;
        sum_n += static_cast<double>(v.size());
        if (v.size() >= 2) {
            sum_var += sample_variance(v);
            ++n_var;
        }
    }
    *sigma2 = n_var > 0 ? sum_var / n_var : 0.0;
    *k = n_items > 0 ? std::max(1, static_cast<int>(std::lround(sum_n / n_items))) : 1;
}

}  // namespace

double minimum_detectable_effect(const PowerInputs& in, double n_items) {
    return power_z(in) * std::sqrt(total_variance(in) / n_items);
}

double items_needed(const PowerInputs& in, double delta) {
    const double z = power_z(in);
    return z * z * total_variance(in) / (delta * delta);
}

double samples_needed(const PowerInputs& in, double n_items, double delta) {
    const double z = power_z(in);
    const double room = n_items * delta * delta - z * z * in.omega2;
    if (room <= 0.0) return kInf;
    return z * z * (in.sigma2_a + in.sigma2_b) / room;
}

PowerInputs estimate_power_inputs(const ScoreRows& a, const ScoreRows& b) {
    assert(a.size() == b.size());
    PowerInputs in;
    within_item(a, &in.sigma2_a, &in.k_a);
    within_item(b, &in.sigma2_b, &in.k_b);
    const std::vector<double> ma = item_means(a), mb = item_means(b);
    std::vector<double> d;
    for (size_t i = 0; i < ma.size(); ++i)
        if (!std::isnan(ma[i]) && !std::isnan(mb[i])) d.push_back(ma[i] - mb[i]);
    const double var_d = sample_variance(d);
    in.omega2 = std::isnan(var_d)
                    ? 0.0
                    : std::max(0.0, var_d - in.sigma2_a / in.k_a - in.sigma2_b / in.k_b);
    return in;
}

namespace {

// The estimate of seeds_and_items_bootstrap on runs `r` and items `it` (indices, repeats kept).
double mean_of_run_means(const ScoreRows& runs, std::span<const size_t> r,
                         std::span<const size_t> it) {
    double total = 0.0;
    int used = 0;
    for (size_t s : r) {
        double sum = 0.0;
        int n = 0;
        for (size_t i : it) {
            const double v = runs[s][i];
            if (std::isnan(v)) continue;
            sum += v;
            n++;
        }
        if (n == 0) continue;
        total += sum / n;
        used++;
    }
    return used ? total / used : kNaN;
}

// from_replicates over the replicates that are numbers (one drawing only runs without a present
// item is NaN); NaN throughout when none is.
BootstrapResult percentile_result(double estimate, const std::vector<double>& reps, double level) {
    std::vector<double> kept;
    for (double x : reps)
        if (!std::isnan(x)) kept.push_back(x);
    if (kept.empty()) {
        BootstrapResult r;
        r.estimate = estimate;
        r.se = kNaN;
        r.interval = {kNaN, kNaN};
        return r;
    }
    return from_replicates(estimate, std::move(kept), level);
}

std::vector<size_t> iota_indices(size_t n) {
    std::vector<size_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i;
    return v;
}

}  // namespace

BootstrapResult seeds_and_items_bootstrap(const ScoreRows& runs, int resamples, uint64_t seed,
                                          double level) {
    assert(!runs.empty() && !runs[0].empty() && resamples > 0);
    const size_t S = runs.size(), n = runs[0].size();
    std::vector<size_t> r = iota_indices(S), it = iota_indices(n);
    const double estimate = mean_of_run_means(runs, r, it);
    Rng rng(seed);
    std::vector<double> reps(static_cast<size_t>(resamples));
    for (double& rep : reps) {
        for (size_t& j : r) j = static_cast<size_t>(rng.below(S));
        for (size_t& j : it) j = static_cast<size_t>(rng.below(n));
        rep = mean_of_run_means(runs, r, it);
    }
    return percentile_result(estimate, reps, level);
}

BootstrapResult seeds_and_items_bootstrap_diff(const ScoreRows& a, const ScoreRows& b,
                                               int resamples, uint64_t seed, double level) {
    assert(!a.empty() && !b.empty() && !a[0].empty() && a[0].size() == b[0].size());
    const size_t n = a[0].size();
    std::vector<size_t> ra = iota_indices(a.size()), rb = iota_indices(b.size()),
                        it = iota_indices(n);
    const double estimate = mean_of_run_means(b, rb, it) - mean_of_run_means(a, ra, it);
    Rng rng(seed);
    std::vector<double> reps(static_cast<size_t>(resamples));
    for (double& rep : reps) {
        for (size_t& j : it) j = static_cast<size_t>(rng.below(n));
        for (size_t& j : ra) j = static_cast<size_t>(rng.below(a.size()));
        for (size_t& j : rb) j = static_cast<size_t>(rng.below(b.size()));
        rep = mean_of_run_means(b, rb, it) - mean_of_run_means(a, ra, it);
    }
    return percentile_result(estimate, reps, level);
}

double minimum_detectable_difference(double se) {
    return (z_for_level(0.95) + normal_quantile(0.8)) * se;
}

}  // namespace crucible::eval
