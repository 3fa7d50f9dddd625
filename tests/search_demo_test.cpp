// `crucible demo search`: its knowledge base (deterministic, unique names, answers that are in
// the documents, splits that never share an entity, a search tool that finds every entity by
// name), the chance rate worked by hand, and a shortened run of the whole demo (the real one
// is a benchmark: docs/PERFORMANCE.md) whose data, results and report are checked.
#include "demo/search_demo.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "demo/search_kb.h"
#include "env/search_env.h"
#include "env/search_index.h"
#include "eval/results.h"
#include "eval/statistics.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rl::KbEntity;
using rl::SearchKb;
using testutil::TempDir;

std::vector<json> read_jsonl(const fs::path& path) {
    std::ifstream in(path);
    std::vector<json> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) lines.push_back(json::parse(line));
    }
    return lines;
}

TEST(SearchKb, DeterministicUniqueAndSplitThreeWays) {
    const SearchKb a = rl::make_search_kb(400, 7);
    const SearchKb b = rl::make_search_kb(400, 7);
    const SearchKb c = rl::make_search_kb(400, 8);
    ASSERT_EQ(a.entities.size(), 400u);
    EXPECT_EQ(a.sft_end, 200u);
    EXPECT_EQ(a.rl_end, 300u);
    std::set<std::string> names;
    for (size_t i = 0; i < a.entities.size(); i++) {
        EXPECT_EQ(a.entities[i].name, b.entities[i].name);
        EXPECT_EQ(a.entities[i].city, b.entities[i].city);
        names.insert(a.entities[i].name);
        EXPECT_GE(a.entities[i].number, 1);
        EXPECT_LE(a.entities[i].number, 99);
    }
    EXPECT_EQ(names.size(), 400u);  // unique
    int same = 0;
    for (size_t i = 0; i < 400; i++) same += a.entities[i].name == c.entities[i].name;
    EXPECT_LT(same, 40);  // another seed, another knowledge base
    EXPECT_THROW(rl::make_search_kb(2, 1), Error);
}

TEST(SearchKb, QuestionsAreAnsweredByTheirDocumentAndChanceIsWorkedByHand) {
    KbEntity e{"e0003", "Raquoka", "teal", "Thafe", 17};
    EXPECT_EQ(json::parse(rl::kb_document_jsonl(e)),
              (json{{"id", "e0003"},
                    {"title", "Raquoka"},
                    {"text", "color teal, city Thafe, number 17."}}));
    const rl::KbQuestion q = rl::kb_question(e, "number");
    EXPECT_EQ(q.id, "e0003:number");
    EXPECT_EQ(q.entity_id, "e0003");
    EXPECT_EQ(q.prompt, "Q: number of Raquoka?\n");
    EXPECT_EQ(q.answer, "17");
    EXPECT_EQ(rl::kb_question(e, "color").answer, "teal");
    EXPECT_EQ(rl::kb_question(e, "city").answer, "Thafe");
    EXPECT_THROW(rl::kb_question(e, "height"), Error);
    // 10 colors, 20 cities, 99 numbers.
    const std::vector<rl::KbQuestion> qs = {rl::kb_question(e, "color"), rl::kb_question(e, "city"),
                                            rl::kb_question(e, "number")};
    EXPECT_DOUBLE_EQ(rl::kb_chance(qs), (0.1 + 0.05 + 1.0 / 99) / 3);
}

TEST(SearchKb, TheSearchToolFindsEveryEntityByItsName) {
    TempDir tmp;
    const SearchKb kb = rl::make_search_kb(300, 3);
    std::string docs;
    for (const KbEntity& e : kb.entities) docs += rl::kb_document_jsonl(e);
    const fs::path dir = tmp.path() / "index";
    build_search_index(tmp.write("docs.jsonl", docs), dir);
    const SearchIndex index = SearchIndex::open(dir);
    for (const KbEntity& e : kb.entities) {
        const std::vector<SearchHit> hits = index.search(e.name, 1);
        ASSERT_EQ(hits.size(), 1u) << e.name;
        EXPECT_EQ(hits[0].id, e.id) << e.name;
    }
}

TEST(SearchDemo, AShortRunWritesItsDataResultsAndReport) {
    TempDir tmp;
    rl::SearchDemoOptions o;
    o.out_dir = (tmp.path() / "demo").string();
    o.entities = 40;  // 20 SFT, 10 RL, 10 held out
    o.sft_steps = 8;
    o.rl_steps = 2;
    o.eval_questions = 6;
    o.eval_samples = 2;
    o.rl_overrides = {"rollout.prompts_per_step=4", "rollout.samples_per_prompt=2",
                      "algorithm.minibatches=1", "algorithm.dynamic_sampling=false",
                      "train.eval_problems=3"};
    std::ostringstream log;
    const json r = rl::run_search_demo(o, log);
    const fs::path out(o.out_dir);

    // The data: SFT demonstrations about the first 20 entities, RL questions about the next
    // 10, held-out questions about the last 10; no entity in two of them.
    const auto sft = read_jsonl(out / "data" / "sft.jsonl");
    const auto rl_lines = read_jsonl(out / "data" / "rl.jsonl");
    const auto eval = read_jsonl(out / "data" / "eval.jsonl");
    EXPECT_EQ(sft.size(), 60u);
    EXPECT_EQ(rl_lines.size(), 30u);
    ASSERT_EQ(eval.size(), 6u);
    const SearchKb kb = rl::make_search_kb(40, o.seed);
    std::set<std::string> sft_names, rl_ids, eval_ids;
    int searching = 0;
    const auto index = std::make_shared<const SearchIndex>(SearchIndex::open(out / "kb" / "index"));
    for (const json& line : sft) {
        const std::string prompt = line["prompt"];
        const std::string name =
            prompt.substr(prompt.find(" of ") + 4, prompt.size() - prompt.find(" of ") - 6);
        sft_names.insert(name);
        const json& pieces = line["completion"];
        if (pieces.size() == 3) {
            searching++;
            EXPECT_EQ(pieces[0], "<search>" + name + "</search>");
            // The observation is the search environment's own, token for token.
            env::SearchEnvironment e({3, ToolSyntax::search_r1, 1, 200}, index,
                                     [](const std::string&) { return env::Verdict{}; }, {});
            env::Item item;
            e.reset(item);
            env::Turn turn;
            turn.text = pieces[0];
            EXPECT_EQ(pieces[1]["text"], *e.step(turn).observation);
            EXPECT_EQ(pieces[1]["train"], false);
        } else {
            ASSERT_EQ(pieces.size(), 1u);
        }
    }
    EXPECT_EQ(r["sft_demonstrations_searching"], searching);
    EXPECT_GT(searching, 0);
    EXPECT_LT(searching, 60);
    for (size_t i = 0; i < kb.sft_end; i++) EXPECT_TRUE(sft_names.count(kb.entities[i].name));
    EXPECT_EQ(sft_names.size(), kb.sft_end);
    for (const json& line : rl_lines) rl_ids.insert(line["id"].get<std::string>().substr(0, 5));
    for (const json& line : eval) eval_ids.insert(line["id"].get<std::string>().substr(0, 5));
    for (const std::string& id : eval_ids) {
        EXPECT_EQ(rl_ids.count(id), 0u) << id;
        EXPECT_GE(std::stoi(id.substr(1)), static_cast<int>(kb.rl_end)) << id;
    }
    for (const std::string& id : rl_ids) {
        const int i = std::stoi(id.substr(1));
        EXPECT_GE(i, static_cast<int>(kb.sft_end));
        EXPECT_LT(i, static_cast<int>(kb.rl_end));
    }

    // The results: the keys of `crucible demo`'s and the search figures, each a share.
    for (const char* key : {"before", "after", "p_value", "closed_book", "chance",
                            "search_rate_before", "search_rate_after"}) {
        ASSERT_TRUE(r.contains(key)) << key;
        if (r[key].is_number()) {
            EXPECT_GE(r[key].get<double>(), 0.0) << key;
            EXPECT_LE(r[key].get<double>(), 1.0) << key;
        }
    }
    EXPECT_EQ(r["problems"], 6);
    EXPECT_EQ(r["figures_before"]["episodes"], 12);
    EXPECT_EQ(r["ci_before"].size(), 2u);
    EXPECT_GT(r["seconds"].get<double>(), 0.0);
    const json file = json::parse(testutil::slurp((out / "results.json").string()));
    for (const char* key : {"before", "after", "p_value", "figures_after", "sft_steps"})
        EXPECT_EQ(file[key], r[key]) << key;
    const std::string html = testutil::slurp((out / "report.html").string());
    for (const char* part : {"Searches per episode", "SFT loss", "Held-out accuracy during RL",
                             "episodes that search"})
        EXPECT_NE(html.find(part), std::string::npos) << part;
    EXPECT_TRUE(fs::exists(out / "rl" / "checkpoints" / "step-2"));
    // The before/after figures are the eval harness's: its runs are in the output folder, and
    // comparing them gives the printed difference and p-value (as `crucible compare` would).
    const eval::RunData before = eval::load_run((out / "eval-before").string());
    const eval::RunData after = eval::load_run((out / "eval-after").string());
    EXPECT_EQ(before.settings.at("env").rfind("search", 0), 0u);
    EXPECT_EQ(after.k, 2);
    const json cmp = eval::compare_runs(after, before, eval::CompareOptions{});
    EXPECT_EQ(cmp["diff"], r["difference"]);
    EXPECT_EQ(cmp["p_value_t"].is_number() ? cmp["p_value_t"] : json(nullptr),
              r["p_value"].is_number() ? r["p_value"] : json(nullptr));
    EXPECT_NEAR(eval::mean_accuracy(before.scores).mean, r["before"].get<double>(), 1e-12);
    EXPECT_TRUE(fs::exists(out / "eval-after" / "results.json"));
}

}  // namespace
}  // namespace crucible
