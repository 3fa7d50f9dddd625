// Rubric scores as an eval metric: summaries with intervals, per-tag breakdowns and judge
// agreement (percent agreement and Cohen's kappa), each against numbers worked by hand.
#include "eval/rubric_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "reward/rubric_aggregate.h"
#include "reward/rubric_format.h"

namespace crucible::reward {
namespace {

using nlohmann::json;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

RubricItem item_with(const char* rubric, std::vector<std::string> tags) {
    RubricItem it;
    it.id = "i";
    it.messages = {{"user", "q"}};
    it.tags = std::move(tags);
    it.rubric = parse_rubric(json::parse(rubric), SourceRef{});
    return it;
}

RubricResult result_with(const RubricItem& item, std::vector<double> met) {
    RubricResult r;
    for (size_t c = 0; c < met.size(); ++c)
        r.criteria.push_back({item.rubric.criteria[c].id, met[c], 1, "", ""});
    const Aggregate a = aggregate(item.rubric, met, Aggregation::healthbench);
    r.score = a.score;
    r.raw = a.raw;
    if (std::isnan(a.score)) {
        r.failed = true;
        r.failure = "unknown";
    }
    return r;
}

const char* kRubric = R"([
    {"criterion": "a", "points": 6, "tags": ["axis:accuracy"]},
    {"criterion": "b", "points": 2, "tags": ["axis:completeness"]},
    {"criterion": "p", "points": -4, "tags": ["axis:accuracy"]}])";

TEST(RubricMetrics, SummaryAndTags) {
    const std::vector<RubricItem> items{
        item_with(kRubric, {"theme:a"}), item_with(kRubric, {"theme:a"}),
        item_with(kRubric, {"theme:b"}), item_with(kRubric, {"theme:b"})};
    // Item scores: (6 + 2)/8 = 1; (2 - 4)/8 = -0.25 -> 0; (6)/8 = 0.75; unknown (failed).
    const std::vector<RubricResult> results{
        result_with(items[0], {1, 1, 0}), result_with(items[1], {0, 1, 1}),
        result_with(items[2], {1, 0, 0}), result_with(items[3], {1, kNaN, 0})};
    const RubricReport r = summarize_rubric_scores(items, results, 0.95, 200, 1);
    EXPECT_EQ(r.n_items, 4);
    EXPECT_EQ(r.n_failed, 1);
    // Mean of 1, 0, 0.75 = 0.58333; SE = sqrt(sum (v - m)^2 / (n (n - 1)))
    //   = sqrt((0.41667^2 + 0.58333^2 + 0.16667^2) / 6) = sqrt(0.54167 / 6) = 0.300463.
    EXPECT_NEAR(r.overall.estimate.mean, 1.75 / 3, 1e-12);
    EXPECT_NEAR(r.overall.estimate.se, std::sqrt((0.54166666666666667) / 6), 1e-9);
    EXPECT_EQ(r.overall.estimate.n_items, 3);
    EXPECT_NEAR(r.overall.normal.lo, 1.75 / 3 - 1.959964 * 0.300463, 1e-5);
    EXPECT_LE(r.overall.bootstrap.interval.lo, r.overall.estimate.mean);
    EXPECT_GE(r.overall.bootstrap.interval.hi, r.overall.estimate.mean);
    // HealthBench's overall: mean of raw (1, -0.25, 0.75) = 0.5, clipped.
    EXPECT_NEAR(r.healthbench_overall, 0.5, 1e-12);
    // Criterion tag axis:accuracy (a: 6, p: -4): item 0: 6/6 = 1; item 1: -4/6 -> 0;
    // item 2: 1. Mean 2/3.  axis:completeness (b: 2): 1, 1, 0 -> 2/3.
    ASSERT_TRUE(r.by_tag.count("axis:accuracy"));
    EXPECT_NEAR(r.by_tag.at("axis:accuracy").estimate.mean, 2.0 / 3, 1e-12);
    EXPECT_NEAR(r.by_tag.at("axis:completeness").estimate.mean, 2.0 / 3, 1e-12);
    // Example tags inherit the item score: theme:a = (1 + 0)/2, theme:b = 0.75 (one item).
    EXPECT_NEAR(r.by_tag.at("theme:a").estimate.mean, 0.5, 1e-12);
    EXPECT_NEAR(r.by_tag.at("theme:b").estimate.mean, 0.75, 1e-12);
    EXPECT_EQ(r.by_tag.at("theme:b").estimate.n_items, 1);
    const json j = r.to_json();
    EXPECT_EQ(j["n_failed"], 1);
    EXPECT_TRUE(j["by_tag"].contains("theme:a"));
}

TEST(RubricMetrics, CohenKappaByHand) {
    // a: 1 1 1 0 0 0 1 0 1 1;  b: 1 1 0 0 0 1 1 0 1 0.
    // both met 4 (0,1,6,8), both unmet 3 (3,4,7), only a 2 (2,9), only b 1 (5).
    // p_o = 7/10; p_a = 6/10, p_b = 5/10; p_e = 0.6*0.5 + 0.4*0.5 = 0.5;
    // kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    const std::vector<bool> a{1, 1, 1, 0, 0, 0, 1, 0, 1, 1};
    const std::vector<bool> b{1, 1, 0, 0, 0, 1, 1, 0, 1, 0};
    const Agreement g = binary_agreement(a, b);
    EXPECT_EQ(g.n, 10);
    EXPECT_EQ(g.both_met, 4);
    EXPECT_EQ(g.both_unmet, 3);
    EXPECT_EQ(g.only_a, 2);
    EXPECT_EQ(g.only_b, 1);
    EXPECT_DOUBLE_EQ(g.percent_agreement, 0.7);
    EXPECT_NEAR(g.cohen_kappa, 0.4, 1e-12);
    // Perfect agreement with both labels present: kappa 1. All one label: p_e = 1, kappa NaN.
    EXPECT_DOUBLE_EQ(binary_agreement({1, 0, 1}, {1, 0, 1}).cohen_kappa, 1.0);
    EXPECT_TRUE(std::isnan(binary_agreement({1, 1}, {1, 1}).cohen_kappa));
    // Systematic disagreement: a = 1 1 0 0, b = 0 0 1 1: p_o = 0, p_e = 0.5, kappa = -1.
    EXPECT_DOUBLE_EQ(binary_agreement({1, 1, 0, 0}, {0, 0, 1, 1}).cohen_kappa, -1.0);
}

TEST(RubricMetrics, JudgeAgreementSkipsProgrammaticAndUnknown) {
    const char* rubric = R"([
        {"criterion": "a", "points": 1}, {"criterion": "b", "points": 1},
        {"kind": "contains", "value": "x", "points": 1}])";
    const std::vector<RubricItem> items{item_with(rubric, {}), item_with(rubric, {})};
    // Judge A: item 0 a 1, b 0.75 (met); item 1 a 0, b unknown.
    // Judge B: item 0 a 1, b 0.25 (not met); item 1 a 0, b 1.
    // Compared: (1,1), (1,0), (0,0): p_o = 2/3; p_a = 2/3, p_b = 1/3;
    // p_e = 2/9 + 2/9 = 4/9; kappa = (6/9 - 4/9) / (5/9) = 0.4.
    std::vector<RubricResult> a{result_with(items[0], {1, 0.75, 1}),
                                result_with(items[1], {0, kNaN, 0})};
    std::vector<RubricResult> b{result_with(items[0], {1, 0.25, 0}),
                                result_with(items[1], {0, 1, 1})};
    const Agreement g = judge_agreement(items, a, b);
    EXPECT_EQ(g.n, 3);
    EXPECT_NEAR(g.percent_agreement, 2.0 / 3, 1e-12);
    EXPECT_NEAR(g.cohen_kappa, 0.4, 1e-12);
}

}  // namespace
}  // namespace crucible::reward
