// `crucible eval --env`: samples run as environment episodes (eval/episode_generator.h). A
// scripted policy that searches and then answers from the observation checks what is stored
// (the transcript with the tool's observation, the score of the <answer> content by the item's
// verifier, the episode's end) and that a run cannot change environment; the engine on a tiny
// model checks the plumbing, the budget and that batching does not change a sample.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "env/search_index.h"
#include "eval/episode_generator.h"
#include "eval/sample_store.h"
#include "model_util.h"
#include "rl/rl_config.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

std::string doc(const std::string& id, const std::string& title, const std::string& text) {
    return json{{"id", id}, {"title", title}, {"text", text}}.dump() + "\n";
}

struct SearchSetup {
    TempDir tmp;
    fs::path model_dir;
    rl::RlEnvConfig env;
    std::vector<eval::EvalItem> items;
    SearchSetup() {
        model_dir = tmp.path() / "model";
        testutil::write_byte_model(model_dir, 256);
        const fs::path index = tmp.path() / "index";
        build_search_index(
            tmp.write("docs.jsonl",
                      doc("e1", "Raquoka", "color teal, city Thafe, number 17.") +
                          doc("e2", "Mibelo", "color amber, city Quorin, number 42.")),
            index);
        Config c(kRlConfigDefaults);
        c.set("env.name=search");
        c.set("env.index=" + index.string());
        c.set("env.top_k=1");
        env = rl::read_rl_env_config(c);
        const auto item = [](const std::string& id, const std::string& name,
                             const std::string& answer) {
            eval::EvalItem it;
            it.id = id;
            it.prompt = "Q: city of " + name + "?\n";
            it.answer = answer;
            it.verifier = "exact";
            return it;
        };
        // The third item's gold is not what the document says: the policy's answer is wrong.
        items = {item("q1", "Raquoka", "Thafe"), item("q2", "Mibelo", "Quorin"),
                 item("q3", "Raquoka", "Vasko")};
    }
    eval::EvalOptions options(const std::string& run, int k) const {
        eval::EvalOptions o;
        o.run_dir = (tmp.path() / run).string();
        o.k = k;
        o.sampling.temperature = 1.0;
        o.sampling.max_tokens = 200;
        o.sampling.chat = false;
        o.env = "search index top_k=1";
        return o;
    }
};

// Searches for the name in the question, then answers with the city the observation names.
rl::Generator search_then_answer() {
    return [](const std::vector<GenerationRequest>& requests,
              const std::function<void(size_t, const std::vector<GeneratedSequence>&)>&) {
        const ByteTokenizer bytes;
        std::vector<std::vector<GeneratedSequence>> out;
        for (const GenerationRequest& r : requests) {
            const std::string seen = bytes.decode(r.prompt);
            std::string text;
            if (seen.find("<information>") == std::string::npos) {
                const size_t a = seen.find(" of ") + 4;
                text = "<search>" + seen.substr(a, seen.find('?') - a) + "</search>";
            } else {
                const size_t a = seen.rfind("city ") + 5;
                text = "<answer>" + seen.substr(a, seen.find(',', a) - a) + "</answer>";
            }
            GeneratedSequence g;
            for (unsigned char ch : text) g.tokens.push_back(ch);
            g.finish_reason = "stop";
            out.push_back(std::vector<GeneratedSequence>(static_cast<size_t>(r.n), g));
        }
        return out;
    };
}

TEST(EvalEpisodes, SamplesAreEpisodesScoredOnTheAnswer) {
    SearchSetup s;
    auto gen = eval::make_episode_generator(s.model_dir.string(), s.env, 4, search_then_answer());
    const eval::EvalOptions o = s.options("run", 2);
    const eval::EvalSummary sum = eval::run_eval(s.items, *gen, o);
    EXPECT_EQ(sum.generated, 6);
    EXPECT_EQ(sum.failed, 0);
    eval::SampleStore store(o.run_dir);
    const auto samples = store.samples();
    ASSERT_EQ(samples.size(), 6u);
    for (const eval::SampleRecord& r : samples) {
        const bool first = r.item_id != "q2";
        // The transcript: the search, the environment's observation, the answer.
        const std::string expected =
            first ? "<search>Raquoka</search>\n\n<information>Doc 1(Title: Raquoka) color teal, "
                    "city Thafe, number 17.</information>\n\n<answer>Thafe</answer>"
                  : "<search>Mibelo</search>\n\n<information>Doc 1(Title: Mibelo) color amber, "
                    "city Quorin, number 42.</information>\n\n<answer>Quorin</answer>";
        EXPECT_EQ(r.completion, expected) << r.item_id;
        EXPECT_EQ(r.completion_tokens, static_cast<int64_t>(expected.size()));
        EXPECT_EQ(r.finish_reason, "answer");
        ASSERT_TRUE(r.score.has_value()) << r.error;
        // q1, q2: the answer's content equals the gold; q3's gold differs.
        EXPECT_EQ(*r.score, r.item_id == "q3" ? 0.0 : 1.0) << r.item_id;
        EXPECT_EQ(r.prompt, r.item_id == "q2" ? "Q: city of Mibelo?\n" : "Q: city of Raquoka?\n");
        // The episode's record: two turns, one search, what it asked and retrieved.
        const nlohmann::json info = nlohmann::json::parse(r.info);
        EXPECT_EQ(info["turns"], 2);
        EXPECT_EQ(info["tool_calls"], 1);
        EXPECT_EQ(info["end"], "answer");
        EXPECT_EQ(info["env"]["queries"], nlohmann::json::array({first ? "Raquoka" : "Mibelo"}));
        EXPECT_EQ(info["env"]["retrieved"].size(), 1u);
    }
    EXPECT_EQ(store.settings().at("env"), "search index top_k=1");
    // The same folder with another environment setting (or none) is refused.
    eval::EvalOptions other = o;
    other.env = "search index top_k=3";
    EXPECT_NE(testutil::error_of([&] { eval::run_eval(s.items, *gen, other); }).find("env"),
              std::string::npos);
    other.env = "";
    EXPECT_NE(testutil::error_of([&] { eval::run_eval(s.items, *gen, other); }).find("env"),
              std::string::npos);
}

TEST(EvalEpisodes, TheEngineRunsEpisodesWithinTheBudgetWhateverTheBatch) {
    SearchSetup s;
    eval::EvalOptions o = s.options("a", 3);
    o.sampling.max_tokens = 40;
    auto one = eval::make_episode_generator(s.model_dir.string(), s.env, 1);
    auto many = eval::make_episode_generator(s.model_dir.string(), s.env, 8);
    const eval::EvalSummary a = eval::run_eval(s.items, *one, o);
    o.run_dir = (s.tmp.path() / "b").string();
    const eval::EvalSummary b = eval::run_eval(s.items, *many, o);
    EXPECT_EQ(a.generated, 9);
    EXPECT_EQ(b.generated, 9);
    auto ra = eval::SampleStore((s.tmp.path() / "a").string()).samples();
    auto rb = eval::SampleStore(o.run_dir).samples();
    ASSERT_EQ(ra.size(), rb.size());
    for (size_t i = 0; i < ra.size(); i++) {
        EXPECT_EQ(ra[i].item_id, rb[i].item_id);
        EXPECT_EQ(ra[i].completion, rb[i].completion) << ra[i].item_id << " " << ra[i].sample;
        EXPECT_LE(ra[i].completion_tokens, 40);
        EXPECT_TRUE(ra[i].error.empty()) << ra[i].error;
        EXPECT_TRUE(ra[i].score.has_value());
    }
}

}  // namespace
}  // namespace crucible
