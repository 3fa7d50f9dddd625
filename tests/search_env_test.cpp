// The search environment (env/search_env.h) on a small index built here: the Search-R1
// observation spelled out by hand, the answer's content scored (not the whole turn), the
// Hermes syntax, malformed and empty queries, "no results", answers before a call, the
// passage cap, and the RL config that opens the index (and names it when it cannot).
#include "env/search_env.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "rl/rl_config.h"
#include "rl/task.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using env::SearchEnvironment;
using env::SearchEnvOptions;
using env::StepResult;

using env::Turn;
using nlohmann::json;
using testutil::TempDir;

std::string doc(const std::string& id, const std::string& title, const std::string& text) {
    return json{{"id", id}, {"title", title}, {"text", text}}.dump() + "\n";
}

// Each entity's name appears in its own document only, so a search for it has one hit.
std::string corpus() {
    return doc("raquoka", "Raquoka", "Raquoka: color teal, city Thafe, number 17.") +
           doc("mibelo", "Mibelo", "Mibelo: color amber, city Quorin, number 42.") +
           doc("sutane", "Sutane", "Sutane: color plum, city Vasko, number 8.");
}

struct Index {
    TempDir tmp;
    fs::path dir;
    std::shared_ptr<const SearchIndex> index;
    Index() {
        dir = tmp.path() / "index";
        build_search_index(tmp.write("docs.jsonl", corpus()), dir);
        index = std::make_shared<const SearchIndex>(SearchIndex::open(dir));
    }
};

Turn turn_of(const std::string& text, bool eos = false) {
    Turn t;
    t.text = text;
    for (unsigned char c : text) t.ids.push_back(c);
    t.eos = eos;
    return t;
}

env::Item item_of(const std::string& prompt) {
    env::Item item;
    item.id.assign(1, 'q');
    item.prompt = prompt;
    return item;
}

// A search environment whose verdict records what it was given and pays 1 for "Thafe".
struct Search {
    Index idx;
    std::string scored = "(not scored)";
    std::shared_ptr<SearchEnvironment> env;
    explicit Search(SearchEnvOptions options = {}) {
        env = std::make_shared<SearchEnvironment>(
            options, idx.index,
            [this](const std::string& text) {
                scored = text;
                return env::Verdict{text == "Thafe" ? 1.0 : 0.0, 0.0};
            },
            std::vector<std::string>{});
    }
};

TEST(SearchEnvironment, ASearchShowsThePassageInSearchR1Syntax) {
    Search s;
    s.env->reset(item_of("Which city is Raquoka's?"));
    const StepResult r = s.env->step(turn_of("I should look it up. <search>Raquoka</search>"));
    EXPECT_FALSE(r.done);
    ASSERT_TRUE(r.observation.has_value());
    // Search-R1's observation, written out by hand from the one matching document.
    EXPECT_EQ(*r.observation,
              "\n\n<information>Doc 1(Title: Raquoka) Raquoka: color teal, city Thafe, number "
              "17.</information>\n\n");
    EXPECT_EQ(r.info["tool"], "search");
    EXPECT_EQ(r.info["query"], "Raquoka");
    EXPECT_EQ(r.info["hits"], json::array({"raquoka"}));
    EXPECT_EQ(s.env->queries(), std::vector<std::string>{"Raquoka"});
    EXPECT_EQ(s.env->retrieved(), std::vector<std::string>{"raquoka"});
    EXPECT_EQ(s.env->tool_calls(), 1);
    EXPECT_EQ(s.env->stop_strings(), (std::vector<std::string>{"</search>", "</answer>"}));
}

TEST(SearchEnvironment, TheAnswersContentIsScoredNotTheWholeTurn) {
    Search s;
    s.env->reset(item_of("Q"));
    s.env->step(turn_of("<search>Raquoka</search>"));
    const StepResult r = s.env->step(turn_of("It says Thafe. <answer> Thafe</answer>"));
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.info["end"], "answer");
    EXPECT_EQ(s.env->score().correct, 1.0);
    // The content between the tags, trimmed.
    EXPECT_EQ(s.scored, "Thafe");
    // A turn that names the right city but gives no <answer> is scored on "".
    s.env->reset(item_of("Q"));
    const StepResult plain = s.env->step(turn_of("Thafe"));
    EXPECT_TRUE(plain.done);
    EXPECT_EQ(plain.info["end"], "no_call");
    EXPECT_EQ(s.env->score().correct, 0.0);
    EXPECT_EQ(s.scored, "");
    // An answer before a search ends the episode without searching.
    s.env->reset(item_of("Q"));
    const StepResult early = s.env->step(turn_of("<answer>Thafe</answer><search>Mibelo</search>"));
    EXPECT_TRUE(early.done);
    EXPECT_TRUE(s.env->queries().empty());
    EXPECT_EQ(s.env->score().correct, 1.0);
}

TEST(SearchEnvironment, NoResultsAndMalformedQueriesAreObservations) {
    Search s;
    s.env->reset(item_of("Q"));
    const StepResult none = s.env->step(turn_of("<search>zzzz qqqq</search>"));
    EXPECT_FALSE(none.done);
    EXPECT_EQ(*none.observation, "\n\n<information>no results</information>\n\n");
    EXPECT_EQ(none.info["hits"], json::array());
    EXPECT_FALSE(none.info.contains("malformed"));
    // FTS5 syntax in a query is text, never an operator.
    const StepResult syntax = s.env->step(turn_of("<search>Mibelo OR \"(*</search>"));
    EXPECT_FALSE(syntax.done);
    EXPECT_FALSE(syntax.info.contains("malformed"));
    s.env->reset(item_of("Q"));
    const StepResult empty = s.env->step(turn_of("<search>   </search>"));
    EXPECT_FALSE(empty.done);
    ASSERT_TRUE(empty.info.contains("malformed"));
    EXPECT_NE(empty.observation->find("error: malformed tool call: "), std::string::npos)
        << *empty.observation;
    EXPECT_EQ(s.env->tool_calls(), 0);
}

TEST(SearchEnvironment, HermesCallsAndTheirBadArguments) {
    SearchEnvOptions o;
    o.syntax = ToolSyntax::hermes;
    Search s(o);
    s.env->reset(item_of("Q"));
    const StepResult r = s.env->step(turn_of(
        "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"Mibelo\"}}</tool_call>"));
    EXPECT_EQ(*r.observation,
              "\n<tool_response>\nDoc 1(Title: Mibelo) Mibelo: color amber, city Quorin, number "
              "42.\n</tool_response>\n");
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"{\"name\": \"search\", \"arguments\": {}}", "missing \"query\""},
        {"{\"name\": \"search\", \"arguments\": {\"query\": 3}}", "\"query\" must be a string"},
        {"{\"name\": \"search\", \"arguments\": {\"query\": \"\"}}", "empty query"},
        {"{\"name\": \"python\", \"arguments\": {}}", "unknown tool \"python\" (tools: search)"},
    };
    for (const auto& [call, reason] : bad) {
        s.env->reset(item_of("Q"));
        const StepResult m = s.env->step(turn_of("<tool_call>" + call + "</tool_call>"));
        EXPECT_FALSE(m.done) << call;
        ASSERT_TRUE(m.info.contains("malformed")) << call;
        EXPECT_NE(m.observation->find(reason), std::string::npos) << *m.observation;
        EXPECT_EQ(s.env->tool_calls(), 0);
    }
}

TEST(SearchEnvironment, PassagesAreCutAndTheTurnLimitHolds) {
    SearchEnvOptions o;
    o.max_chars = 7;
    o.max_turns = 2;
    Search s(o);
    s.env->reset(item_of("Q"));
    const StepResult r = s.env->step(turn_of("<search>Sutane</search>"));
    // The passage's first 7 characters.
    EXPECT_EQ(*r.observation, "\n\n<information>Doc 1(Title: Sutane) Sutane:</information>\n\n");
    const StepResult last = s.env->step(turn_of("<search>Raquoka</search>"));
    EXPECT_TRUE(last.done);
    EXPECT_EQ(last.info["end"], "max_turns");
    EXPECT_EQ(s.env->queries().size(), 1u);  // the last turn's call did not run
    SearchEnvOptions k0;
    k0.top_k = 0;
    Index idx;
    EXPECT_THROW(SearchEnvironment(k0, idx.index, {}, {}), Error);
    EXPECT_THROW(SearchEnvironment({}, nullptr, {}, {}), Error);
}

TEST(SearchEnvironment, TheRlConfigOpensTheIndexAndNamesItWhenItCannot) {
    Index idx;
    Config c(kRlConfigDefaults);
    c.set("model.path=m");
    c.set("env.name=search");
    EXPECT_EQ(testutil::error_of([&] { rl::read_rl_config(c); }),
              "config: env.index: the search environment needs an index folder (crucible index "
              "build --docs DOCS.jsonl --out DIR)");
    c.set("env.index=" + (idx.tmp.path() / "missing").string());
    const std::string missing = testutil::error_of([&] { rl::read_rl_config(c); });
    EXPECT_EQ(missing.rfind("config: env.index: ", 0), 0u) << missing;
    EXPECT_NE(missing.find("missing"), std::string::npos) << missing;
    c.set("env.index=" + idx.dir.string());
    c.set("env.top_k=1");
    const rl::RlConfig r = rl::read_rl_config(c);
    ASSERT_NE(r.env.search_index, nullptr);
    EXPECT_EQ(r.env.search_index->size(), 3);
    // make_environment builds the search environment from it, scored by the task.
    rl::Task task;
    task.score = [](const rl::TaskItem&, const std::string& text) {
        rl::TaskScore score;
        score.correct = text == "Quorin" ? 1.0 : 0.0;
        return score;
    };
    rl::TaskItem item;
    item.prompt = "Q";
    const auto e = rl::make_environment(r.env, task, item);
    ASSERT_NE(dynamic_cast<SearchEnvironment*>(e.get()), nullptr);
    e->reset(item);
    EXPECT_EQ(*e->step(turn_of("<search>Mibelo</search>")).observation,
              "\n\n<information>Doc 1(Title: Mibelo) Mibelo: color amber, city Quorin, number "
              "42.</information>\n\n");
    e->step(turn_of("<answer>Quorin</answer>"));
    EXPECT_EQ(e->score().correct, 1.0);
}

}  // namespace
}  // namespace crucible
