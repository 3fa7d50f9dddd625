// The eval harness: datasets with bad lines, the sample store, resumption after a kill (only
// missing samples are generated, nothing is duplicated), results.json against numbers worked
// out by hand in the comments, the paired comparison against a hand-worked paired t test, the
// OpenAI path against an in-process HTTP server, and the CLI (eval on a tiny local model,
// verify, compare, report) through the real binary.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "core/file_io.h"
#include "core/strings.h"
#include "eval/dataset.h"
#include "eval/harness.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "eval/sample_store.h"
#include "http_test_server.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "serve/server.h"
#include "table_generator.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TableGenerator;
using testutil::TempDir;
using testutil::TestServer;

std::vector<EvalItem> items_of(const std::vector<std::pair<std::string, std::string>>& id_gold,
                               const std::vector<std::string>& clusters = {}) {
    std::vector<EvalItem> out;
    for (size_t i = 0; i < id_gold.size(); ++i) {
        EvalItem it;
        it.id = id_gold[i].first;
        it.prompt = "question " + it.id;
        it.answer = id_gold[i].second;
        it.verifier = "math";
        if (!clusters.empty()) it.cluster = clusters[i];
        out.push_back(it);
    }
    return out;
}

EvalOptions options_for(const fs::path& dir, int k) {
    EvalOptions o;
    o.run_dir = dir.string();
    o.k = k;
    o.sampling.seed = 11;
    return o;
}

TEST(EvalHarness, DatasetReportsBadLinesAndKeepsGoing) {
    TempDir t;
    const fs::path p =
        t.write("d.jsonl", R"({"id": "a", "prompt": "1+1?", "answer": 2})"
                           "\n"
                           R"({"id": "b", "prompt": "no answer"})"
                           "\n"
                           "not json\n"
                           "\n"
                           R"({"id": 7, "messages": [{"role": "user", "content": "hi"}],)"
                           R"( "gold": "x", "verifier": "exact", "topic": "t1"})"
                           "\n"
                           R"({"prompt": "p", "answer": "1", "verifier": "judge"})"
                           "\n");
    const Dataset d = load_dataset(p.string(), "math", "topic");
    ASSERT_EQ(d.items.size(), 2u);
    EXPECT_EQ(d.items[0].id, "a");
    EXPECT_EQ(d.items[0].answer, "2");
    EXPECT_EQ(d.items[0].verifier, "math");
    EXPECT_EQ(d.items[1].id, "7");
    EXPECT_TRUE(d.items[1].is_chat());
    EXPECT_EQ(d.items[1].cluster, "t1");
    EXPECT_EQ(d.items[1].verifier, "exact");
    ASSERT_EQ(d.excluded.size(), 3u);
    EXPECT_NE(d.excluded[0].find("d.jsonl:2: needs 'answer'"), std::string::npos) << d.excluded[0];
    EXPECT_NE(d.excluded[1].find("d.jsonl:3: not a JSON object"), std::string::npos);
    EXPECT_NE(d.excluded[2].find("d.jsonl:6: unknown verifier 'judge'"), std::string::npos);

    // A gold that an empty completion matches is left out, naming why: it would score every
    // empty answer correct.
    const fs::path empty_ok =
        t.write("e.jsonl", R"({"prompt": "p", "answer": ".*", "verifier": "regex"})"
                           "\n"
                           R"({"prompt": "q", "answer": "4?", "verifier": "regex"})"
                           "\n"
                           R"({"prompt": "r", "answer": "4", "verifier": "regex"})"
                           "\n");
    const Dataset e = load_dataset(empty_ok.string(), "math", "");
    ASSERT_EQ(e.items.size(), 1u);
    ASSERT_EQ(e.excluded.size(), 2u);
    EXPECT_NE(e.excluded[0].find("accepts an empty completion"), std::string::npos)
        << e.excluded[0];

    const fs::path dup = t.write("dup.jsonl", R"({"id": "a", "prompt": "x", "answer": 1})"
                                              "\n"
                                              R"({"id": "a", "prompt": "y", "answer": 2})"
                                              "\n");
    const std::string msg = testutil::error_of([&] { load_dataset(dup.string()); });
    EXPECT_NE(msg.find("dup.jsonl:2: id 'a' was already used on line 1"), std::string::npos) << msg;
}

TEST(EvalHarness, StoreRoundTripAndSettingsGuard) {
    TempDir t;
    const std::string dir = (t.path() / "run").string();
    {
        SampleStore s(dir);
        s.check_settings({{"model", "m1"}, {"temperature", "0.6"}});
        s.put_items(items_of({{"q1", "3"}, {"q2", "4"}}, {"c", ""}));
        SampleRecord r;
        r.item_id = "q2";
        r.sample = 1;
        r.seed = 0xfedcba9876543210ull;
        r.prompt = "p";
        r.completion = "\\boxed{4}";
        r.prompt_tokens = 5;
        r.completion_tokens = 6;
        r.finish_reason = "stop";
        r.score = 1.0;
        r.answer = "4";
        r.latency_s = 0.25;
        s.put(r);
        r.item_id = "q1";
        r.sample = 0;
        r.score.reset();
        r.error = "HTTP 500";
        s.put(r);
    }
    SampleStore s(dir);
    const auto items = s.items();
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[0].id, "q1");
    EXPECT_EQ(items[0].cluster, "c");
    EXPECT_EQ(items[1].answer, "4");
    const auto samples = s.samples();
    ASSERT_EQ(samples.size(), 2u);
    EXPECT_EQ(samples[0].item_id, "q1");  // item order, then sample index
    EXPECT_FALSE(samples[0].score.has_value());
    EXPECT_EQ(samples[0].error, "HTTP 500");
    EXPECT_EQ(samples[1].seed, 0xfedcba9876543210ull);
    EXPECT_EQ(samples[1].completion, "\\boxed{4}");
    EXPECT_EQ(samples[1].prompt_tokens, 5);
    EXPECT_EQ(samples[1].completion_tokens, 6);
    EXPECT_DOUBLE_EQ(*samples[1].score, 1.0);
    EXPECT_DOUBLE_EQ(samples[1].latency_s, 0.25);
    // A failed sample is not done: a re-run retries it.
    const auto done = s.done();
    EXPECT_EQ(done.count("q1"), 0u);
    EXPECT_EQ(done.at("q2"), std::vector<int>{1});
    const std::string msg = testutil::error_of([&] { s.check_settings({{"temperature", "1"}}); });
    EXPECT_NE(msg.find("temperature = '0.6', now '1'"), std::string::npos) << msg;
    EXPECT_NO_THROW(s.check_settings({{"model", "m1"}}));
}

TEST(EvalHarness, ResumeAfterKillGeneratesOnlyWhatIsMissing) {
    TempDir t;
    const auto items = items_of({{"a", "1"}, {"b", "2"}, {"c", "3"}});
    TableGenerator gen;
    for (const auto& it : items) gen.table[it.id] = {"\\boxed{1}", "\\boxed{2}"};
    // K = 2: 6 samples; the process dies after 4 of them.
    gen.kill_after = 4;
    EXPECT_THROW(run_eval(items, gen, options_for(t.path(), 2)), std::runtime_error);
    EXPECT_EQ(SampleStore(t.path().string()).samples().size(), 4u);
    // The re-run generates the 2 missing ones only.
    gen.kill_after = -1;
    gen.asked.clear();
    EvalSummary s = run_eval(items, gen, options_for(t.path(), 2));
    EXPECT_EQ(s.generated, 2);
    EXPECT_EQ(s.skipped, 4);
    EXPECT_EQ(gen.asked, (std::vector<std::pair<std::string, int>>{{"c", 0}, {"c", 1}}));
    // K = 4 adds samples 2 and 3 of every item, nothing else.
    gen.asked.clear();
    s = run_eval(items, gen, options_for(t.path(), 4));
    EXPECT_EQ(s.generated, 6);
    for (const auto& [id, j] : gen.asked) EXPECT_GE(j, 2) << id;
    // Nothing lost, nothing duplicated; seeds are a function of (seed, id, j) only.
    const auto samples = SampleStore(t.path().string()).samples();
    ASSERT_EQ(samples.size(), 12u);
    std::set<std::pair<std::string, int>> seen;
    for (const SampleRecord& r : samples) {
        EXPECT_TRUE(seen.emplace(r.item_id, r.sample).second);
        EXPECT_EQ(r.seed, sample_seed(11, r.item_id, r.sample));
        EXPECT_DOUBLE_EQ(*r.score, r.item_id == "a"   ? (r.sample % 2 == 0 ? 1.0 : 0.0)
                                   : r.item_id == "b" ? (r.sample % 2 == 1 ? 1.0 : 0.0)
                                                      : 0.0);
    }
    // A third run with the same K generates nothing.
    gen.asked.clear();
    s = run_eval(items, gen, options_for(t.path(), 4));
    EXPECT_EQ(s.generated, 0);
    EXPECT_TRUE(gen.asked.empty());
    // Other sampling settings in the same directory are refused.
    EvalOptions hot = options_for(t.path(), 4);
    hot.sampling.temperature = 0.5;
    EXPECT_NE(testutil::error_of([&] { run_eval(items, gen, hot); }).find("temperature"),
              std::string::npos);
}

TEST(EvalHarness, SeedsDoNotDependOnTheOtherSamples) {
    EXPECT_EQ(sample_seed(5, "item-1", 3), sample_seed(5, "item-1", 3));
    EXPECT_NE(sample_seed(5, "item-1", 3), sample_seed(5, "item-1", 2));
    EXPECT_NE(sample_seed(5, "item-1", 3), sample_seed(5, "item-2", 3));
    EXPECT_NE(sample_seed(5, "item-1", 3), sample_seed(6, "item-1", 3));
}

TEST(EvalHarness, StripThink) {
    EXPECT_EQ(scored_text("<think>2+2=5?</think> \\boxed{4}", true), " \\boxed{4}");
    EXPECT_EQ(scored_text("<think>still thinking \\boxed{4}", true), "");
    EXPECT_EQ(scored_text("\\boxed{4}", true), "\\boxed{4}");
    EXPECT_EQ(scored_text("<think>x</think>\\boxed{4}", false), "<think>x</think>\\boxed{4}");
}

// Three items, K = 4 (1 = correct):
//   a (gold 5): answers 5 5 7 5 -> 1 1 0 1, item mean 3/4
//   b (gold 9): answers 1 2 1 3 -> 0 0 0 0, item mean 0
//   c (gold 4): answers 4 3 3 4 -> 1 0 0 1, item mean 1/2
TEST(EvalHarness, ResultsMatchHandComputation) {
    TempDir t;
    const auto items = items_of({{"a", "5"}, {"b", "9"}, {"c", "4"}}, {"g1", "g1", "g2"});
    TableGenerator gen;
    auto boxed = [](std::vector<std::string> v) {
        for (auto& s : v) s = "so \\boxed{" + s + "}";
        return v;
    };
    gen.table["a"] = boxed({"5", "5", "7", "5"});
    gen.table["b"] = boxed({"1", "2", "1", "3"});
    gen.table["c"] = boxed({"4", "3", "3", "4"});
    run_eval(items, gen, options_for(t.path(), 4));
    ResultsOptions ro;
    ro.bootstrap = 200;
    ro.bootstrap_seed = 3;
    const json r = compute_results(load_run(t.path().string()), ro);
    EXPECT_EQ(r["n_items"], 3);
    EXPECT_EQ(r["k"], 4);
    EXPECT_EQ(r["n_samples"], 12);
    const json& m = r["metrics"];
    const json& avg = m["avg@4"];
    // avg@4 = (3/4 + 0 + 1/2) / 3 = 5/12.
    EXPECT_NEAR(avg["mean"].get<double>(), 5.0 / 12, 1e-12);
    // Item SE: deviations of the item means from 5/12 are 1/3, -5/12, 1/12; squares sum to
    // 1/9 + 25/144 + 1/144 = 42/144; SE^2 = (42/144) / (3 * 2) = 7/144, SE = sqrt(7)/12.
    EXPECT_NEAR(avg["se_item"].get<double>(), std::sqrt(7.0) / 12, 1e-12);
    // Naive SE over the 12 samples as if independent: 5 ones and 7 zeros around 5/12:
    // sum of squares = 5 (7/12)^2 + 7 (5/12)^2 = 420/144; SE^2 = (420/144) / (12 * 11).
    EXPECT_NEAR(avg["se_clt_samples"].get<double>(), std::sqrt(420.0 / 144 / 132), 1e-12);
    // Normal interval 5/12 +- 1.959964 sqrt(7)/12.
    EXPECT_NEAR(avg["ci_normal"][0].get<double>(), 5.0 / 12 - 1.959964 * std::sqrt(7.0) / 12, 1e-6);
    // Wilson on 5/4 successes of 3 items, z = 1.959964:
    //   (p + z^2/(2n) +- z sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n), p = 5/12.
    {
        const double z = 1.959964, n = 3, p = 5.0 / 12;
        const double c = (p + z * z / (2 * n)) / (1 + z * z / n);
        const double h = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n);
        EXPECT_NEAR(avg["ci_wilson"][0].get<double>(), c - h, 1e-6);
        EXPECT_NEAR(avg["ci_wilson"][1].get<double>(), c + h, 1e-6);
    }
    // Clustered (Miller): a and b share g1; SE^2 = 7/144 + (2/n^2)(1/3)(-5/12)
    //   = 7/144 - (10/36)/9 = 7/144 - 10/324.
    EXPECT_EQ(avg["n_clusters"], 2);
    EXPECT_NEAR(avg["se_cluster"].get<double>(), std::sqrt(7.0 / 144 - 10.0 / 324), 1e-12);
    EXPECT_EQ(avg["bootstrap"]["resamples"], 200);
    EXPECT_LE(avg["bootstrap"]["ci"][0].get<double>(), avg["mean"].get<double>());
    // pass@1 = avg@4; pass@2 per item 1 - C(n-c,2)/C(4,2): a (c=3) 1, b 0, c (c=2) 1 - 1/6.
    EXPECT_NEAR(m["pass@1"]["mean"].get<double>(), 5.0 / 12, 1e-12);
    EXPECT_NEAR(m["pass@2"]["mean"].get<double>(), (1 + 0 + 5.0 / 6) / 3, 1e-12);
    EXPECT_NEAR(m["pass@4"]["mean"].get<double>(), 2.0 / 3, 1e-12);
    // pass^2 = C(c,2)/C(4,2): a 3/6, b 0, c 1/6; pass^4: nobody has 4 correct.
    EXPECT_NEAR(m["pass^2"]["mean"].get<double>(), (0.5 + 0 + 1.0 / 6) / 3, 1e-12);
    EXPECT_NEAR(m["pass^4"]["mean"].get<double>(), 0.0, 1e-12);
    EXPECT_FALSE(m.contains("pass@8"));
    // maj@4: a votes 5 (right), b votes 1 (wrong), c ties 4-3 and 4 came first (right).
    EXPECT_NEAR(m["maj@4"]["mean"].get<double>(), 2.0 / 3, 1e-12);
    ASSERT_EQ(r["per_item"].size(), 3u);
    EXPECT_EQ(r["per_item"][0]["correct"], 3);
    EXPECT_EQ(r["pass_at_k_curve"].size(), 4u);
    const std::string table = results_table(r);
    EXPECT_NE(table.find("avg@4"), std::string::npos);
    EXPECT_NE(table.find("41.67"), std::string::npos) << table;
}

TEST(EvalHarness, MajorityVoteCountsEquivalentAnswersTogether) {
    TempDir t;
    const auto items = items_of({{"q", "7"}});
    TableGenerator gen;
    // 2, 7, 14/2, 1: "7" and "\frac{14}{2}" are one answer with two votes, so 7 wins; as raw
    // strings all four differ and the first ("2") would win.
    gen.table["q"] = {"\\boxed{2}", "\\boxed{7}", "\\boxed{\\frac{14}{2}}", "\\boxed{1}"};
    run_eval(items, gen, options_for(t.path(), 4));
    const json r = compute_results(load_run(t.path().string()));
    EXPECT_DOUBLE_EQ(r["metrics"]["maj@4"]["mean"].get<double>(), 1.0);
}

// "q0", "q1", ... (appended, not operator+: GCC 12 warns falsely on "q" + std::to_string).
std::string id_of(size_t i) {
    std::string s = "q";
    s += std::to_string(i);
    return s;
}

// Five items, per-item means A = (1, .5, 1, 0, 1), B = (0, .5, .5, 0, .5):
// d = (1, 0, .5, 0, .5), mean .4; deviations .6 -.4 .1 -.4 .1, squares sum .70;
// Var(d) = .70/4 = .175, SE = sqrt(.175/5) = sqrt(.035); t = .4/sqrt(.035) = 2.13809, df 4.
TEST(EvalHarness, CompareMatchesHandPairedT) {
    TempDir t;
    auto make_run = [&](const std::string& name, const std::vector<std::vector<double>>& rows) {
        const std::string dir = (t.path() / name).string();
        SampleStore s(dir);
        std::vector<std::pair<std::string, std::string>> ids;
        for (size_t i = 0; i < rows.size(); ++i) ids.push_back({id_of(i), "1"});
        s.put_items(items_of(ids));
        s.set_setting("k", "2");
        for (size_t i = 0; i < rows.size(); ++i) {
            for (size_t j = 0; j < rows[i].size(); ++j) {
                SampleRecord r;
                r.item_id = id_of(i);
                r.sample = static_cast<int>(j);
                r.score = rows[i][j];
                s.put(r);
            }
        }
        return load_run(dir);
    };
    const RunData a = make_run("a", {{1, 1}, {1, 0}, {1, 1}, {0, 0}, {1, 1}});
    const RunData b = make_run("b", {{0, 0}, {0, 1}, {1, 0}, {0, 0}, {0, 1}});
    CompareOptions co;
    co.delta = 0.1;
    const json c = compare_runs(a, b, co);
    EXPECT_EQ(c["n_items"], 5);
    EXPECT_NEAR(c["diff"].get<double>(), 0.4, 1e-12);
    EXPECT_NEAR(c["se"].get<double>(), std::sqrt(0.035), 1e-12);
    const double tt = 0.4 / std::sqrt(0.035);
    EXPECT_NEAR(c["t"].get<double>(), tt, 1e-9);
    // Student t with 4 degrees of freedom has a closed-form CDF:
    //   F(t) = 1/2 + (3/8) (t / sqrt(1 + t^2/4)) (1 - t^2 / (12 (1 + t^2/4))).
    const double u = 1 + tt * tt / 4;
    const double cdf = 0.5 + 0.375 * (tt / std::sqrt(u)) * (1 - tt * tt / (12 * u));
    EXPECT_NEAR(c["p_value_t"].get<double>(), 2 * (1 - cdf), 1e-9);
    // 95% CI: .4 +- 1.959964 sqrt(.035).
    EXPECT_NEAR(c["ci"][0].get<double>(), 0.4 - 1.959964 * std::sqrt(0.035), 1e-6);
    // Exact sign flips: the zero differences do not matter; +-1 +-.5 +-.5 reaches |sum| >= 2
    // in 2 of 8 sign patterns, so p = 1/4.
    EXPECT_TRUE(c["sign_flip"]["exact"].get<bool>());
    EXPECT_NEAR(c["p_value_sign_flip"].get<double>(), 0.25, 1e-12);
    EXPECT_EQ(c["wins_a"], 3);
    EXPECT_EQ(c["wins_b"], 0);
    EXPECT_EQ(c["ties"], 2);
    // Power inputs: within-item variances (n-1 denominator) of pairs: {1,1} 0, {1,0} 1/2.
    // A has one split pair of 5 items: sigma2_a = (1/2)/5 = .1; B has three: sigma2_b = .3.
    // omega2 = max(0, Var(d) - .1/2 - .3/2) = .175 - .2 < 0 -> 0.
    const json& p = c["power"];
    EXPECT_NEAR(p["sigma2_a"].get<double>(), 0.1, 1e-12);
    EXPECT_NEAR(p["sigma2_b"].get<double>(), 0.3, 1e-12);
    EXPECT_NEAR(p["omega2"].get<double>(), 0.0, 1e-12);
    // MDE = (1.959964 + 0.841621) sqrt((0 + .1/2 + .3/2) / 5) = 2.801585 sqrt(.04).
    EXPECT_NEAR(p["mde"].get<double>(), 2.801585 * 0.2, 1e-5);
    // Items for delta .1: 2.801585^2 * .2 / .01 = 156.98 -> 157.
    EXPECT_EQ(p["items_needed"].get<double>(), 157);
    // Samples at n = 5 for delta .1: z^2 (.1 + .3) / (5 * .01 - 0) = 7.849 * 8 = 62.79 -> 63.
    EXPECT_EQ(p["samples_needed"].get<double>(), 63);
    const std::string text = comparison_text(c);
    EXPECT_NE(text.find("minimum detectable effect"), std::string::npos);
    EXPECT_NE(text.find("(exact)"), std::string::npos);
    // No shared item is an error.
    const RunData other = make_run("o", {{1, 1}});
    RunData renamed = other;
    renamed.ids = {"zz"};
    EXPECT_NE(testutil::error_of([&] { compare_runs(a, renamed, co); }).find("share no item"),
              std::string::npos);
}

// A run written to a sample store: item i is id_of(i) in clusters[i] ("" for none), with the
// scores of rows[i] as samples 0, 1, ... (NaN: the sample is not stored, as after a failure).
RunData stored_run(const fs::path& dir, int k, const std::vector<std::vector<double>>& rows,
                   const std::vector<std::string>& clusters = {}) {
    SampleStore s(dir.string());
    std::vector<std::pair<std::string, std::string>> ids;
    for (size_t i = 0; i < rows.size(); ++i) ids.push_back({id_of(i), "1"});
    s.put_items(items_of(ids, clusters));
    s.set_setting("k", std::to_string(k));
    for (size_t i = 0; i < rows.size(); ++i) {
        for (size_t j = 0; j < rows[i].size(); ++j) {
            if (std::isnan(rows[i][j])) continue;
            SampleRecord r;
            r.item_id = id_of(i);
            r.sample = static_cast<int>(j);
            r.score = rows[i][j];
            s.put(r);
        }
    }
    return load_run(dir.string());
}

// Item 10 of issue 13: with ragged sample counts every @k figure stands on the items with all
// K samples, and results.json and the table say how many were left out. Items (K = 4):
// q0 4 samples 1 correct, q1 4 samples 2 correct, q2 2 samples 1 correct, q3 1 sample wrong.
// On q0, q1 (hand-worked in eval_statistics_test.cpp, TheCurveUsesOneItemSet): pass@1 3/8,
// pass@2 2/3, pass@4 1, curve (3/8, 2/3, 7/8, 1); pass^2 = (0 + 1/6)/2 = 1/12.
TEST(EvalHarness, PassAtKLeavesOutItemsShortOfKAndSaysSo) {
    TempDir t;
    const double x = std::nan("");
    const RunData run =
        stored_run(t.path(), 4, {{1, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, x, x}, {0, x, x, x}});
    const json r = compute_results(run);
    const json& m = r["metrics"];
    EXPECT_NEAR(m["pass@1"]["mean"].get<double>(), 3.0 / 8, 1e-12);
    EXPECT_NEAR(m["pass@2"]["mean"].get<double>(), 2.0 / 3, 1e-12);
    EXPECT_NEAR(m["pass@4"]["mean"].get<double>(), 1.0, 1e-12);
    EXPECT_NEAR(m["pass^2"]["mean"].get<double>(), 1.0 / 12, 1e-12);
    for (const char* key : {"pass@1", "pass@2", "pass@4", "pass^1", "pass^2", "pass^4", "maj@4"}) {
        EXPECT_EQ(m[key]["n_items"], 2) << key;
        EXPECT_EQ(m[key]["n_excluded"], 2) << key;
    }
    const std::vector<double> curve = {3.0 / 8, 2.0 / 3, 7.0 / 8, 1.0};
    ASSERT_EQ(r["pass_at_k_curve"].size(), 4u);
    for (size_t k = 0; k < 4; ++k)
        EXPECT_NEAR(r["pass_at_k_curve"][k].get<double>(), curve[k], 1e-12) << k + 1;
    EXPECT_EQ(r["pass_at_k_items"]["k"], 4);
    EXPECT_EQ(r["pass_at_k_items"]["n_items"], 2);
    EXPECT_EQ(r["pass_at_k_items"]["n_short"], 2);
    // avg@4 still averages every item with a sample: (1/4 + 1/2 + 1/2 + 0)/4.
    EXPECT_NEAR(m["avg@4"]["mean"].get<double>(), 5.0 / 16, 1e-12);
    const std::string table = results_table(r);
    EXPECT_NE(table.find("2 items with all 4 samples; 2 items with fewer left out"),
              std::string::npos)
        << table;
    const std::string html = report_html({r});
    EXPECT_NE(html.find("2 items with 4 samples, 2 with fewer left out"), std::string::npos);
}

// Item 11 of issue 13: compare with a cluster field uses the clustered SE of the paired
// differences. Per-item A = (1, 1 | 1, 1 | 0, 0), B = (0, 0 | 0, 0 | 0, 1) in clusters g1, g2,
// g3; d = (1, 1 | 1, 1 | 0, -1). By hand (eval_statistics_test.cpp, EvalPaired.ClusteredByHand):
// SE over items sqrt(7/60), clustered sqrt(67/360), t with C - 1 = 2 df: p = 1 - t/sqrt(2+t^2).
// Cluster sums (2, 2, -1): |sum| >= 3 in 4 of 8 sign patterns, so the cluster sign flip p is
// 1/2 (item by item it would be 12/32).
TEST(EvalHarness, CompareUsesTheClusteredSeWithAClusterField) {
    TempDir t;
    const std::vector<std::string> clusters = {"g1", "g1", "g2", "g2", "g3", "g3"};
    const RunData a = stored_run(t.path() / "a", 1, {{1}, {1}, {1}, {1}, {0}, {0}}, clusters);
    const RunData b = stored_run(t.path() / "b", 1, {{0}, {0}, {0}, {0}, {0}, {1}}, clusters);
    const json c = compare_runs(a, b, CompareOptions{});
    EXPECT_NEAR(c["diff"].get<double>(), 0.5, 1e-12);
    EXPECT_NEAR(c["se"].get<double>(), std::sqrt(67.0 / 360), 1e-12);
    EXPECT_EQ(c["se_kind"], "clustered");
    EXPECT_EQ(c["n_clusters"], 3);
    EXPECT_NEAR(c["se_items"].get<double>(), std::sqrt(7.0 / 60), 1e-12);
    const double tt = 0.5 / std::sqrt(67.0 / 360);
    EXPECT_NEAR(c["t"].get<double>(), tt, 1e-9);
    EXPECT_EQ(c["df"], 2);
    EXPECT_NEAR(c["p_value_t"].get<double>(), 1 - tt / std::sqrt(2 + tt * tt), 1e-9);
    EXPECT_NEAR(c["ci"][1].get<double>(), 0.5 + 1.959964 * std::sqrt(67.0 / 360), 1e-6);
    EXPECT_NEAR(c["p_value_sign_flip"].get<double>(), 0.5, 1e-12);
    EXPECT_EQ(c["sign_flip"]["unit"], "cluster");
    // Power: design effect (67/360)/(7/60) = 67/42 > 1.
    EXPECT_NEAR(c["power"]["design_effect"].get<double>(), 67.0 / 42, 1e-12);
    const std::string text = comparison_text(c);
    EXPECT_NE(text.find("clustered by field (3 clusters"), std::string::npos) << text;
    // Without the field the same runs are compared item by item.
    const RunData a0 = stored_run(t.path() / "a0", 1, {{1}, {1}, {1}, {1}, {0}, {0}});
    const RunData b0 = stored_run(t.path() / "b0", 1, {{0}, {0}, {0}, {0}, {0}, {1}});
    const json c0 = compare_runs(a0, b0, CompareOptions{});
    EXPECT_NEAR(c0["se"].get<double>(), std::sqrt(7.0 / 60), 1e-12);
    EXPECT_EQ(c0["se_kind"], "items");
    EXPECT_NEAR(c0["p_value_sign_flip"].get<double>(), 12.0 / 32, 1e-12);
    // One run with the field and one without: the field is used.
    EXPECT_EQ(compare_runs(a, b0, CompareOptions{})["n_clusters"], 3);
    // The same item in two different clusters: the runs did not see one dataset.
    RunData moved = b;
    moved.clusters[0] = "g9";
    EXPECT_NE(testutil::error_of([&] {
                  compare_runs(a, moved, CompareOptions{});
              }).find("item 'q0' is in cluster 'g1'"),
              std::string::npos);
}

TEST(EvalHarness, ReportIsSelfContained) {
    TempDir t;
    const auto items = items_of({{"a", "1"}, {"b<&>", "2"}});
    TableGenerator gen;
    gen.table["a"] = {"\\boxed{1}", "\\boxed{3}"};
    gen.table["b<&>"] = {"\\boxed{2}"};
    run_eval(items, gen, options_for(t.path() / "r1", 2));
    gen.table["a"] = {"\\boxed{3}"};
    run_eval(items, gen, options_for(t.path() / "r2", 2));
    const std::string html = report_html({compute_results(load_run((t.path() / "r1").string())),
                                          compute_results(load_run((t.path() / "r2").string()))});
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html.find("<svg class=\"accuracy\""), std::string::npos);
    EXPECT_NE(html.find("class=\"errorbar\""), std::string::npos);
    EXPECT_NE(html.find("<svg class=\"heatmap\""), std::string::npos);
    EXPECT_NE(html.find("<svg class=\"passk\""), std::string::npos);
    EXPECT_NE(html.find("<polyline"), std::string::npos);
    EXPECT_EQ(html.find("Rubric scores"), std::string::npos);   // no rubric items, no panel
    EXPECT_NE(html.find("b&lt;&amp;&gt;"), std::string::npos);  // ids are escaped
    EXPECT_EQ(html.find("b<&>"), std::string::npos);
    // Nothing outside the page: no URL, no linked resource, no script.
    for (const char* bad : {"http:", "https:", "//", "src=", "href=", "<script", "url("})
        EXPECT_EQ(html.find(bad), std::string::npos) << bad;
}

// A report a person reads (issue 21): runs by their folder names in every chart and table,
// proportions' intervals clipped to [0, 100], a colour scale on the heatmap, a legend on the
// pass@k curves, and the comparison with the first run.
TEST(EvalHarness, TheReportNamesRunsClipsIntervalsAndCompares) {
    TempDir t;
    // One item right, three wrong, K = 1: the normal interval of 25% goes below 0.
    const auto items = items_of({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}});
    TableGenerator gen;
    gen.table["a"] = {"\\boxed{1}"};
    gen.table["b"] = {"\\boxed{0}"};
    gen.table["c"] = {"\\boxed{0}"};
    gen.table["d"] = {"\\boxed{0}"};
    run_eval(items, gen, options_for(t.path() / "base" / "run", 1));
    gen.table["b"] = {"\\boxed{2}"};
    run_eval(items, gen, options_for(t.path() / "new" / "run", 1));
    const RunData a = load_run((t.path() / "base" / "run").string());
    const RunData b = load_run((t.path() / "new" / "run").string());
    const json ra = compute_results(a), rb = compute_results(b);
    ASSERT_LT(ra["metrics"]["avg@1"]["ci_normal"][0].get<double>(), 0.0);  // the case to clip
    const std::string html = report_html({ra, rb}, {compare_runs(b, a, {})});
    // Two folders named "run": each shown with its parent.
    for (const char* part : {">base/run<", ">new/run<", "[0.00, ", "class=\"scale\"",
                             "class=\"legend\"", "<h2>Comparison</h2>", "+25.00"})
        EXPECT_NE(html.find(part), std::string::npos) << part;
    // No negative bound in the runs table (the comparison's difference may be negative).
    const size_t runs_at = html.find("<table class=\"runs\">");
    const std::string runs_table = html.substr(runs_at, html.find("</table>", runs_at) - runs_at);
    EXPECT_EQ(runs_table.find("[-"), std::string::npos) << runs_table;
    // The charts name the runs: the accuracy bars, the heatmap's columns, the legend.
    size_t named = 0;
    for (size_t at = 0; (at = html.find(">base/run</text>", at)) != std::string::npos; at++)
        named++;
    EXPECT_EQ(named, 3u);
}

// ---- the OpenAI path, against an HTTP server in this process ------------------------------------

// A chat endpoint that answers "question N" with \boxed{N} for even seeds and \boxed{0} for
// odd ones, and fails every request about "question bad..." with HTTP 400.
struct FakeEndpoint {
    TestServer server;
    std::mutex mutex;
    std::map<std::string, int> requests;  // per user content
    FakeEndpoint() {
        server.http().Post("/v1/chat/completions", [this](const httplib::Request& req,
                                                          httplib::Response& res) {
            const json body = json::parse(req.body);
            const std::string q = body["messages"][0]["content"];
            {
                std::lock_guard<std::mutex> lock(mutex);
                requests[q]++;
            }
            if (q.rfind("question bad", 0) == 0) {
                res.status = 400;
                res.set_content(R"({"error": {"message": "bad prompt", "type": "x"}})",
                                "application/json");
                return;
            }
            const int64_t seed = body["seed"].get<int64_t>();
            const std::string n = q.substr(q.find(' ') + 1);
            const json reply = {{"id", "c"},
                                {"model", body["model"]},
                                {"choices",
                                 {{{"index", 0},
                                   {"message",
                                    {{"role", "assistant"},
                                     {"content", "\\boxed{" + (seed % 2 == 0 ? n : "0") + "}"}}},
                                   {"finish_reason", "stop"}}}},
                                {"usage", {{"prompt_tokens", 4}, {"completion_tokens", 2}}}};
            res.set_content(reply.dump(), "application/json");
        });
    }
    int total() {
        std::lock_guard<std::mutex> lock(mutex);
        int n = 0;
        for (const auto& [q, c] : requests) n += c;
        return n;
    }
};

TEST(EvalHarness, OpenAIEndpointResumesAndReportsFailures) {
    TempDir t;
    FakeEndpoint ep;
    const auto items = items_of({{"1", "1"}, {"2", "2"}, {"3", "3"}, {"bad", "4"}});
    auto gen = make_openai_generator("openai:" + ep.server.base_url() + "#fake", 3);
    run_eval(items, *gen, options_for(t.path(), 2));
    EXPECT_EQ(ep.total(), 8);
    // K = 3: one new sample for each item, and the two failed samples of "bad" again.
    const EvalSummary s = run_eval(items, *gen, options_for(t.path(), 3));
    EXPECT_EQ(s.generated, 4 + 2);
    EXPECT_EQ(ep.total(), 14);
    EXPECT_EQ(ep.requests["question 1"], 3);
    EXPECT_EQ(ep.requests["question bad"], 5);
    const RunData run = load_run(t.path().string());
    const json r = compute_results(run);
    EXPECT_EQ(r["n_failed_samples"], 3);
    EXPECT_EQ(r["n_items"], 3);  // "bad" has no sample to score
    EXPECT_EQ(r["n_items_without_samples"], 1);
    EXPECT_NE(r["failures"][0].get<std::string>().find("bad prompt"), std::string::npos);
    // Scores follow the seeds the harness sent.
    for (const SampleRecord& rec : SampleStore(t.path().string()).samples()) {
        if (rec.item_id == "bad") continue;
        const int64_t sent = static_cast<int64_t>(rec.seed >> 1);
        EXPECT_DOUBLE_EQ(*rec.score, sent % 2 == 0 ? 1.0 : 0.0) << rec.item_id;
        EXPECT_EQ(rec.completion_tokens, 2);
    }
    EXPECT_NE(testutil::error_of([] {
                  make_openai_generator("openai:http://x/v1", 1);
              }).find("openai:BASE_URL#MODEL"),
              std::string::npos);
}

TEST(EvalHarness, ADeadEndpointStopsTheRun) {
    TempDir t;
    FakeEndpoint ep;
    std::vector<std::pair<std::string, std::string>> ids;
    for (size_t i = 0; i < 40; ++i) ids.push_back({"bad" + id_of(i), "1"});
    auto gen = make_openai_generator("openai:" + ep.server.base_url() + "#fake", 4);
    const std::string msg =
        testutil::error_of([&] { run_eval(items_of(ids), *gen, options_for(t.path(), 1)); });
    EXPECT_NE(msg.find("the first 16 samples all failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad prompt"), std::string::npos) << msg;
    // The failures are stored (and a re-run retries them); nothing after the 16th is.
    EXPECT_EQ(SampleStore(t.path().string()).samples().size(), 16u);
    EXPECT_LT(ep.total(), 40);
}

// ---- the CLI through the real binary ------------------------------------------------------------

int run_cli(const std::string& args, const fs::path& err) {
    const std::string cmd =
        std::string(CRUCIBLE_BINARY) + " " + args + " > /dev/null 2> " + err.string();
    return std::system(cmd.c_str());
}

TEST(EvalHarness, VerifyCli) {
    TempDir t;
    const fs::path in =
        t.write("v.jsonl", R"({"gold": "\\frac{1}{2}", "pred": "The answer is 0.5", "id": 1})"
                           "\n"
                           R"J({"gold": "B", "pred": "(C)", "verifier": "choice"})J"
                           "\n"
                           R"({"gold": 42, "pred": "42.0", "verifier": "numeric"})"
                           "\n");
    const fs::path out = t.path() / "o.jsonl";
    ASSERT_EQ(run_cli("verify --jsonl " + in.string() + " --out " + out.string(), t.path() / "err"),
              0)
        << testutil::slurp(t.path() / "err");
    std::ifstream f(out);
    std::vector<json> lines;
    for (std::string l; std::getline(f, l);) lines.push_back(json::parse(l));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0]["equal"], true);
    EXPECT_EQ(lines[0]["id"], 1);  // other fields are kept
    EXPECT_EQ(lines[1]["equal"], false);
    EXPECT_EQ(lines[2]["equal"], true);
    const fs::path bad = t.write("b.jsonl", R"({"gold": "1", "pred": "1"})"
                                            "\n"
                                            R"({"gold": "1"})"
                                            "\n");
    EXPECT_NE(run_cli("verify --jsonl " + bad.string(), t.path() / "err"), 0);
    EXPECT_NE(testutil::slurp(t.path() / "err").find("b.jsonl:2: needs field 'pred'"),
              std::string::npos);
    const fs::path unknown = t.write("u.jsonl", R"({"gold": "1", "pred": "1", "verifier": "llm"})"
                                                "\n");
    EXPECT_NE(run_cli("verify --jsonl " + unknown.string(), t.path() / "err"), 0);
    EXPECT_NE(testutil::slurp(t.path() / "err").find("u.jsonl:1: unknown verifier 'llm'"),
              std::string::npos);
}

TEST(EvalHarness, LocalModelCliResumesAndCompares) {
    TempDir t;
    testutil::write_byte_model(t.path() / "model", 128);
    const fs::path data =
        t.write("d.jsonl", R"({"id": "x", "prompt": "1+1=", "answer": "2"})"
                           "\n"
                           R"({"id": "y", "prompt": "2+2=", "answer": "4", "cluster": "c"})"
                           "\n"
                           R"({"id": "z", "messages": [{"role": "user", "content": "3+3="}],)"
                           R"( "answer": "6", "cluster": "c"})"
                           "\n"
                           R"({"id": "w", "prompt": "no answer"})"
                           "\n");
    const std::string base = "eval --model " + (t.path() / "model").string() + " --data " +
                             data.string() + " --max-tokens 6 --seed 5 --batch 4 --out ";
    const fs::path run = t.path() / "run";
    ASSERT_EQ(run_cli(base + run.string() + " --n 2", t.path() / "err"), 0)
        << testutil::slurp(t.path() / "err");
    std::map<std::pair<std::string, int>, std::string> first;
    for (const SampleRecord& r : SampleStore(run.string()).samples())
        first[{r.item_id, r.sample}] = r.completion;
    ASSERT_EQ(first.size(), 6u);
    ASSERT_EQ(run_cli(base + run.string() + " --n 4 --bootstrap 100", t.path() / "err"), 0)
        << testutil::slurp(t.path() / "err");
    const std::string log = testutil::slurp(t.path() / "err");
    EXPECT_NE(log.find("6 generated (0 failed), 6 already stored"), std::string::npos) << log;
    EXPECT_NE(log.find("d.jsonl:4: needs 'answer'"), std::string::npos) << log;
    EXPECT_NE(log.find("ETA"), std::string::npos) << log;
    const auto samples = SampleStore(run.string()).samples();
    ASSERT_EQ(samples.size(), 12u);
    for (const SampleRecord& r : samples) {
        if (r.sample < 2) {
            EXPECT_EQ(r.completion, (first[{r.item_id, r.sample}]));
        }
        EXPECT_GT(r.prompt_tokens, 0);
        EXPECT_GT(r.completion_tokens, 0);
        EXPECT_TRUE(r.score.has_value());
    }
    // An item's samples share one prefill (one request, a seed per sample) when they fall in
    // one batch; one sample per batch draws exactly the same completions.
    const fs::path single = t.path() / "single";
    ASSERT_EQ(run_cli("eval --model " + (t.path() / "model").string() + " --data " + data.string() +
                          " --max-tokens 6 --seed 5 --batch 1 --n 4 --out " + single.string(),
                      t.path() / "err"),
              0)
        << testutil::slurp(t.path() / "err");
    std::map<std::pair<std::string, int>, std::string> grouped;
    for (const SampleRecord& r : samples) grouped[{r.item_id, r.sample}] = r.completion;
    const auto alone = SampleStore(single.string()).samples();
    ASSERT_EQ(alone.size(), 12u);
    for (const SampleRecord& r : alone)
        EXPECT_EQ(r.completion, (grouped[{r.item_id, r.sample}])) << r.item_id << "#" << r.sample;
    const json results = json::parse(read_file(run / "results.json"));
    EXPECT_EQ(results["n_items"], 3);
    EXPECT_EQ(results["k"], 4);
    EXPECT_EQ(results["n_excluded_lines"], 1);
    EXPECT_TRUE(results["metrics"].contains("pass@4"));
    EXPECT_TRUE(results["metrics"]["avg@4"].contains("bootstrap"));
    EXPECT_EQ(results["metrics"]["avg@4"]["n_clusters"], 2);
    // The data file and a fingerprint of what it held (FNV-1a 64 of its bytes).
    EXPECT_EQ(results["settings"]["data"], data.string());
    EXPECT_EQ(results["settings"]["data_hash"], fnv1a64_hex(read_file(data)));
    // A second run with another seed, compared with the first, and a report of both.
    const fs::path run2 = t.path() / "run2";
    ASSERT_EQ(run_cli("eval --model " + (t.path() / "model").string() + " --data " + data.string() +
                          " --max-tokens 6 --seed 6 --n 2 --raw --out " + run2.string(),
                      t.path() / "err"),
              0)
        << testutil::slurp(t.path() / "err");
    ASSERT_EQ(run_cli("compare " + run.string() + " " + run2.string() + " --json " +
                          (t.path() / "c.json").string(),
                      t.path() / "err"),
              0)
        << testutil::slurp(t.path() / "err");
    const json c = json::parse(read_file(t.path() / "c.json"));
    EXPECT_EQ(c["n_items"], 3);
    EXPECT_TRUE(c["power"].contains("mde"));
    ASSERT_EQ(run_cli("report " + run.string() + " " + run2.string() + " --out " +
                          (t.path() / "r.html").string(),
                      t.path() / "err"),
              0);
    EXPECT_NE(read_file(t.path() / "r.html").find("<svg"), std::string::npos);
    // Changing the sampling settings of an existing run is refused, naming the setting.
    EXPECT_NE(run_cli(base + run.string() + " --n 4 --temperature 0.5", t.path() / "err"), 0);
    EXPECT_NE(testutil::slurp(t.path() / "err").find("temperature"), std::string::npos);
}

TEST(EvalHarness, EndpointCliAgainstInProcessServer) {
    TempDir t;
    FakeEndpoint ep;
    const fs::path data = t.write("d.jsonl", R"({"id": "a", "prompt": "question 7", "answer": "7"})"
                                             "\n"
                                             R"({"id": "b", "prompt": "question 8", "answer": "8"})"
                                             "\n");
    const fs::path run = t.path() / "run";
    ASSERT_EQ(run_cli("eval --model openai:" + ep.server.base_url() + "#fake --data " +
                          data.string() + " --n 4 --out " + run.string(),
                      t.path() / "err"),
              0)
        << testutil::slurp(t.path() / "err");
    EXPECT_EQ(ep.total(), 8);
    const json r = json::parse(read_file(run / "results.json"));
    EXPECT_EQ(r["n_samples"], 8);
    double want = 0;  // each sample is right when the seed sent was even
    for (const SampleRecord& rec : SampleStore(run.string()).samples())
        want += static_cast<int64_t>(rec.seed >> 1) % 2 == 0 ? 1.0 / 8 : 0.0;
    EXPECT_NEAR(r["metrics"]["avg@4"]["mean"].get<double>(), want, 1e-12);
}

// The harness end to end against `crucible serve` over real HTTP: the server is started as
// a child process on a free port (it prints the address), eval runs K = 2 then K = 3.
TEST(EvalHarness, AgainstCrucibleServe) {
    TempDir t;
    testutil::write_byte_model(t.path() / "model", 128);
    const fs::path log = t.path() / "serve.log";
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const std::string model = (t.path() / "model").string();
        FILE* f = std::freopen(log.c_str(), "w", stderr);
        (void)f;
        execl(CRUCIBLE_BINARY, CRUCIBLE_BINARY, "serve", "--model", model.c_str(), "--port", "0",
              "--served-model-name", "tiny", static_cast<char*>(nullptr));
        _exit(127);
    }
    std::string port;
    for (int i = 0; i < 600 && port.empty(); ++i) {  // up to a minute for the model to load
        const std::string text = testutil::slurp(log);
        const size_t at = text.find("127.0.0.1:");
        if (at != std::string::npos) {
            size_t e = at + 10;
            while (e < text.size() && std::isdigit(static_cast<unsigned char>(text[e]))) ++e;
            if (e < text.size()) port = text.substr(at + 10, e - at - 10);
        }
        if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (port.empty()) {  // never leave the server behind
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    ASSERT_FALSE(port.empty()) << testutil::slurp(log);
    const fs::path data = t.write("d.jsonl", R"({"id": "x", "prompt": "1+1=", "answer": "2"})"
                                             "\n"
                                             R"({"id": "y", "prompt": "2+2=", "answer": "4"})"
                                             "\n");
    const std::string base = "eval --model openai:http://127.0.0.1:" + port + "/v1#tiny --data " +
                             data.string() + " --max-tokens 4 --out " + (t.path() / "run").string();
    const int rc2 = run_cli(base + " --n 2", t.path() / "err");
    const std::string err2 = testutil::slurp(t.path() / "err");
    const int rc3 = run_cli(base + " --n 3", t.path() / "err");
    const std::string err3 = testutil::slurp(t.path() / "err");
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_EQ(rc2, 0) << err2;
    ASSERT_EQ(rc3, 0) << err3;
    EXPECT_NE(err3.find("2 generated (0 failed), 4 already stored"), std::string::npos) << err3;
    const auto samples = SampleStore((t.path() / "run").string()).samples();
    ASSERT_EQ(samples.size(), 6u);
    for (const SampleRecord& r : samples) {
        EXPECT_TRUE(r.error.empty()) << r.error;
        EXPECT_GT(r.prompt_tokens, 0);
        EXPECT_GT(r.completion_tokens, 0);
    }
}

// A server publishing a 64-token context and eval's --max-tokens 1024: every sample is capped
// to what fits after its prompt (the server counts the prompt and says so in its 400; the
// sample is sent again with the rest of the context), where it used to fail every sample.
TEST(EvalHarness, MaxTokensIsCappedByTheEndpointsPublishedContext) {
    TempDir t;
    testutil::write_byte_model(t.path() / "model", 64);
    ServerOptions so;
    so.model_dir = t.path() / "model";
    so.port = 0;
    so.served_model_name = "tiny";
    Server server(so);
    std::thread runner([&] { server.run(); });
    const std::string base = "openai:http://127.0.0.1:" + std::to_string(server.port()) + "/v1";
    std::vector<EvalItem> items(2);
    items[0].id = "raw";
    items[0].prompt = "2+2=";
    items[0].answer = "4";
    items[0].verifier = "exact";
    items[1].id = "chat";
    items[1].messages = {{"user", "What is 2+2?"}};
    items[1].answer = "4";
    items[1].verifier = "exact";
    auto gen = make_openai_generator(base + "#tiny", 4);
    EXPECT_EQ(gen->context(), 64);
    EvalOptions eo;
    eo.run_dir = (t.path() / "run").string();
    eo.k = 6;
    eo.sampling.max_tokens = 1024;
    eo.sampling.temperature = 1.0;
    run_eval(items, *gen, eo);
    // Another model's id on the same server publishes nothing for it: no cap, and the
    // request is refused as before (the server knows no such model).
    EXPECT_EQ(make_openai_generator(base + "#other", 1)->context(), 0);
    server.stop();
    runner.join();
    SampleStore store(eo.run_dir);
    EXPECT_EQ(store.settings().at("endpoint_context"), "64");
    const auto samples = store.samples();
    ASSERT_EQ(samples.size(), 12u);
    int at_the_limit = 0;
    for (const SampleRecord& r : samples) {
        EXPECT_TRUE(r.error.empty()) << r.error;
        EXPECT_GT(r.prompt_tokens, 0);
        // A random model rarely draws an end-of-sequence token: most samples run to the end
        // of the context, never past it.
        EXPECT_LE(r.prompt_tokens + r.completion_tokens, 64);
        if (r.finish_reason == "length") {
            EXPECT_EQ(r.prompt_tokens + r.completion_tokens, 64) << r.item_id;
            at_the_limit++;
        }
    }
    EXPECT_GE(at_the_limit, 1);
}

TEST(EvalHarness, TheReportCliShowsCompletionsOneClickAway) {
    TempDir t;
    const auto items = items_of({{"a", "1"}, {"b", "2"}});
    TableGenerator gen;
    gen.table["a"] = {"\\boxed{1} <because>"};
    gen.table["b"] = {"\\boxed{3}"};
    run_eval(items, gen, options_for(t.path() / "r", 1));
    const fs::path out = t.path() / "report.html";
    ASSERT_EQ(
        run_cli("report " + (t.path() / "r").string() + " --out " + out.string(), t.path() / "err"),
        0)
        << testutil::slurp(t.path() / "err");
    const std::string html = testutil::slurp(out);
    for (const char* part :
         {"Completions of r", "<details><summary>", "\\boxed{1} &lt;because&gt;", "\\boxed{3}"})
        EXPECT_NE(html.find(part), std::string::npos) << part;
}

}  // namespace
}  // namespace crucible::eval
