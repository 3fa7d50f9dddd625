#include "eval/rubric_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/json_fields.h"
#include "reward/rubric_aggregate.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

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
    return {{"mean", number_or_null(estimate.mean)},
            {"se", number_or_null(estimate.se)},
            {"n", estimate.n_items},
            {"ci_normal", {number_or_null(normal.lo), number_or_null(normal.hi)}},
            {"ci_bootstrap",
             {number_or_null(bootstrap.interval.lo), number_or_null(bootstrap.interval.hi)}}};
}

json RubricReport::to_json() const {
    json tags = json::object();
    for (const auto& [tag, s] : by_tag) tags[tag] = s.to_json();
    return {{"overall", overall.to_json()},
            {"healthbench_overall", number_or_null(healthbench_overall)},
            {"n_items", n_items},
            {"n_failed", n_failed},
            {"n_samples", n_samples},
            {"n_failed_samples", n_failed_samples},
            {"by_tag", std::move(tags)}};
}

RubricReport summarize_rubric_scores(std::span<const RubricItem> items,
                                     std::span<const RubricResult> results, double level,
                                     int bootstrap_resamples, uint64_t seed) {
    if (items.size() != results.size())
        throw Error("summarize_rubric_scores: " + std::to_string(results.size()) + " results for " +
                    std::to_string(items.size()) + " items");
    std::vector<std::vector<RubricResult>> per_item;
    per_item.reserve(results.size());
    for (const RubricResult& r : results) per_item.push_back({r});
    return summarize_rubric_samples(items, per_item, level, bootstrap_resamples, seed);
}

RubricReport summarize_rubric_samples(std::span<const RubricItem> items,
                                      std::span<const std::vector<RubricResult>> results,
                                      double level, int bootstrap_resamples, uint64_t seed) {
    if (items.size() != results.size())
        throw Error("summarize_rubric_samples: " + std::to_string(results.size()) +
                    " result rows for " + std::to_string(items.size()) + " items");
    RubricReport report;
    report.n_items = static_cast<int>(items.size());
    std::vector<double> scores;
    double raw_sum = 0;
    int raw_n = 0;
    std::map<std::string, std::vector<double>> tag_values;
    for (size_t i = 0; i < items.size(); ++i) {
        const Rubric& rubric = items[i].rubric;
        std::vector<std::string> tags;  // the item's criterion tags, in first-seen order
        for (const Criterion& c : rubric.criteria)
            for (const std::string& t : c.tags)
                if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
        double score_sum = 0, raw_item = 0;
        int known = 0;
        std::vector<double> tag_sum(tags.size(), 0.0);
        std::vector<int> tag_n(tags.size(), 0);
        for (const RubricResult& r : results[i]) {
            if (r.failed || std::isnan(r.score)) {
                ++report.n_failed_samples;
                continue;
            }
            ++report.n_samples;
            ++known;
            score_sum += r.score;
            raw_item += r.raw;
            if (r.aggregation == Aggregation::implicit) continue;  // no per-criterion verdicts
            if (r.criteria.size() != rubric.criteria.size())
                throw Error("summarize_rubric_samples: item '" + items[i].id +
                            "': a result does not match its rubric");
            std::vector<double> met(r.criteria.size());
            for (size_t c = 0; c < r.criteria.size(); ++c) met[c] = r.criteria[c].met;
            for (size_t t = 0; t < tags.size(); ++t) {
                const double s = aggregate_tag(rubric, met, r.aggregation, tags[t]);
                if (std::isnan(s)) continue;
                tag_sum[t] += s;
                ++tag_n[t];
            }
        }
        if (known == 0) {
            ++report.n_failed;
            continue;
        }
        const double mean = score_sum / known;
        scores.push_back(mean);
        raw_sum += raw_item / known;
        ++raw_n;
        for (const std::string& tag : items[i].tags) tag_values[tag].push_back(mean);
        for (size_t t = 0; t < tags.size(); ++t)
            if (tag_n[t] > 0) tag_values[tags[t]].push_back(tag_sum[t] / tag_n[t]);
    }
    report.overall = summarize(scores, level, bootstrap_resamples, seed);
    report.healthbench_overall = raw_n > 0 ? std::clamp(raw_sum / raw_n, 0.0, 1.0) : kNaN;
    for (const auto& [tag, values] : tag_values)
        report.by_tag[tag] = summarize(values, level, bootstrap_resamples, seed);
    return report;
}

json Agreement::to_json() const {
    return {{"n", n},
            {"percent_agreement", number_or_null(percent_agreement)},
            {"cohen_kappa", number_or_null(cohen_kappa)},
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
