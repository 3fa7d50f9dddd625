// Rubric scores as an eval metric: the mean score over items with its standard error and
// intervals (eval/statistics), HealthBench's per-tag breakdown (criterion tags and example
// tags), and the agreement of two judges on the same criteria (percent agreement, Cohen's kappa).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "eval/statistics.h"
#include "reward/rubric.h"
#include "reward/rubric_scorer.h"

namespace crucible::reward {

struct ScoreSummary {
    eval::Estimate estimate;          // mean of per-item scores, CLT SE over items
    eval::Interval normal;            // mean +- z se
    eval::BootstrapResult bootstrap;  // percentile bootstrap over items (seeded)
    nlohmann::json to_json() const;
};

struct RubricReport {
    ScoreSummary overall;
    // HealthBench's overall figure: the mean of the unclipped per-item ratios, then clipped.
    double healthbench_overall = 0;
    int n_items = 0;
    int n_failed = 0;          // items without any known score (excluded from every statistic)
    int n_samples = 0;         // results with a known score
    int n_failed_samples = 0;  // results whose score is unknown
    // Per tag: for a criterion tag, each item's score over its criteria with that tag (items
    // without such a criterion are left out); for an example tag, the item's overall score.
    std::map<std::string, ScoreSummary> by_tag;
    nlohmann::json to_json() const;
};

// REQUIRES: results.size() == items.size() (results from RubricScorer on these items).
RubricReport summarize_rubric_scores(std::span<const RubricItem> items,
                                     std::span<const RubricResult> results, double level = 0.95,
                                     int bootstrap_resamples = 1000, uint64_t seed = 0);

// The same with K samples per item (an eval run): results[i] holds item i's sample results.
// Each item contributes the mean over its known samples (of the score, of HealthBench's raw
// ratio, of each tag's score), so the SE is over items, i.e. clustered by item (Miller 2024);
// with one result per item this is summarize_rubric_scores.
// REQUIRES: results.size() == items.size().
RubricReport summarize_rubric_samples(std::span<const RubricItem> items,
                                      std::span<const std::vector<RubricResult>> results,
                                      double level = 0.95, int bootstrap_resamples = 1000,
                                      uint64_t seed = 0);

struct Agreement {
    int n = 0;                     // paired verdicts compared
    double percent_agreement = 0;  // share of pairs with the same verdict
    double cohen_kappa = 0;        // (p_o - p_e) / (1 - p_e); NaN when p_e = 1
    int both_met = 0, both_unmet = 0, only_a = 0, only_b = 0;
    nlohmann::json to_json() const;
};

// Agreement of two binary labelings of the same things. REQUIRES: a.size() == b.size().
Agreement binary_agreement(const std::vector<bool>& a, const std::vector<bool>& b);

// Agreement of two judges' verdicts on the same items' judge criteria: a criterion counts as
// met when at least half its votes found it met; pairs where either side is unknown are
// skipped. REQUIRES: both from the same items, in the same order.
Agreement judge_agreement(std::span<const RubricItem> items, std::span<const RubricResult> a,
                          std::span<const RubricResult> b);

}  // namespace crucible::reward
