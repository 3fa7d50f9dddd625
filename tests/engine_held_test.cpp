// Held sequences (GenerationRequest::hold / continue_from, issue 14 item 3): a continuation
// from a held sequence prefills only the ids its cache lacks and draws what a fresh engine
// (and the full-recompute oracle) draws for the whole sequence; release frees the blocks; a
// full pool evicts the oldest held sequence, whose continuation is then prefilled whole with
// the same result; and multi-turn episodes on one engine equal the round-based path's, token
// for token, while prefilling fewer ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/reference_generate.h"
#include "env/environment.h"
#include "model_util.h"
#include "rl/episodes.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

std::unique_ptr<Model> tiny_model() {
    auto m = std::make_unique<Model>(testutil::tiny_model_config(264, 128));
    m->init_random(11, 0.3f);
    return m;
}

std::vector<int32_t> ids(const std::string& text) {
    std::vector<int32_t> out;
    for (unsigned char c : text) out.push_back(c);
    return out;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

GenerationRequest request(std::vector<int32_t> prompt, int max_tokens, float temperature,
                          uint64_t seed) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.params.max_tokens = max_tokens;
    r.params.temperature = temperature;
    r.params.seed = seed;
    return r;
}

// Runs one request to its end on `e` and returns its first sample.
GeneratedSequence run_one(Engine& e, GenerationRequest r) {
    GeneratedSequence got;
    e.submit(
        std::move(r), {}, [&](std::vector<GeneratedSequence>&& out) { got = out.at(0); }, false);
    while (e.step()) {
    }
    return got;
}

TEST(EngineHeld, AContinuationPrefillsOnlyNewIdsAndDrawsWhatAFreshEngineDraws) {
    auto model = tiny_model();
    for (const float temperature : {0.0f, 1.0f}) {
        Engine e(*model);
        const std::vector<int32_t> prompt = ids("Q: what is 2+3?\n");
        GenerationRequest first = request(prompt, 8, temperature, 5);
        first.hold = true;
        const GeneratedSequence t1 = run_one(e, first);
        ASSERT_EQ(t1.tokens.size(), 8u);
        ASSERT_NE(t1.held, 0);
        EXPECT_EQ(e.num_held(), 1);
        const std::vector<int32_t> observation = ids("\n<obs>5</obs>\n");
        const std::vector<int32_t> whole = cat(cat(prompt, t1.tokens), observation);
        GenerationRequest next = request(whole, 10, temperature, 6);
        next.continue_from = t1.held;
        const int64_t before = e.prefill_tokens();
        const GeneratedSequence t2 = run_one(e, next);
        // The previous turn's last token (drawn, never run) and the observation.
        EXPECT_EQ(e.prefill_tokens() - before, 1 + static_cast<int64_t>(observation.size()));
        EXPECT_EQ(e.num_held(), 0);
        // A fresh engine prefilling everything draws the same ids.
        Engine fresh(*model);
        EXPECT_EQ(run_one(fresh, request(whole, 10, temperature, 6)).tokens, t2.tokens)
            << "temperature " << temperature;
        EXPECT_EQ(fresh.prefill_tokens(), static_cast<int64_t>(whole.size()));
        if (temperature == 0.0f) {
            // And the full-recompute oracle.
            EXPECT_EQ(greedy_generate_reference(*model, {whole}, 10, -1).at(0), t2.tokens);
        }
    }
}

TEST(EngineHeld, ReleaseFreesTheBlocksAndUnknownHandlesArePrefilledWhole) {
    auto model = tiny_model();
    Engine e(*model);
    const int total = e.free_kv_blocks();
    GenerationRequest r = request(ids("a prompt of some length, over one block"), 20, 1.0f, 3);
    r.hold = true;
    r.n = 3;
    GenerationRequest plain = r;
    std::vector<GeneratedSequence> out;
    e.submit(
        r, {}, [&](std::vector<GeneratedSequence>&& o) { out = std::move(o); }, false);
    while (e.step()) {
    }
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(e.num_held(), 3);
    EXPECT_LT(e.free_kv_blocks(), total);
    for (const GeneratedSequence& g : out) EXPECT_TRUE(e.release(g.held));
    EXPECT_EQ(e.free_kv_blocks(), total);
    EXPECT_EQ(e.held_blocks(), 0);
    EXPECT_FALSE(e.release(out[0].held));  // released already
    EXPECT_FALSE(e.release(12345));
    // Continuing from a released handle: prefilled whole, the same ids as a fresh engine.
    const std::vector<int32_t> whole = cat(cat(r.prompt, out[0].tokens), ids("obs"));
    GenerationRequest next = request(whole, 6, 1.0f, 9);
    next.continue_from = out[0].held;
    const int64_t before = e.prefill_tokens();
    const GeneratedSequence got = run_one(e, next);
    EXPECT_EQ(e.prefill_tokens() - before, static_cast<int64_t>(whole.size()));
    Engine fresh(*model);
    EXPECT_EQ(run_one(fresh, request(whole, 6, 1.0f, 9)).tokens, got.tokens);
    // A continuation that does not extend the held ids is prefilled whole too.
    GenerationRequest again = request(ids("xyz"), 4, 1.0f, 1);
    again.hold = true;
    const GeneratedSequence h = run_one(e, again);
    GenerationRequest other = request(ids("something else entirely"), 4, 1.0f, 2);
    other.continue_from = h.held;
    const int64_t b2 = e.prefill_tokens();
    run_one(e, other);
    EXPECT_EQ(e.prefill_tokens() - b2, 23);
    EXPECT_EQ(e.num_held(), 0);  // the mismatched one was released
    // continue_from with several samples is refused.
    GenerationRequest bad = request(ids("q"), 2, 1.0f, 1);
    bad.continue_from = 1;
    bad.n = 2;
    EXPECT_THROW(e.submit(bad, {}, {}), Error);
}

TEST(EngineHeld, AFullPoolEvictsTheOldestHeldSequenceWhichIsRecomputedLater) {
    auto model = tiny_model();
    EngineOptions o;
    o.kv_blocks = 12;  // 192 token slots
    Engine e(*model, o);
    std::vector<GeneratedSequence> held;
    for (int i = 0; i < 4; i++) {
        GenerationRequest r = request(ids("prompt number " + std::to_string(i) + " here"), 24, 1.0f,
                                      static_cast<uint64_t>(i));
        r.hold = true;
        held.push_back(run_one(e, r));
    }
    EXPECT_GT(e.evicted_held(), 0);         // 4 x 3 blocks held cannot all stay beside new requests
    EXPECT_FALSE(e.release(held[0].held));  // the oldest went first
    // Its continuation is recomputed and equals a fresh engine's.
    const std::vector<int32_t> whole =
        cat(cat(ids("prompt number 0 here"), held[0].tokens), ids("!"));
    GenerationRequest next = request(whole, 8, 1.0f, 77);
    next.continue_from = held[0].held;
    const GeneratedSequence got = run_one(e, next);
    Engine fresh(*model);
    EXPECT_EQ(run_one(fresh, request(whole, 8, 1.0f, 77)).tokens, got.tokens);
}

// `n` items "Question I: go on.", tokenized.
std::vector<env::Item> questions(const TextTokenizer& tok, size_t n) {
    std::vector<env::Item> items(n);
    for (size_t i = 0; i < n; i++) {
        // Appended piecewise: GCC 12 warns (-Wrestrict, wrongly) on "..." + std::string + "...".
        items[i].id = "i";
        items[i].id += std::to_string(i);
        items[i].prompt = "Question ";
        items[i].prompt += std::to_string(i);
        items[i].prompt += ": go on.\n";
        items[i].prompt_ids = tok.encode(items[i].prompt);
    }
    return items;
}

// Observes every turn for three turns: "\n[obs T]\n" after turn T.
class ThreeTurns : public env::Environment {
  public:
    env::Prompt reset(const env::Item& item) override {
        turns_ = 0;
        return {item.prompt, item.prompt_ids};
    }
    env::StepResult step(const env::Turn& turn) override {
        env::StepResult r;
        last_ = turn.text;
        if (++turns_ == 3) {  // every turn is cut at 12 ids: the turn count alone ends it
            r.done = true;
            r.info["end"] = "max_turns";
            return r;
        }
        r.info["tool"] = "obs";
        r.observation = "\n[obs " + std::to_string(turns_) + "]\n";
        return r;
    }
    env::Verdict score() override { return {}; }
    std::vector<std::string> stop_strings() const override { return {}; }

  private:
    int turns_ = 0;
    std::string last_;
};

TEST(EngineHeld, EpisodesOnOneEngineEqualTheRoundPathAndPrefillLess) {
    auto model = tiny_model();
    const ByteTokenizer bytes;
    const TextTokenizer tok(bytes);
    const std::vector<env::Item> items = questions(tok, 3);
    const auto groups_of = [&]() {
        std::vector<rl::EpisodeGroup> groups;
        for (size_t i = 0; i < items.size(); i++) {
            rl::EpisodeGroup g;
            g.item = &items[i];
            for (int s = 0; s < 4; s++) g.envs.push_back(std::make_shared<ThreeTurns>());
            g.params.temperature = 1.0f;
            g.params.seed = 100 + i;
            groups.push_back(std::move(g));
        }
        return groups;
    };
    const rl::EpisodeLimits limits{60, 12};
    auto round_groups = groups_of();
    const auto round =
        rl::run_episodes(round_groups, rl::engine_generator(*model, tok), tok, limits);
    auto held_groups = groups_of();
    Engine engine(*model, rl::episode_engine_options(tok));
    std::vector<size_t> done_order;
    const auto held = rl::run_episodes(held_groups, engine, tok, limits,
                                       [&](size_t g, const auto&) { done_order.push_back(g); });
    ASSERT_EQ(held.size(), round.size());
    int64_t whole_prefill = 0;  // what the round path prefills: every turn's whole sequence
    for (size_t g = 0; g < round.size(); g++) {
        for (size_t s = 0; s < round[g].size(); s++) {
            const rl::Episode& a = round[g][s];
            const rl::Episode& b = held[g][s];
            EXPECT_EQ(a.completion, b.completion) << g << "/" << s;
            EXPECT_EQ(a.turns, b.turns);
            EXPECT_EQ(a.turns, 3);
            ASSERT_EQ(a.spans.size(), b.spans.size());
            for (size_t k = 0; k < a.spans.size(); k++) {
                EXPECT_EQ(a.spans[k].begin, b.spans[k].begin);
                EXPECT_EQ(a.spans[k].end, b.spans[k].end);
            }
            EXPECT_EQ(a.truncated, b.truncated);
            size_t at = 0;
            for (const rl::EpisodeSpan& sp : a.spans) {
                if (sp.kind == rl::EpisodeSpan::Kind::model && sp.begin > 0)
                    whole_prefill += static_cast<int64_t>(items[g].prompt_ids.size() + sp.begin);
                at = sp.end;
            }
            (void)at;
        }
        whole_prefill += static_cast<int64_t>(items[g].prompt_ids.size());  // the first turn
    }
    EXPECT_EQ(done_order.size(), 3u);
    EXPECT_EQ(engine.num_held(), 0);  // every episode's last hold was released
    EXPECT_LT(engine.prefill_tokens(), whole_prefill / 2) << whole_prefill;
}

// ThreeTurns whose steps take `ms` milliseconds and count how many run at once; the step of
// item "i1"'s sample 2 throws on its second turn.
class SlowTurns : public ThreeTurns {
  public:
    SlowTurns(int ms, std::atomic<int>* now, std::atomic<int>* most, bool throws)
        : ms_(ms), now_(now), most_(most), throws_(throws) {}
    env::StepResult step(const env::Turn& turn) override {
        const int in = ++*now_;
        int seen = most_->load();
        while (in > seen && !most_->compare_exchange_weak(seen, in)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(ms_));
        --*now_;
        if (throws_ && ++calls_ == 2) throw std::runtime_error("tool crashed");
        return ThreeTurns::step(turn);
    }

  private:
    int ms_;
    std::atomic<int>*now_, *most_;
    bool throws_;
    int calls_ = 0;
};

TEST(EngineHeld, ToolWorkersRunStepsBesideTheEngineWithTheSameEpisodes) {
    auto model = tiny_model();
    const ByteTokenizer bytes;
    const TextTokenizer tok(bytes);
    const std::vector<env::Item> items = questions(tok, 3);
    std::atomic<int> now{0}, most{0};
    const auto groups_of = [&](int ms) {
        std::vector<rl::EpisodeGroup> groups;
        for (size_t i = 0; i < items.size(); i++) {
            rl::EpisodeGroup g;
            g.item = &items[i];
            for (int s = 0; s < 4; s++)
                g.envs.push_back(std::make_shared<SlowTurns>(ms, &now, &most, i == 1 && s == 2));
            g.params.temperature = 1.0f;
            g.params.seed = 100 + i;
            groups.push_back(std::move(g));
        }
        return groups;
    };
    rl::EpisodeLimits limits{60, 12};
    auto round_groups = groups_of(0);
    const auto round =
        rl::run_episodes(round_groups, rl::engine_generator(*model, tok), tok, limits);
    EXPECT_EQ(most.load(), 1);  // the round path steps one environment at a time
    most = 0;
    limits.tool_workers = 4;
    auto held_groups = groups_of(30);
    Engine engine(*model, rl::episode_engine_options(tok));
    const auto held = rl::run_episodes(held_groups, engine, tok, limits);
    EXPECT_GE(most.load(), 2);  // steps ran at once, beside the engine
    EXPECT_LE(most.load(), 4);
    for (size_t g = 0; g < round.size(); g++) {
        for (size_t s = 0; s < round[g].size(); s++) {
            const rl::Episode& a = round[g][s];
            const rl::Episode& b = held[g][s];
            EXPECT_EQ(a.completion, b.completion) << g << "/" << s;
            EXPECT_EQ(a.turns, b.turns);
            EXPECT_EQ(a.error, b.error);
            EXPECT_EQ(a.spans.size(), b.spans.size());
        }
    }
    // The step that threw ended its episode with the error, on either path.
    EXPECT_EQ(held[1][2].error, "env: tool crashed");
    EXPECT_EQ(held[1][2].turns, 2);
    EXPECT_EQ(engine.num_held(), 0);
}

// ThreeTurns whose second step hangs until `gate` opens (for the sample it is told to).
// The hanging step records what it still sees when it resumes: whether its environment was
// destroyed under it and how many ids its turn holds (a turn moved away holds none).
struct Gate {
    std::atomic<bool> open{false};
    std::atomic<bool> returned{false};
    std::atomic<bool> destroyed{false};
    std::atomic<bool> used_after_destroy{false};
    std::atomic<size_t> turn_ids_seen{0};
};
class HangsOnce : public ThreeTurns {
  public:
    HangsOnce(std::shared_ptr<Gate> gate, bool hangs) : gate_(std::move(gate)), hangs_(hangs) {}
    ~HangsOnce() override {
        if (hangs_) gate_->destroyed = true;
    }
    env::StepResult step(const env::Turn& turn) override {
        if (hangs_ && ++calls_ == 2) {
            while (!gate_->open) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            if (gate_->destroyed) gate_->used_after_destroy = true;
            gate_->turn_ids_seen = turn.ids.size();
            env::StepResult r = ThreeTurns::step(turn);
            gate_->returned = true;
            return r;
        }
        return ThreeTurns::step(turn);
    }

  private:
    std::shared_ptr<Gate> gate_;
    bool hangs_;
    int calls_ = 0;
};

TEST(EngineHeld, AStepThatHangsEndsItsEpisodeAndTheOthersFinish) {
    auto model = tiny_model();
    const ByteTokenizer bytes;
    const TextTokenizer tok(bytes);
    const std::vector<env::Item> items = questions(tok, 2);
    auto gate = std::make_shared<Gate>();
    {  // every episode, group and engine of the run is gone before the step resumes
        std::vector<rl::EpisodeGroup> groups;
        for (size_t i = 0; i < items.size(); i++) {
            rl::EpisodeGroup g;
            g.item = &items[i];
            for (int s = 0; s < 3; s++)
                g.envs.push_back(std::make_shared<HangsOnce>(gate, i == 0 && s == 1));
            g.params.temperature = 1.0f;
            g.params.seed = 7 + i;
            groups.push_back(std::move(g));
        }
        rl::EpisodeLimits limits{60, 12};
        limits.tool_workers = 2;
        limits.step_timeout_s = 0.3;
        Engine engine(*model, rl::episode_engine_options(tok));
        const auto episodes = rl::run_episodes(groups, engine, tok, limits);
        // run_episodes returned while the step still hangs: that episode failed, the rest ran on.
        EXPECT_FALSE(gate->returned.load());
        EXPECT_EQ(episodes[0][1].error, "env: the step did not return within 0.3 s");
        EXPECT_EQ(episodes[0][1].turns, 2);
        for (size_t g = 0; g < episodes.size(); g++) {
            for (size_t s = 0; s < episodes[g].size(); s++) {
                if (g == 0 && s == 1) continue;
                EXPECT_TRUE(episodes[g][s].error.empty()) << episodes[g][s].error;
                EXPECT_EQ(episodes[g][s].turns, 3);
            }
        }
        EXPECT_EQ(engine.num_held(), 0);
    }
    // The abandoned step finishes on its own once it can; its result is dropped.
    gate->open = true;
    for (int i = 0; i < 2000 && !gate->returned; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(gate->returned.load());
    // The abandoned step kept its environment and its turn to the end.
    EXPECT_FALSE(gate->used_after_destroy.load());
    EXPECT_GT(gate->turn_ids_seen.load(), 0u);
    for (int i = 0; i < 2000 && !gate->destroyed; i++)  // then the environment goes with it
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(gate->destroyed.load());
}

}  // namespace
}  // namespace crucible
