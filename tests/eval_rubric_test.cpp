// Rubric items in the eval harness: dataset parsing and its errors, programmatic criteria end to
// end with a scripted generator against scores worked by hand in the comments (HealthBench
// aggregation with a negative pitfall, weighted_mean, per-tag figures), the LLM judge over real
// HTTP against a scripted judge server (a judge failure marks the sample failed and a re-run
// retries it), an old samples.sqlite without the rubric columns, and Cohen's kappa of two
// scripted judges through `crucible eval --judge-b` against a hand-computed value.
// No assertion depends on wall time.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/file_io.h"
#include "core/sqlite.h"
#include "eval/dataset.h"
#include "eval/harness.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "eval/sample_store.h"
#include "http_test_server.h"
#include "reward/rubric_format.h"
#include "reward/rubric_scorer.h"
#include "table_generator.h"
#include "test_util.h"

namespace crucible::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::between;
using testutil::TableGenerator;
using testutil::TempDir;
using testutil::TestServer;

EvalOptions options_for(const fs::path& dir, int k, const reward::RubricScorer* scorer) {
    EvalOptions o;
    o.run_dir = dir.string();
    o.k = k;
    o.sampling.seed = 3;
    o.rubric_scorer = scorer;
    return o;
}

double num(const json& j) {
    return j.is_number() ? j.get<double>() : std::nan("");
}

// ---- the dataset --------------------------------------------------------------------------------

TEST(EvalRubric, DatasetParsesRubricItemsAndExcludesBadOnes) {
    TempDir t;
    const fs::path p = t.write(
        "d.jsonl",
        // 1: a native rubric, no answer; a raw prompt stays a raw prompt.
        R"({"id": "r1", "prompt": "Say hi", "rubric": [{"kind": "contains", "value": "hi", "points": 1}]})"
        "\n"
        // 2: HealthBench's shape: prompt_id, prompt as messages, rubrics, example_tags.
        R"({"prompt_id": "hb", "prompt": [{"role": "user", "content": "Headache?"}], "rubrics": [{"criterion": "Suggests rest", "points": 5, "tags": ["axis:completeness"]}], "example_tags": ["theme:home"]})"
        "\n"
        // 3: an invalid regex.
        R"({"id": "bad", "prompt": "p", "rubric": [{"kind": "regex", "pattern": "[", "points": 1}]})"
        "\n"
        // 4: no positive points.
        R"({"id": "neg", "prompt": "p", "rubric": [{"criterion": "x", "points": -1}]})"
        "\n"
        // 5: an unknown kind in the second criterion.
        R"({"id": "kind", "prompt": "p", "rubric": [{"criterion": "x", "points": 1}, {"criterion": "y", "kind": "vibes", "points": 1}]})"
        "\n"
        // 6: a rubric and another verifier.
        R"({"id": "both", "prompt": "p", "verifier": "math", "answer": "1", "rubric": ["Is it 1?"]})"
        "\n"
        // 7: verifier rubric without a rubric.
        R"({"id": "none", "prompt": "p", "verifier": "rubric"})"
        "\n"
        // 8: an RLCF checklist string, a numeric answer, a cluster, weighted_mean.
        R"J({"id": 8, "question": "6*7?", "answer": 42, "checklist": "1. Is the answer 42? (100)", "aggregation": "weighted_mean", "cluster": "c1"})J"
        "\n");
    const Dataset d = load_dataset(p.string());
    ASSERT_EQ(d.items.size(), 3u);
    const EvalItem& r1 = d.items[0];
    EXPECT_EQ(r1.id, "r1");
    EXPECT_EQ(r1.verifier, "rubric");
    ASSERT_TRUE(r1.is_rubric());
    EXPECT_EQ(r1.prompt, "Say hi");
    EXPECT_FALSE(r1.is_chat());
    EXPECT_EQ(r1.answer, "");
    EXPECT_EQ(r1.rubric->id, "r1");
    const EvalItem& hb = d.items[1];
    EXPECT_EQ(hb.id, "hb");
    ASSERT_TRUE(hb.is_chat());
    EXPECT_EQ(hb.messages[0].second, "Headache?");
    EXPECT_EQ(hb.rubric->tags, std::vector<std::string>{"theme:home"});
    EXPECT_EQ(hb.rubric->rubric.criteria[0].tags, std::vector<std::string>{"axis:completeness"});
    const EvalItem& rl = d.items[2];
    EXPECT_EQ(rl.id, "8");
    EXPECT_EQ(rl.prompt, "6*7?");
    EXPECT_EQ(rl.answer, "42");
    EXPECT_EQ(rl.cluster, "c1");
    EXPECT_EQ(rl.rubric->rubric.aggregation, reward::Aggregation::weighted_mean);
    EXPECT_EQ(rl.rubric->rubric.criteria[0].points, 100);

    ASSERT_EQ(d.excluded.size(), 5u);
    const auto has = [&](size_t i, const std::string& text) {
        EXPECT_NE(d.excluded[i].find(text), std::string::npos) << d.excluded[i];
    };
    // The reason names the file, line, item and criterion, as parse_rubric_item's message does.
    has(0, "d.jsonl:3: item 'bad': criterion 0 field 'pattern': invalid regular expression '['");
    has(1, "d.jsonl:4: item 'neg': rubric: no criterion has positive points");
    has(2, "d.jsonl:5: item 'kind': criterion 1");
    has(2, "unknown criterion kind 'vibes'");
    has(3, "d.jsonl:6: item 'both' has a rubric");
    has(4, "d.jsonl:7: verifier 'rubric' needs a 'rubric'");
}

// ---- programmatic criteria end to end
// -------------------------------------------------------------

// Three items, K = 2, programmatic criteria only (no judge).
//
// "hb" (healthbench; positive points 5 + 3 = 8; example tag theme:home):
//   rest    contains "rest"        +5  axis:completeness
//   water   contains "water"       +3  axis:accuracy
//   unsafe  contains "double dose" -4  axis:accuracy   (a pitfall)
//   sample 0 "Rest and drink water."          rest, water       (5 + 3) / 8 = 1
//   sample 1 "Rest, and take a double dose."  rest, unsafe      (5 - 4) / 8 = 0.125
//   item mean 0.5625, mean raw 0.5625
// "neg" (healthbench; positive points 2):
//   a    contains "alpha"  +2  axis:completeness
//   pit  contains "bad"    -6  axis:accuracy
//   sample 0 "bad idea"    pit only     raw (0 - 6) / 2 = -3, score clip = 0
//   sample 1 "alpha"       a only       raw 2 / 2 = 1, score 1
//   item mean 0.5, mean raw -1
// "wm" (weighted_mean): x regex ^\d+$ weight 3; y length <= 3 words weight 1
//   sample 0 "42"                        both met     4 / 4 = 1
//   sample 1 "forty two is the answer"   neither      0
//   item mean 0.5
//
// Mean rubric score = (0.5625 + 0.5 + 0.5) / 3 = 0.5208333 = 25/48; SE over items:
//   deviations 1/24, -1/48, -1/48; sum of squares 1/576 + 2/2304 = 1/384;
//   SE = sqrt(1/384 / (3 * 2)) = sqrt(1/2304) = 1/48.
// HealthBench overall = clip(mean of per-item mean raws) = clip((0.5625 - 1 + 0.5) / 3)
//   = 0.0625 / 3 = 1/48: the pitfall of "neg" pulls it far below the clipped mean.
// Per tag (each item's tag score averaged over its samples, then over items):
//   axis:completeness: hb rest met in both: 5/5 = 1; neg a: 0 then 1: 0.5.  mean 0.75,
//                      SE = sqrt((0.25^2 + 0.25^2) / (2 * 1)) = 0.25
//   axis:accuracy:     hb: s0 water 3/3 = 1, s1 (0 - 4)/3 clipped 0: 0.5; neg has no positive
//                      accuracy points, so it is left out.  mean 0.5 over 1 item (SE null)
//   theme:home:        hb's item score 0.5625
// pass@k counts full credit (score 1) as correct: each item has one of two samples at 1:
//   pass@1 = 0.5, pass@2 = 1.
TEST(EvalRubric, ProgrammaticCriteriaEndToEndMatchHandComputation) {
    TempDir t;
    const fs::path data =
        t.write("d.jsonl",
                R"({"id": "hb", "prompt": "Headache?", "example_tags": ["theme:home"], "rubric": [
  {"id": "rest", "kind": "contains", "value": "rest", "points": 5, "tags": ["axis:completeness"]},
  {"id": "water", "kind": "contains", "value": "water", "points": 3, "tags": ["axis:accuracy"]},
  {"id": "unsafe", "kind": "contains", "value": "double dose", "points": -4, "tags": ["axis:accuracy"]}]}
{"id": "neg", "prompt": "Idea?", "rubric": [
  {"id": "a", "kind": "contains", "value": "alpha", "points": 2, "tags": ["axis:completeness"]},
  {"id": "pit", "kind": "contains", "value": "bad", "points": -6, "tags": ["axis:accuracy"]}]}
{"id": "wm", "prompt": "6*7?", "aggregation": "weighted_mean", "rubric": [
  {"id": "x", "kind": "regex", "pattern": "^\\d+$", "weight": 3},
  {"id": "y", "kind": "length", "max": 3, "weight": 1}]}
)");
    // JSONL wants one object a line: join the pretty-printed objects.
    std::string text = testutil::slurp(data), joined;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && i + 1 < text.size() && text[i + 1] == ' ') continue;
        joined += text[i];
    }
    t.write("d.jsonl", joined);
    const Dataset d = load_dataset(data.string());
    ASSERT_EQ(d.items.size(), 3u) << (d.excluded.empty() ? "" : d.excluded[0]);

    TableGenerator gen;
    gen.table["hb"] = {"Rest and drink water.", "Rest, and take a double dose."};
    gen.table["neg"] = {"bad idea", "alpha"};
    gen.table["wm"] = {"42", "forty two is the answer"};
    const auto scorer = reward::make_rubric_scorer({});  // no judge
    const EvalSummary s = run_eval(d.items, gen, options_for(t.path() / "run", 2, scorer.get()));
    EXPECT_EQ(s.generated, 6);
    EXPECT_EQ(s.failed, 0);

    // The per-criterion results are stored with each sample.
    std::map<std::pair<std::string, int>, json> stored;
    for (const SampleRecord& r : SampleStore((t.path() / "run").string()).samples())
        stored[{r.item_id, r.sample}] = json::parse(r.rubric);
    ASSERT_EQ(stored.size(), 6u);
    const json& hb1 = stored[{"hb", 1}];
    EXPECT_DOUBLE_EQ(hb1["score"].get<double>(), 0.125);
    EXPECT_EQ(hb1["criteria"][0]["met"], 1.0);  // rest
    EXPECT_EQ(hb1["criteria"][1]["met"], 0.0);  // water
    EXPECT_EQ(hb1["criteria"][2]["met"], 1.0);  // unsafe
    const json& neg0 = stored[{"neg", 0}];
    EXPECT_DOUBLE_EQ(neg0["raw"].get<double>(), -3.0);
    EXPECT_DOUBLE_EQ(neg0["score"].get<double>(), 0.0);

    // Everything below is recomputed from samples.sqlite alone.
    const json r = compute_results(load_run((t.path() / "run").string()));
    const json& rb = r.at("rubric");
    EXPECT_NEAR(num(rb["overall"]["mean"]), 25.0 / 48, 1e-12);
    EXPECT_NEAR(num(rb["overall"]["se"]), 1.0 / 48, 1e-12);
    EXPECT_NEAR(num(rb["overall"]["ci_normal"][0]), 25.0 / 48 - 1.959964 / 48, 1e-6);
    EXPECT_NEAR(num(rb["healthbench_overall"]), 1.0 / 48, 1e-12);
    EXPECT_EQ(rb["n_items"], 3);
    EXPECT_EQ(rb["n_samples"], 6);
    EXPECT_EQ(rb["n_failed_samples"], 0);
    EXPECT_NEAR(num(rb["by_tag"]["axis:completeness"]["mean"]), 0.75, 1e-12);
    EXPECT_NEAR(num(rb["by_tag"]["axis:completeness"]["se"]), 0.25, 1e-12);
    EXPECT_EQ(rb["by_tag"]["axis:completeness"]["n"], 2);
    EXPECT_NEAR(num(rb["by_tag"]["axis:accuracy"]["mean"]), 0.5, 1e-12);
    EXPECT_EQ(rb["by_tag"]["axis:accuracy"]["n"], 1);
    EXPECT_TRUE(rb["by_tag"]["axis:accuracy"]["se"].is_null());
    EXPECT_NEAR(num(rb["by_tag"]["theme:home"]["mean"]), 0.5625, 1e-12);

    // The HTML report's rubric panel shows the same figures, in %.
    const std::string html = report_html({r});
    EXPECT_NE(html.find("<h2>Rubric scores</h2>"), std::string::npos);
    EXPECT_NE(html.find("<td>52.08</td><td>2.08</td>"), std::string::npos);  // 25/48, 1/48
    EXPECT_NE(html.find("none (programmatic criteria only)"), std::string::npos);
    EXPECT_NE(html.find("<td class=\"l\">axis:completeness</td><td>75.00 &plusmn; 25.00 (2)"),
              std::string::npos);
    EXPECT_NE(html.find("<td class=\"l\">axis:accuracy</td><td>50.00 (1)"), std::string::npos);
    EXPECT_EQ(rb["judge"]["endpoint"], "");
    // avg@K is the same mean with the same item SE; pass@k counts full credit.
    EXPECT_NEAR(num(r["metrics"]["avg@2"]["mean"]), 25.0 / 48, 1e-12);
    EXPECT_NEAR(num(r["metrics"]["avg@2"]["se_item"]), 1.0 / 48, 1e-12);
    EXPECT_NEAR(num(r["metrics"]["pass@1"]["mean"]), 0.5, 1e-12);
    EXPECT_NEAR(num(r["metrics"]["pass@2"]["mean"]), 1.0, 1e-12);
    EXPECT_FALSE(r["metrics"].contains("maj@2"));
    EXPECT_TRUE(r["metrics_omitted"].contains("maj@2"));
    const std::string table = results_table(r);
    EXPECT_NE(table.find("healthbench overall"), std::string::npos) << table;
    EXPECT_NE(table.find("axis:completeness"), std::string::npos) << table;
    EXPECT_NE(table.find("52.08"), std::string::npos) << table;

    // A rubric item without a scorer is refused before anything is generated.
    EXPECT_NE(testutil::error_of([&] {
                  run_eval(d.items, gen, options_for(t.path() / "run2", 1, nullptr));
              }).find("no rubric scorer"),
              std::string::npos);
}

// A run killed mid-way keeps the samples it generated, scored (the scoring thread finishes
// what was queued before the exception leaves run_eval), and a re-run adds only the rest.
TEST(EvalRubric, KilledRunKeepsScoredSamplesAndResumes) {
    TempDir t;
    std::vector<EvalItem> items;
    for (const char* id : {"a", "b", "c"}) {
        EvalItem it;
        it.id = id;
        it.prompt = "p";
        it.verifier = "rubric";
        auto r = std::make_shared<reward::RubricItem>();
        r->id = id;
        r->rubric = reward::parse_rubric(
            json::parse(R"([{"kind": "contains", "value": "yes", "points": 1}])"), {});
        it.rubric = r;
        items.push_back(it);
    }
    TableGenerator gen;
    for (const auto& it : items) gen.table[it.id] = {"yes", "no"};
    gen.kill_after = 4;
    const auto scorer = reward::make_rubric_scorer({});
    const fs::path run = t.path() / "run";
    EXPECT_THROW(run_eval(items, gen, options_for(run, 2, scorer.get())), std::runtime_error);
    auto samples = SampleStore(run.string()).samples();
    ASSERT_EQ(samples.size(), 4u);
    for (const SampleRecord& r : samples) {
        ASSERT_TRUE(r.score.has_value()) << r.item_id << r.error;
        EXPECT_EQ(*r.score, r.sample == 0 ? 1.0 : 0.0);
        EXPECT_FALSE(r.rubric.empty());
    }
    gen.kill_after = -1;
    gen.asked.clear();
    const EvalSummary s = run_eval(items, gen, options_for(run, 2, scorer.get()));
    EXPECT_EQ(s.generated, 2);
    EXPECT_EQ(gen.asked, (std::vector<std::pair<std::string, int>>{{"c", 0}, {"c", 1}}));
    const json r = compute_results(load_run(run.string()));
    EXPECT_NEAR(num(r["rubric"]["overall"]["mean"]), 0.5, 1e-12);
    EXPECT_EQ(r["rubric"]["n_samples"], 6);
}

// ---- the judge over HTTP
// --------------------------------------------------------------------------

// One scripted OpenAI-compatible chat endpoint for the generator and the judges, told apart by
// the request's model:
//  - "gen": answers with `completion` (the same text for every prompt);
//  - any other model judges one criterion (per-criterion mode): model "judge-b" finds a
//    criterion met when its text contains "[b]", every other judge when it contains "[yes]";
//    a judge request whose response contains `fail_marker` gets HTTP 500.
class ScriptedServer {
  public:
    std::string completion = "Rest and drink water.";
    std::string fail_marker;  // guarded by mutex_

    ScriptedServer() {
        server_.http().Post(
            "/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    }
    std::string url() const { return server_.base_url(); }
    int requests(const std::string& model) {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_[model];
    }
    void set_fail_marker(const std::string& m) {
        std::lock_guard<std::mutex> lock(mutex_);
        fail_marker = m;
    }

  private:
    void handle(const httplib::Request& req, httplib::Response& res) {
        const json body = json::parse(req.body);
        const std::string model = body.value("model", "");
        std::string marker;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++requests_[model];
            marker = fail_marker;
        }
        std::string content;
        if (model == "gen") {
            content = completion;
        } else {
            const std::string user = body["messages"][1]["content"].get<std::string>();
            if (!marker.empty() && user.find(marker) != std::string::npos) {
                res.status = 500;
                res.set_content(R"({"error": {"message": "scripted failure", "type": "x"}})",
                                "application/json");
                return;
            }
            const std::string criterion = between(user, "Rubric criterion [", "\n\nReply");
            const std::string needle = model == "judge-b" ? "[b]" : "[yes]";
            content = json{{"explanation", "checked"},
                           {"criteria_met", criterion.find(needle) != std::string::npos}}
                          .dump();
        }
        const json out{
            {"id", "chatcmpl-1"},
            {"object", "chat.completion"},
            {"model", model},
            {"choices",
             {{{"index", 0},
               {"message", {{"role", "assistant"}, {"content", content}}},
               {"finish_reason", "stop"}}}},
            {"usage", {{"prompt_tokens", 100}, {"completion_tokens", 10}, {"total_tokens", 110}}}};
        res.set_content(out.dump(), "application/json");
    }

    TestServer server_;
    std::mutex mutex_;
    std::map<std::string, int> requests_;
};

// Two items with the same rubric: "[yes] Suggests rest" +5 (judge: met), "Mentions dosage
// limits" +3 (judge: not met), contains "water" +2 (met): (5 + 2) / 10 = 0.7.
// Run 1: every judge request about item j2's response ("FAILME ...") gets HTTP 500, so j2's
// sample fails with the reason while j1's is scored and the run goes on. Run 2 (the failure
// gone) judges j2's stored completion again, without regenerating it.
TEST(EvalRubric, JudgeFailureMarksTheSampleAndARerunRetriesIt) {
    TempDir t;
    ScriptedServer server;
    server.set_fail_marker("FAILME");
    const std::string rubric =
        R"([{"id": "a", "criterion": "[yes] Suggests rest", "points": 5},)"
        R"( {"id": "b", "criterion": "Mentions dosage limits", "points": 3},)"
        R"( {"id": "w", "kind": "contains", "value": "water", "points": 2}])";
    const fs::path data = t.write(
        "d.jsonl", R"({"id": "j1", "prompt": "Headache?", "rubric": )" + rubric + "}\n" +
                       R"({"id": "j2", "prompt": "Migraine?", "rubric": )" + rubric + "}\n");
    const Dataset d = load_dataset(data.string());
    ASSERT_EQ(d.items.size(), 2u);
    TableGenerator gen;
    gen.table["j1"] = {"Rest and drink water."};
    gen.table["j2"] = {"FAILME: rest and drink water."};
    reward::RubricScorerConfig config;
    config.judge = "openai:" + server.url() + "#judge-a";
    config.retries = 0;
    config.timeout_s = 10;
    config.cache = (t.path() / "judge_cache.sqlite").string();
    config.price_in = 1;
    config.price_out = 1;
    const auto scorer = reward::make_rubric_scorer(config);
    const fs::path run = t.path() / "run";

    EvalSummary s = run_eval(d.items, gen, options_for(run, 1, scorer.get()));
    EXPECT_EQ(s.generated, 2);
    EXPECT_EQ(s.failed, 1);
    EXPECT_EQ(s.rubric_failed, 1);
    EXPECT_EQ(server.requests("judge-a"), 4);  // two judge criteria per item
    json r = compute_results(load_run(run.string()));
    EXPECT_EQ(r["n_failed_samples"], 1);
    EXPECT_EQ(r["n_items"], 1);
    const std::string failure = r["failures"][0].get<std::string>();
    EXPECT_NE(failure.find("j2#0: rubric: criterion 'a'"), std::string::npos) << failure;
    EXPECT_NE(failure.find("scripted failure"), std::string::npos) << failure;
    EXPECT_NEAR(num(r["rubric"]["overall"]["mean"]), 0.7, 1e-12);
    EXPECT_EQ(r["rubric"]["n_failed"], 1);  // j2 has no scored sample yet

    server.set_fail_marker("");
    gen.asked.clear();
    gen.table["j2"] = {"a different answer"};  // would change the score if it were regenerated
    s = run_eval(d.items, gen, options_for(run, 1, scorer.get()));
    EXPECT_TRUE(gen.asked.empty());
    EXPECT_EQ(s.generated, 0);
    EXPECT_EQ(s.rejudged, 1);
    EXPECT_EQ(s.skipped, 1);
    EXPECT_EQ(s.failed, 0);
    EXPECT_EQ(server.requests("judge-a"), 6);  // j2's two criteria again; j1 untouched
    r = compute_results(load_run(run.string()));
    EXPECT_EQ(r["n_failed_samples"], 0);
    EXPECT_NEAR(num(r["rubric"]["overall"]["mean"]), 0.7, 1e-12);
    EXPECT_NEAR(num(r["rubric"]["overall"]["se"]), 0.0, 1e-12);
    // The run's judge totals add up over both calls: 6 requests, of which 4 answered with
    // 100 prompt and 10 completion tokens at $1 per 1M each.
    const json& judge = r["rubric"]["judge"];
    EXPECT_EQ(judge["judge_requests"], 6);
    EXPECT_EQ(judge["judge_failures"], 2);
    EXPECT_EQ(judge["judge_prompt_tokens"], 400);
    EXPECT_EQ(judge["judge_completion_tokens"], 40);
    EXPECT_NEAR(num(judge["judge_cost_usd"]), 440 / 1e6, 1e-12);
    const SampleRecord j2 = SampleStore(run.string()).samples()[1];
    EXPECT_EQ(j2.item_id, "j2");
    EXPECT_EQ(j2.completion, "FAILME: rest and drink water.");  // the first run's completion
    const json sample = json::parse(j2.rubric);
    EXPECT_EQ(sample["criteria"][0]["explanation"], "checked");
    EXPECT_EQ(sample["criteria"][0]["votes"], 1);
}

// ---- an old store -------------------------------------------------------------------------------

TEST(EvalRubric, OldSamplesSqliteWithoutRubricColumnsOpens) {
    TempDir t;
    const fs::path run = t.path() / "run";
    fs::create_directories(run);
    {
        // The schema as it was before rubric items.
        SqliteDb db((run / "samples.sqlite").string());
        db.exec(
            "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE items(ord INTEGER NOT NULL, id TEXT PRIMARY KEY,"
            " answer TEXT NOT NULL, verifier TEXT NOT NULL, cluster TEXT NOT NULL);"
            "CREATE TABLE samples(item_id TEXT NOT NULL, sample INTEGER NOT NULL,"
            " seed INTEGER NOT NULL, prompt TEXT NOT NULL, completion TEXT NOT NULL,"
            " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
            " finish_reason TEXT NOT NULL, score REAL, answer TEXT NOT NULL,"
            " latency_s REAL NOT NULL, error TEXT NOT NULL, PRIMARY KEY(item_id, sample));"
            "INSERT INTO settings VALUES('k', '1');"
            "INSERT INTO settings VALUES('model', 'old');"
            "INSERT INTO items VALUES(0, 'q1', '3', 'math', '');"
            "INSERT INTO samples VALUES('q1', 0, 7, 'p', '\\boxed{3}', 1, 2, 'stop', 1.0, '3',"
            " 0.5, '');");
    }
    {
        SampleStore store(run.string());
        const auto samples = store.samples();
        ASSERT_EQ(samples.size(), 1u);
        EXPECT_EQ(samples[0].completion, "\\boxed{3}");
        EXPECT_EQ(samples[0].rubric, "");
        const auto items = store.items();
        ASSERT_EQ(items.size(), 1u);
        EXPECT_FALSE(items[0].is_rubric());
    }
    const json r = compute_results(load_run(run.string()));
    EXPECT_EQ(r["model"], "old");
    EXPECT_NEAR(num(r["metrics"]["avg@1"]["mean"]), 1.0, 1e-12);
    EXPECT_FALSE(r.contains("rubric"));
    EXPECT_TRUE(r["metrics"].contains("maj@1"));
    // The columns were added, and the old store takes rubric samples now.
    SqliteDb db((run / "samples.sqlite").string());
    auto st = db.prepare("SELECT count(*) FROM pragma_table_info('samples') WHERE name = 'rubric'");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.column_int(0), 1);
}

// ---- two judges through the CLI
// ------------------------------------------------------------------

int run_cli(const std::string& args, const fs::path& out, const fs::path& err) {
    const std::string cmd =
        std::string(CRUCIBLE_BINARY) + " " + args + " > " + out.string() + " 2> " + err.string();
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Judge A finds a criterion met when its text has "[yes]", judge B when it has "[b]":
//   item k1: c1 "[yes][b]" both met, c2 "[yes]" A only, c3 neither
//   item k2: c1 "[b]" B only, c2 "[yes][b]" both met, c3 neither
// Per sample: both met 2, A only 1, B only 1, both unmet 2; with K = 2 samples per item, twice
// that: n = 12, both met 4, only A 2, only B 2, both unmet 4.
//   p_o = 8/12 = 2/3; p_A = p_B = 6/12 = 1/2; p_e = 1/2 * 1/2 + 1/2 * 1/2 = 1/2;
//   kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
// Scores: judge A meets k1 {c1, c2} = 2/3 and k2 {c2} = 1/3 -> mean 1/2; judge B meets k1 {c1}
// = 1/3 and k2 {c1, c2} = 2/3 -> mean 1/2.
TEST(EvalRubric, TwoJudgesAgreementThroughTheCli) {
    TempDir t;
    ScriptedServer server;
    const fs::path data =
        t.write("d.jsonl",
                R"({"id": "k1", "prompt": "q1", "rubric": ["[yes][b] One", "[yes] Two", "Three"]})"
                "\n"
                R"({"id": "k2", "prompt": "q2", "rubric": ["[b] One", "[yes][b] Two", "Three"]})"
                "\n");
    const fs::path run = t.path() / "run";
    const std::string args = "eval --model openai:" + server.url() + "#gen --data " +
                             data.string() + " --n 2 --judge openai:" + server.url() +
                             "#judge-a --judge-b openai:" + server.url() +
                             "#judge-b --judge-retries 0 --out " + run.string();
    ASSERT_EQ(run_cli(args, t.path() / "out", t.path() / "err"), 0)
        << testutil::slurp(t.path() / "err");
    const json r = json::parse(read_file(run / "results.json"));
    const json& rb = r.at("rubric");
    EXPECT_NEAR(num(rb["overall"]["mean"]), 0.5, 1e-12);
    EXPECT_NEAR(num(rb["judge_b_overall"]["mean"]), 0.5, 1e-12);
    const json& a = rb.at("agreement");
    EXPECT_EQ(a["n"], 12);
    EXPECT_EQ(a["n_samples"], 4);
    EXPECT_EQ(a["both_met"], 4);
    EXPECT_EQ(a["only_a"], 2);
    EXPECT_EQ(a["only_b"], 2);
    EXPECT_EQ(a["both_unmet"], 4);
    EXPECT_NEAR(num(a["percent_agreement"]), 2.0 / 3, 1e-12);
    EXPECT_NEAR(num(a["cohen_kappa"]), 1.0 / 3, 1e-12);
    EXPECT_EQ(rb["judge"]["endpoint"], "openai:" + server.url() + "#judge-a");
    EXPECT_EQ(rb["judge_b"]["endpoint"], "openai:" + server.url() + "#judge-b");
    // Both samples of an item have the same response, so the second one's judgements come
    // from the judge cache (RUN_DIR/judge_cache.sqlite by default): 6 requests per judge.
    EXPECT_EQ(server.requests("judge-a"), 6);
    EXPECT_EQ(server.requests("judge-b"), 6);
    EXPECT_EQ(rb["judge"]["judge_requests"], 6);
    EXPECT_EQ(rb["judge"]["judge_cache_hits"], 6);
    EXPECT_TRUE(fs::exists(run / "judge_cache.sqlite"));
    const std::string table = testutil::slurp(t.path() / "out");
    EXPECT_NE(table.find("Cohen's kappa 0.333"), std::string::npos) << table;

    // A larger K: judge B scores only the new samples, all from the cache.
    const std::string args3 = "eval --model openai:" + server.url() + "#gen --data " +
                              data.string() + " --n 3 --judge openai:" + server.url() +
                              "#judge-a --judge-b openai:" + server.url() +
                              "#judge-b --judge-retries 0 --out " + run.string();
    ASSERT_EQ(run_cli(args3, t.path() / "out", t.path() / "err"), 0)
        << testutil::slurp(t.path() / "err");
    EXPECT_NE(testutil::slurp(t.path() / "err").find("second judge scored 2 samples (0 failed)"),
              std::string::npos)
        << testutil::slurp(t.path() / "err");
    EXPECT_EQ(server.requests("judge-b"), 6);
    const json r3 = json::parse(read_file(run / "results.json"));
    EXPECT_EQ(r3["rubric"]["agreement"]["n"], 18);
    EXPECT_NEAR(num(r3["rubric"]["agreement"]["cohen_kappa"]), 1.0 / 3, 1e-12);

    // A rubric with judge criteria and no --judge is refused before anything is generated.
    EXPECT_NE(run_cli("eval --model openai:" + server.url() + "#gen --data " + data.string() +
                          " --out " + (t.path() / "run2").string(),
                      t.path() / "out", t.path() / "err"),
              0);
    EXPECT_NE(testutil::slurp(t.path() / "err").find("pass --judge"), std::string::npos)
        << testutil::slurp(t.path() / "err");
}

}  // namespace
}  // namespace crucible::eval
