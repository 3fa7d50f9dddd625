// Rubric format, importers, programmatic criteria and aggregation, checked against examples
// worked by hand. No judge and no network here (rubric_judge_test.cpp covers those).
#include "reward/rubric_format.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reward/rubric.h"
#include "reward/rubric_aggregate.h"
#include "reward/rubric_criteria.h"
#include "reward/rubric_scorer.h"
#include "test_util.h"

namespace crucible::reward {
namespace {

using nlohmann::json;
using testutil::error_of;
using testutil::TempDir;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Criterion crit(const json& j) {
    return parse_criterion(j, 0, SourceRef{"t.jsonl", 1, "x"});
}

Rubric rubric_of(const json& j) {
    return parse_rubric(j, SourceRef{"t.jsonl", 1, "x"});
}

bool met(const json& j, const std::string& response) {
    return check_programmatic(crit(j), response);
}

// ---- format and importers ----------------------------------------------------------------------

TEST(RubricFormat, NativeCriterionFields) {
    const Criterion c = crit({{"id", "r1"},
                              {"criterion", "Mentions the dose"},
                              {"points", 5},
                              {"tags", {"axis:accuracy"}}});
    EXPECT_EQ(c.id, "r1");
    EXPECT_EQ(c.text, "Mentions the dose");
    EXPECT_EQ(c.points, 5);
    EXPECT_EQ(c.kind, CriterionKind::judge);
    EXPECT_EQ(c.tags, std::vector<std::string>{"axis:accuracy"});
    // weight is a synonym of points; the default id is c<index>.
    const Criterion w =
        parse_criterion(json{{"criterion", "x"}, {"weight", -2}}, 3, SourceRef{"f", 1, ""});
    EXPECT_EQ(w.id, "c3");
    EXPECT_EQ(w.points, -2);
    // A programmatic criterion gets a description when it has no text.
    const Criterion r = crit({{"kind", "regex"}, {"pattern", "\\d+"}, {"points", 1}});
    EXPECT_NE(r.text.find("\\d+"), std::string::npos);
}

TEST(RubricFormat, RoundTripsThroughJson) {
    const Rubric r = rubric_of(json::parse(R"([
        {"id": "a", "criterion": "judge me", "points": 3, "tags": ["t"]},
        {"id": "b", "kind": "regex", "pattern": "yes", "flags": "i", "points": 1},
        {"id": "c", "kind": "numeric", "target": 42, "tolerance": 0.5, "points": 2},
        {"id": "d", "kind": "length", "unit": "words", "min": 2, "max": 5, "points": 1},
        {"id": "e", "kind": "json", "required_keys": ["k"], "points": 1},
        {"id": "f", "kind": "verifier", "verifier": "math", "answer": "\\frac{1}{2}", "points": 1},
        {"id": "g", "kind": "not_contains", "value": "sorry", "points": -1}
    ])"));
    const Rubric back = rubric_of(to_json(r));
    ASSERT_EQ(back.criteria.size(), 7u);
    EXPECT_EQ(to_json(back), to_json(r));
    EXPECT_TRUE(check_programmatic(back.criteria[1], "YES"));
}

TEST(RubricFormat, HealthBenchLine) {
    TempDir dir;
    const auto path = dir.write(
        "hb.jsonl",
        R"({"prompt": [{"role": "user", "content": "I have a headache"}], "completion": "Drink water.", "rubrics": [{"criterion": "Advises seeing a doctor if severe", "points": 6, "tags": ["level:example", "axis:completeness"]}, {"criterion": "Recommends an unsafe dose", "points": -8, "tags": ["axis:accuracy"]}], "example_tags": ["theme:emergency_referrals"], "prompt_id": "hb-1"}
)");
    const auto items = load_rubric_items(path.string());
    ASSERT_EQ(items.size(), 1u);
    const RubricItem& it = items[0];
    EXPECT_EQ(it.id, "hb-1");
    ASSERT_EQ(it.messages.size(), 1u);
    EXPECT_EQ(it.messages[0].role, "user");
    EXPECT_EQ(it.response.value_or(""), "Drink water.");
    EXPECT_EQ(it.tags, std::vector<std::string>{"theme:emergency_referrals"});
    ASSERT_EQ(it.rubric.criteria.size(), 2u);
    EXPECT_EQ(it.rubric.criteria[1].points, -8);
    EXPECT_EQ(it.rubric.criteria[0].tags[1], "axis:completeness");
}

TEST(RubricFormat, RaRLine) {
    const RubricItem it = parse_rubric_item(
        json::parse(R"({"question": "What lowers LDL?", "reference_answer": "Statins.",
            "rubric": [{"description": "Names statins", "title": "Statins named", "weight": 5},
                       {"description": "Claims vitamin C lowers LDL", "title": "Myth", "weight": -2}],
            "rubric_list": ["x"], "rubric_count": 2})"),
        SourceRef{"rar.jsonl", 4, ""});
    ASSERT_EQ(it.messages.size(), 1u);
    EXPECT_EQ(it.messages[0].content, "What lowers LDL?");
    EXPECT_EQ(it.reference_answer, "Statins.");
    ASSERT_EQ(it.rubric.criteria.size(), 2u);
    EXPECT_EQ(it.rubric.criteria[0].text, "Names statins");
    EXPECT_EQ(it.rubric.criteria[0].points, 5);
    EXPECT_EQ(it.rubric.criteria[1].points, -2);
    EXPECT_EQ(it.id, "rar.jsonl:4");
}

TEST(RubricFormat, RLCFChecklist) {
    const Rubric r = parse_checklist_text(
        "Key Criteria Questions:\n"
        "1. Does the response directly address the request? (100)\n"
        "2. Is the poem exactly four lines? (75)\n"
        "- Does it rhyme?\n"
        "<END>\n"
        "5. ignored after END (10)\n",
        SourceRef{"c.jsonl", 2, "q"});
    // The heading (a line ending in ':') is skipped; an unweighted question weighs 100.
    ASSERT_EQ(r.criteria.size(), 3u);
    EXPECT_EQ(r.criteria[0].text, "Does the response directly address the request?");
    EXPECT_EQ(r.criteria[0].points, 100);
    EXPECT_EQ(r.criteria[1].points, 75);
    EXPECT_EQ(r.criteria[2].text, "Does it rhyme?");
    EXPECT_EQ(r.criteria[2].points, 100);
    // As a list of strings or {question, weight} objects in a "checklist" field.
    const RubricItem it = parse_rubric_item(json::parse(R"({"prompt": "Write a poem", "checklist": [
            {"question": "Is it a poem?", "weight": 100}, "Is it short?"]})"),
                                            SourceRef{"c.jsonl", 1, ""});
    ASSERT_EQ(it.rubric.criteria.size(), 2u);
    EXPECT_EQ(it.rubric.criteria[0].points, 100);
    EXPECT_EQ(it.rubric.criteria[1].points, 1);
}

TEST(RubricFormat, ErrorsNameFileLineItemCriterionAndField) {
    TempDir dir;
    const auto path =
        dir.write("bad.jsonl",
                  R"({"id": "ok", "prompt": "p", "rubric": [{"criterion": "a", "points": 1}]}

{"id": "q2", "prompt": "p", "rubric": [{"criterion": "a", "points": 1}, {"criterion": "b", "points": 1, "kind": "rubbish"}]}
)");
    const std::string e = error_of([&] { load_rubric_items(path.string()); });
    EXPECT_NE(e.find("bad.jsonl:3"), std::string::npos) << e;
    EXPECT_NE(e.find("item 'q2'"), std::string::npos) << e;
    EXPECT_NE(e.find("criterion 1"), std::string::npos) << e;
    EXPECT_NE(e.find("'kind'"), std::string::npos) << e;
    EXPECT_NE(e.find("rubbish"), std::string::npos) << e;
}

TEST(RubricFormat, RefusesBadRubrics) {
    const auto err = [](const char* text) {
        return error_of([&] { rubric_of(json::parse(text)); });
    };
    std::string e = err(R"([{"kind": "regex", "pattern": "(unclosed", "points": 1}])");
    EXPECT_NE(e.find("criterion 0 field 'pattern'"), std::string::npos) << e;
    EXPECT_NE(e.find("invalid regular expression"), std::string::npos) << e;
    e = err(R"([{"criterion": "bad", "points": -1}, {"criterion": "worse", "points": -3}])");
    EXPECT_NE(e.find("no criterion has positive points"), std::string::npos) << e;
    e = err(R"([])");
    EXPECT_NE(e.find("no criteria"), std::string::npos) << e;
    e = err(R"([{"criterion": "a", "points": 1, "weight": 2}])");
    EXPECT_NE(e.find("not both"), std::string::npos) << e;
    e = err(R"([{"criterion": "a"}])");
    EXPECT_NE(e.find("field 'points'"), std::string::npos) << e;
    e = err(R"([{"criterion": "a", "points": "5"}])");
    EXPECT_NE(e.find("expected a finite number"), std::string::npos) << e;
    e = err(R"([{"criterion": "a", "points": 1, "patern": "x"}])");
    EXPECT_NE(e.find("field 'patern': unknown field"), std::string::npos) << e;
    e = err(
        R"([{"id": "d", "criterion": "a", "points": 1}, {"id": "d", "criterion": "b", "points": 1}])");
    EXPECT_NE(e.find("duplicate id 'd'"), std::string::npos) << e;
    e = err(R"([{"kind": "numeric", "points": 1}])");
    EXPECT_NE(e.find("field 'target'"), std::string::npos) << e;
    e = err(R"([{"kind": "length", "points": 1, "min": 5, "max": 2}])");
    EXPECT_NE(e.find("greater than 'max'"), std::string::npos) << e;
    e = err(R"([{"kind": "verifier", "verifier": "astrology", "answer": "1", "points": 1}])");
    EXPECT_NE(e.find("unknown verifier 'astrology'"), std::string::npos) << e;
    e = err(R"([{"kind": "verifier", "verifier": "regex", "answer": "(", "points": 1}])");
    EXPECT_NE(e.find("criterion 0 field 'answer'"), std::string::npos) << e;
    e = err(R"([{"points": 1}])");
    EXPECT_NE(e.find("field 'criterion'"), std::string::npos) << e;

    TempDir dir;
    const auto path = dir.write("j.jsonl", "{not json}\n");
    e = error_of([&] { load_rubric_items(path.string()); });
    EXPECT_NE(e.find("j.jsonl:1: not valid JSON"), std::string::npos) << e;
    const auto dup = dir.write("d.jsonl",
                               R"({"id": "a", "prompt": "p", "rubric": ["x"]}
{"id": "a", "prompt": "p", "rubric": ["y"]}
)");
    e = error_of([&] { load_rubric_items(dup.string()); });
    EXPECT_NE(e.find("d.jsonl:2"), std::string::npos) << e;
    EXPECT_NE(e.find("duplicate item id"), std::string::npos) << e;
}

// ---- programmatic criteria ---------------------------------------------------------------------

TEST(RubricProgrammatic, RegexAndContains) {
    EXPECT_TRUE(
        met({{"kind", "regex"}, {"pattern", "\\b\\d{3}\\b"}, {"points", 1}}, "call 911 now"));
    EXPECT_FALSE(met({{"kind", "regex"}, {"pattern", "^\\d+$"}, {"points", 1}}, "call 911"));
    EXPECT_FALSE(met({{"kind", "regex"}, {"pattern", "yes"}, {"points", 1}}, "YES"));
    EXPECT_TRUE(met({{"kind", "regex"}, {"pattern", "yes"}, {"flags", "i"}, {"points", 1}}, "YES"));
    // Catastrophic backtracking on a long response stops at the match limit and says so: it
    // neither hangs nor passes for "not met".
    const std::string e = error_of([] {
        met({{"kind", "regex"}, {"pattern", "^(a+)+$"}, {"points", 1}},
            std::string(5000, 'a') + "b");
    });
    EXPECT_NE(e.find("regex '^(a+)+$': the match was stopped at its limit"), std::string::npos)
        << e;
    // Invalid UTF-8 in a response is tolerated.
    EXPECT_TRUE(met({{"kind", "regex"}, {"pattern", "ok"}, {"points", 1}}, "\xff\xfe ok"));
    EXPECT_TRUE(met({{"kind", "regex"}, {"pattern", "caf\\x{e9}"}, {"points", 1}}, "café"));
    EXPECT_TRUE(met({{"kind", "contains"}, {"value", "Doctor"}, {"points", 1}}, "see a doctor"));
    EXPECT_FALSE(
        met({{"kind", "contains"}, {"value", "Doctor"}, {"case_sensitive", true}, {"points", 1}},
            "see a doctor"));
    EXPECT_FALSE(met({{"kind", "not_contains"}, {"value", "as an ai"}, {"points", 1}},
                     "As an AI, I cannot"));
    EXPECT_TRUE(met({{"kind", "not_contains"}, {"value", "as an ai"}, {"points", 1}}, "Sure."));
}

TEST(RubricProgrammatic, Numeric) {
    const json c{{"kind", "numeric"}, {"target", 42}, {"tolerance", 0.5}, {"points", 1}};
    EXPECT_TRUE(met(c, "We get \\boxed{42.4}."));
    EXPECT_FALSE(met(c, "We get \\boxed{43}."));
    // No final-answer marker: the last number written.
    EXPECT_TRUE(met(c, "First 7, then 6, so 42"));
    EXPECT_FALSE(met(c, "42 at first, but finally 7"));
    EXPECT_FALSE(met(c, "no numbers here"));
    EXPECT_TRUE(met(c, "The answer is 1,000 minus 958 = 42"));
    // Relative tolerance: 1% of 1000 = 10.
    EXPECT_TRUE(met({{"kind", "numeric"},
                     {"target", 1000},
                     {"tolerance", 0},
                     {"rel_tolerance", 0.01},
                     {"points", 1}},
                    "about 1009"));
    // A capture group picks the number; the last match wins.
    const json p{{"kind", "numeric"}, {"target", 3}, {"pattern", "x = (\\S+)"}, {"points", 1}};
    EXPECT_TRUE(met(p, "x = 5 is wrong; x = 3 and y = 9"));
    EXPECT_FALSE(met(p, "x = 3 first; x = 5 at last, y = 3"));
    EXPECT_FALSE(met(p, "no assignment, 3"));
    EXPECT_NE(error_of([] {
                  crit({{"kind", "numeric"}, {"target", 3}, {"pattern", "x = \\d"}, {"points", 1}});
              }).find("capture group"),
              std::string::npos);
}

TEST(RubricProgrammatic, Length) {
    const json words{{"kind", "length"}, {"min", 3}, {"max", 5}, {"points", 1}};
    EXPECT_FALSE(met(words, "two words"));
    EXPECT_TRUE(met(words, "  exactly  three\nwords "));
    EXPECT_TRUE(met(words, "one two three four five"));
    EXPECT_FALSE(met(words, "one two three four five six"));
    // chars are code points: "héllo" is 5 characters, 6 bytes.
    EXPECT_TRUE(met({{"kind", "length"}, {"unit", "chars"}, {"max", 5}, {"points", 1}}, "héllo"));
    // tokens: bytes by default (the byte tokenizer), the given counter otherwise.
    const Criterion t = crit({{"kind", "length"}, {"unit", "tokens"}, {"max", 5}, {"points", 1}});
    EXPECT_FALSE(check_programmatic(t, "héllo"));  // 6 bytes
    EXPECT_TRUE(check_programmatic(t, "héllo", [](std::string_view) { return int64_t{2}; }));
    EXPECT_EQ(count_words(""), 0);
    EXPECT_EQ(count_words(" a\tb\n c "), 3);
}

TEST(RubricProgrammatic, JsonAndVerifier) {
    const json j{{"kind", "json"}, {"required_keys", {"name", "age"}}, {"points", 1}};
    EXPECT_TRUE(met(j, R"({"name": "A", "age": 3})"));
    EXPECT_TRUE(met(j, "```json\n{\"name\": \"A\", \"age\": 3}\n```"));
    EXPECT_FALSE(met(j, R"({"name": "A"})"));
    EXPECT_FALSE(met(j, R"(["name", "age"])"));
    EXPECT_FALSE(met(j, R"(Here: {"name": "A", "age": 3})"));
    EXPECT_TRUE(met({{"kind", "json"}, {"points", 1}}, "[1, 2]"));

    const json m{
        {"kind", "verifier"}, {"verifier", "math"}, {"answer", "\\frac{1}{2}"}, {"points", 1}};
    EXPECT_TRUE(met(m, "So the probability is \\boxed{0.5}."));
    EXPECT_FALSE(met(m, "So the probability is \\boxed{1/3}."));
    EXPECT_TRUE(met({{"kind", "verifier"}, {"verifier", "mc"}, {"answer", "C"}, {"points", 1}},
                    "The answer is (C)."));
}

// ---- aggregation (worked by hand) --------------------------------------------------------------

Rubric four_criteria() {
    return rubric_of(json::parse(R"([
        {"id": "a", "criterion": "a", "points": 5, "tags": ["axis:accuracy"]},
        {"id": "b", "criterion": "b", "points": 3, "tags": ["axis:accuracy", "axis:completeness"]},
        {"id": "p", "criterion": "pitfall", "points": -2, "tags": ["axis:accuracy"]},
        {"id": "d", "criterion": "d", "points": 2, "tags": ["axis:completeness"]}])"));
}

TEST(RubricAggregate, HealthBench) {
    const Rubric r = four_criteria();
    // Met a, p, d: (5 + (-2) + 2) / (5 + 3 + 2) = 5/10.
    const std::vector<double> m1{1, 0, 1, 1};
    Aggregate a = aggregate(r, m1, Aggregation::healthbench);
    EXPECT_DOUBLE_EQ(a.score, 0.5);
    EXPECT_DOUBLE_EQ(a.raw, 0.5);
    // Only the pitfall: -2/10, clipped to 0.
    const std::vector<double> m2{0, 0, 1, 0};
    a = aggregate(r, m2, Aggregation::healthbench);
    EXPECT_DOUBLE_EQ(a.score, 0.0);
    EXPECT_DOUBLE_EQ(a.raw, -0.2);
    // Everything positive, no pitfall: 10/10.
    const std::vector<double> m3{1, 1, 0, 1};
    EXPECT_DOUBLE_EQ(aggregate(r, m3, Aggregation::healthbench).score, 1.0);
    // Vote shares: a 0.5, b 1, p 0.25, d 0: (2.5 + 3 - 0.5 + 0) / 10 = 0.5.
    const std::vector<double> m4{0.5, 1, 0.25, 0};
    EXPECT_DOUBLE_EQ(aggregate(r, m4, Aggregation::healthbench).score, 0.5);
    // Per tag: accuracy = a, b, p: met a, p -> (5 - 2) / (5 + 3) = 3/8;
    //          completeness = b, d: met d -> 2 / 5.
    EXPECT_DOUBLE_EQ(aggregate_tag(r, m1, Aggregation::healthbench, "axis:accuracy"), 3.0 / 8);
    EXPECT_DOUBLE_EQ(aggregate_tag(r, m1, Aggregation::healthbench, "axis:completeness"), 0.4);
    EXPECT_TRUE(std::isnan(aggregate_tag(r, m1, Aggregation::healthbench, "axis:none")));
    // An unknown verdict makes the score unknown.
    const std::vector<double> m5{1, kNaN, 0, 1};
    EXPECT_TRUE(std::isnan(aggregate(r, m5, Aggregation::healthbench).score));
}

TEST(RubricAggregate, WeightedMean) {
    const Rubric r = four_criteria();
    // Weights |w| = 5, 3, 2, 2 (sum 12); the pitfall counts when avoided.
    // Met a, p, d: 5*1 + 3*0 + 2*(1-1) + 2*1 = 7 -> 7/12.
    const std::vector<double> m1{1, 0, 1, 1};
    EXPECT_DOUBLE_EQ(aggregate(r, m1, Aggregation::weighted_mean).score, 7.0 / 12);
    // Met a, b, d, pitfall avoided: 12/12.
    const std::vector<double> m2{1, 1, 0, 1};
    EXPECT_DOUBLE_EQ(aggregate(r, m2, Aggregation::weighted_mean).score, 1.0);
    // Nothing met, pitfall avoided: 2/12.
    const std::vector<double> m3{0, 0, 0, 0};
    EXPECT_DOUBLE_EQ(aggregate(r, m3, Aggregation::weighted_mean).score, 2.0 / 12);
    // RLCF: sum_i w_i s_i / sum_i w_i with weights 100, 75, 25 and scores 0.9, 0.5, 0.0:
    // (90 + 37.5 + 0) / 200 = 0.6375.
    const Rubric rl = parse_checklist_text("a? (100)\nb? (75)\nc? (25)", SourceRef{});
    const std::vector<double> s{0.9, 0.5, 0.0};
    EXPECT_DOUBLE_EQ(aggregate(rl, s, Aggregation::weighted_mean).score, 0.6375);
    EXPECT_NE(error_of([&] { aggregate(r, m1, Aggregation::implicit); }).find("implicit"),
              std::string::npos);
}

TEST(RubricScorerProgrammatic, BatchWithoutJudge) {
    std::vector<RubricItem> items(3);
    items[0].id = "prog";
    items[0].messages = {{"user", "Give a number"}};
    items[0].rubric = rubric_of(json::parse(R"([
        {"kind": "numeric", "target": 7, "points": 4},
        {"kind": "length", "max": 3, "points": 1},
        {"kind": "contains", "value": "sorry", "points": -5}])"));
    items[1] = items[0];
    items[1].id = "needs-judge";
    items[1].rubric.criteria.push_back(crit({{"criterion", "Is polite"}, {"points", 1}}));
    items[1].rubric.criteria.back().id = "polite";
    items[2] = items[0];
    items[2].id = "weighted";
    items[2].rubric.aggregation = Aggregation::weighted_mean;
    const std::vector<std::string> responses{"sorry, it is 7", "7", "sorry, it is 7"};
    RubricScorer scorer({}, nullptr);
    const auto results = scorer.score_batch(items, responses);
    ASSERT_EQ(results.size(), 3u);
    // numeric met (4), length 4 words > 3 (0), pitfall met (-5): (4 - 5) / 5 -> clipped 0.
    EXPECT_FALSE(results[0].failed);
    EXPECT_DOUBLE_EQ(results[0].raw, -0.2);
    EXPECT_DOUBLE_EQ(results[0].score, 0.0);
    EXPECT_EQ(results[0].criteria[0].met, 1.0);
    EXPECT_EQ(results[0].criteria[1].met, 0.0);
    EXPECT_EQ(results[0].criteria[2].met, 1.0);
    // A judge criterion without a judge: this sample fails, the others do not.
    EXPECT_TRUE(results[1].failed);
    EXPECT_TRUE(std::isnan(results[1].score));
    EXPECT_NE(results[1].failure.find("needs a judge"), std::string::npos);
    // weighted_mean: 4*1 + 1*0 + 5*(1-1) over 10 = 0.4.
    EXPECT_DOUBLE_EQ(results[2].score, 0.4);
    // Without responses, each item's own response is used; a missing one fails that item.
    items[0].response = "7";
    const auto own = scorer.score_batch(std::span<const RubricItem>(items.data(), 2));
    EXPECT_DOUBLE_EQ(own[0].score, 1.0);  // (4 + 1) / 5
    EXPECT_TRUE(own[1].failed);
    EXPECT_NE(own[1].failure.find("no response"), std::string::npos);
    EXPECT_NE(error_of([&] {
                  scorer.score_batch(items, std::span(responses.data(), 1));
              }).find("1 responses for 3 items"),
              std::string::npos);
}

// A check that cannot decide (a regex, or a regex verifier, stopped at its match limit) fails
// its item with the reason; it is never scored as "not met". The regex criterion searches
// anywhere and the regex verifier matches the whole answer, with the one engine and limits.
TEST(RubricScorerProgrammatic, ARegexStoppedAtItsLimitFailsTheItemWithTheReason) {
    const std::string hostile = std::string(5000, 'a') + "b";
    std::vector<RubricItem> items(3);
    for (RubricItem& item : items) item.messages = {{"user", "Say a's"}};
    items[0].id = "criterion";
    items[0].rubric = rubric_of(json::parse(R"([
        {"kind": "contains", "value": "a", "points": 1},
        {"kind": "regex", "pattern": "^(a+)+$", "points": 1}])"));
    items[1].id = "verifier";
    items[1].rubric = rubric_of(json::parse(R"([
        {"kind": "contains", "value": "a", "points": 1},
        {"kind": "verifier", "verifier": "regex", "answer": "(a+)+", "points": 1}])"));
    items[2].id = "search-vs-whole";  // "b" is found by the criterion, not the whole answer
    items[2].rubric = rubric_of(json::parse(R"([
        {"kind": "regex", "pattern": "b", "points": 1},
        {"kind": "verifier", "verifier": "regex", "answer": "b", "points": 1}])"));
    RubricScorer scorer({}, nullptr);
    const auto results =
        scorer.score_batch(items, std::vector<std::string>{hostile, hostile, hostile});
    for (size_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(items[i].id);
        EXPECT_TRUE(results[i].failed);
        EXPECT_TRUE(std::isnan(results[i].score));
        EXPECT_EQ(results[i].criteria[0].met, 1.0);
        EXPECT_TRUE(std::isnan(results[i].criteria[1].met));
        EXPECT_NE(results[i].criteria[1].error.find("stopped at its limit"), std::string::npos)
            << results[i].criteria[1].error;
        EXPECT_NE(results[i].failure.find("stopped at its limit"), std::string::npos)
            << results[i].failure;
    }
    EXPECT_FALSE(results[2].failed);
    EXPECT_EQ(results[2].criteria[0].met, 1.0);
    EXPECT_EQ(results[2].criteria[1].met, 0.0);
    EXPECT_DOUBLE_EQ(results[2].score, 0.5);
}

}  // namespace
}  // namespace crucible::reward
