// The rubric aggregation rules: per-criterion verdicts into one score in [0, 1].
#pragma once

#include <span>
#include <string>

#include "reward/rubric.h"

namespace crucible::reward {

// met[i] in [0, 1] for criterion i (a vote share, or 0/1); NaN when unknown.
// healthbench:   raw = sum_i points_i met_i / sum_{points_i > 0} points_i   (may be < 0)
//                score = clip(raw, 0, 1)
// weighted_mean: a pitfall (w < 0) counts as "avoided the pitfall" with weight |w|:
//                score = sum_i |w_i| m_i / sum_i |w_i|,  m_i = met_i (w_i > 0), 1 - met_i (w_i < 0)
// Returns NaN when any met[i] is NaN. REQUIRES: met.size() == rubric.criteria.size(),
// aggregation != implicit (an implicit score comes from the judge).
struct Aggregate {
    double score = 0;
    double raw = 0;  // healthbench's unclipped ratio; equal to score for weighted_mean
};
Aggregate aggregate(const Rubric& rubric, std::span<const double> met, Aggregation aggregation);

// The same rule over the criteria carrying `tag` only; NaN when none of them has positive
// points (HealthBench's per-tag score for one example).
double aggregate_tag(const Rubric& rubric, std::span<const double> met, Aggregation aggregation,
                     const std::string& tag);

}  // namespace crucible::reward
