// The rubric aggregation rules: per-criterion verdicts into one score.
#include "reward/rubric_aggregate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace crucible::reward {

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Aggregate aggregate_subset(const Rubric& rubric, std::span<const double> met,
                           Aggregation aggregation, const std::string* tag) {
    double num = 0, den = 0;
    bool any = false;
    for (size_t i = 0; i < rubric.criteria.size(); ++i) {
        const Criterion& c = rubric.criteria[i];
        if (tag && std::find(c.tags.begin(), c.tags.end(), *tag) == c.tags.end()) continue;
        any = true;
        if (std::isnan(met[i])) return {kNaN, kNaN};
        if (aggregation == Aggregation::healthbench) {
            num += c.points * met[i];
            if (c.points > 0) den += c.points;
        } else {
            const double w = std::fabs(c.points);
            num += w * (c.points > 0 ? met[i] : 1.0 - met[i]);
            den += w;
        }
    }
    if (!any || den <= 0) return {kNaN, kNaN};
    const double raw = num / den;
    return {std::clamp(raw, 0.0, 1.0), raw};
}

}  // namespace

Aggregate aggregate(const Rubric& rubric, std::span<const double> met, Aggregation aggregation) {
    if (met.size() != rubric.criteria.size())
        throw Error("aggregate: " + std::to_string(met.size()) + " verdicts for " +
                    std::to_string(rubric.criteria.size()) + " criteria");
    if (aggregation == Aggregation::implicit)
        throw Error("aggregate: an implicit rubric score comes from the judge");
    return aggregate_subset(rubric, met, aggregation, nullptr);
}

double aggregate_tag(const Rubric& rubric, std::span<const double> met, Aggregation aggregation,
                     const std::string& tag) {
    if (aggregation == Aggregation::implicit) aggregation = Aggregation::healthbench;
    return aggregate_subset(rubric, met, aggregation, &tag).score;
}

}  // namespace crucible::reward
