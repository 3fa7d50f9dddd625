#include "reward/rubric_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

json num(double x) {
    return std::isfinite(x) ? json(x) : json(nullptr);
}

ScoreSummary summarize(const std::vector<double>& values, double level, int resamples,
                       uint64_t seed) {
    ScoreSummary s;
    s.estimate = eval::mean_with_se(values);
    s.normal = eval::normal_interval(s.estimate.mean, s.estimate.se, level);
    std::vector<double> present;
    for (double v : values)
        if (!std::isnan(v)) present.push_back(v);
    if (!present.empty() && resamples > 0)
        s.bootstrap = eval::bootstrap_mean(present, resamples, seed, level);
    else
        s.bootstrap = {kNaN, kNaN, {kNaN, kNaN}};
    return s;
}

}  // namespace

json ScoreSummary::to_json() const {
    return {{"mean", num(estimate.mean)},
            {"se", num(estimate.se)},
            {"n", estimate.n_items},
            {"ci_normal", {num(normal.lo), num(normal.hi)}},
            {"ci_bootstrap", {num(bootstrap.interval.lo), num(bootstrap.interval.hi)}}};
}

json RubricReport::to_json() const {
    json tags = json::object();
    for (const auto& [tag, s] : by_tag) tags[tag] = s.to_json();
    return {{"overall", overall.to_json()},
            {"healthbench_overall", num(healthbench_overall)},
            {"n_items", n_items},
            {"n_failed", n_failed},
            {"by_tag", std::move(tags)}};
}

RubricReport summarize_rubric_scores(std::span<const RubricItem> items,
                                     std::span<const RubricResult> results, double level,
                                     int bootstrap_resamples, uint64_t seed) {
    if (items.size() != results.size())
        throw Error("summarize_rubric_scores: " + std::to_string(results.size()) + " results for " +
                    std::to_string(items.size()) + " items");
    RubricReport report;
    report.n_items = static_cast<int>(items.size());
    std::vector<double> scores;
    double raw_sum = 0;
    int raw_n = 0;
    std::map<std::string, std::vector<double>> tag_values;
    for (size_t i = 0; i < items.size(); ++i) {
        const RubricResult& r = results[i];
        if (r.failed || std::isnan(r.score)) {
            ++report.n_failed;
            continue;
        }
        scores.push_back(r.score);
        raw_sum += r.raw;
        ++raw_n;
        for (const std::string& tag : items[i].tags) tag_values[tag].push_back(r.score);
        if (r.aggregation == Aggregation::implicit) continue;  // no per-criterion verdicts
        std::vector<double> met(r.criteria.size());
        for (size_t c = 0; c < r.criteria.size(); ++c) met[c] = r.criteria[c].met;
        std::vector<std::string> tags;
        for (const Criterion& c : items[i].rubric.criteria)
            for (const std::string& t : c.tags)
                if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
        for (const std::string& t : tags) {
            const double s = aggregate_tag(items[i].rubric, met, r.aggregation, t);
            if (!std::isnan(s)) tag_values[t].push_back(s);
        }
    }
    report.overall = summarize(scores, level, bootstrap_resamples, seed);
    report.healthbench_overall = raw_n > 0 ? std::clamp(raw_sum / raw_n, 0.0, 1.0) : kNaN;
    for (const auto& [tag, values] : tag_values)
        report.by_tag[tag] = summarize(values, level, bootstrap_resamples, seed);
    return report;
}

json Agreement::to_json() const {
    return {{"n", n},
            {"percent_agreement", num(percent_agreement)},
            {"cohen_kappa", num(cohen_kappa)},
            {"both_met", both_met},
            {"both_unmet", both_unmet},
            {"only_a", only_a},
            {"only_b", only_b}};
}

Agreement binary_agreement(const std::vector<bool>& a, const std::vector<bool>& b) {
    if (a.size() != b.size()) throw Error("binary_agreement: the two labelings differ in length");
    Agreement g;
    g.n = static_cast<int>(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i] && b[i])
            ++g.both_met;
        else if (!a[i] && !b[i])
            ++g.both_unmet;
        else if (a[i])
            ++g.only_a;
        else
            ++g.only_b;
    }
    if (g.n == 0) {
        g.percent_agreement = g.cohen_kappa = kNaN;
        return g;
    }
    const double n = g.n;
    const double po = (g.both_met + g.both_unmet) / n;
    const double pa = (g.both_met + g.only_a) / n;  // A says met
    const double pb = (g.both_met + g.only_b) / n;
    const double pe = pa * pb + (1 - pa) * (1 - pb);
    g.percent_agreement = po;
    g.cohen_kappa = pe >= 1 ? kNaN : (po - pe) / (1 - pe);
    return g;
}

Agreement judge_agreement(std::span<const RubricItem> items, std::span<const RubricResult> a,
                          std::span<const RubricResult> b) {
    if (a.size() != items.size() || b.size() != items.size())
        throw Error("judge_agreement: results do not match the items");
    std::vector<bool> la, lb;
    for (size_t i = 0; i < items.size(); ++i) {
        const auto& crit = items[i].rubric.criteria;
        if (a[i].criteria.size() != crit.size() || b[i].criteria.size() != crit.size())
            throw Error("judge_agreement: item '" + items[i].id +
                        "': results do not match its rubric");
        for (size_t c = 0; c < crit.size(); ++c) {
            if (crit[c].is_programmatic()) continue;
            const double ma = a[i].criteria[c].met, mb = b[i].criteria[c].met;
            if (std::isnan(ma) || std::isnan(mb)) continue;
            la.push_back(ma >= 0.5);
            lb.push_back(mb >= 0.5);
        }
    }
    return binary_agreement(la, lb);
}

}  // namespace crucible::reward
