// `crucible bench episodes`: multi-turn rollouts on one engine that keeps each sequence's KV
// cache across turns (rl::run_episodes on an Engine) against the round-based path that sends
// every later turn as a new request over the whole conversation (rl::engine_generator, a fresh
// engine per round), on the same random model, episodes and seeds. The figures are the wall
// time, the ids prefilled and how many episodes came out different (the same requests and
// seeds; only the batching of the forward passes differs).
#include <omp.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench_shapes.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "env/environment.h"
#include "rl/episodes.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::cli {

namespace {

// Answers every turn with a fixed observation until the turn count ends the episode; the tool
// "runs" for tool_ms milliseconds (a search, a sandboxed program).
class FixedTurns : public env::Environment {
  public:
    FixedTurns(int turns, std::string observation, int tool_ms)
        : turns_(turns), observation_(std::move(observation)), tool_ms_(tool_ms) {}
    env::Prompt reset(const env::Item& item) override {
        done_ = 0;
        return {item.prompt, item.prompt_ids};
    }
    env::StepResult step(const env::Turn&) override {
        env::StepResult r;
        if (++done_ >= turns_) {
            r.done = true;
            r.info["end"] = "max_turns";
            return r;
        }
        if (tool_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(tool_ms_));
        r.info["tool"] = "fixed";
        r.observation = observation_;
        return r;
    }
    env::Verdict score() override { return {}; }
    std::vector<std::string> stop_strings() const override { return {}; }

  private:
    int turns_, done_ = 0;
    std::string observation_;
    int tool_ms_;
};

}  // namespace

std::function<int()> add_bench_episodes(CLI::App& bench) {
    CLI::App* cmd = bench.add_subcommand(
        "episodes",
        "Multi-turn rollouts: KV kept across turns on one engine vs re-prefilling each turn");
    cmd->option_defaults()->always_capture_default();
    struct Options {
        std::string config = "small";
        int groups = 8, group_size = 8, turns = 4, turn_tokens = 24, observation_tokens = 64,
            tool_ms = 0, tool_workers = 4;
        JsonOutput json_out;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("--config", o->config, "model shape: small or medium");
    cmd->add_option("--groups", o->groups, "prompts (groups of episodes)");
    cmd->add_option("--group-size", o->group_size, "episodes per prompt");
    cmd->add_option("--turns", o->turns, "model turns per episode");
    cmd->add_option("--turn-tokens", o->turn_tokens, "tokens per model turn");
    cmd->add_option("--observation-tokens", o->observation_tokens, "tokens per observation");
    cmd->add_option("--tool-ms", o->tool_ms, "milliseconds each tool call takes");
    cmd->add_option("--tool-workers", o->tool_workers,
                    "threads for tool calls in a fourth run (KV kept, tools beside the engine); "
                    "0: no fourth run");
    add_json_option(cmd, &o->json_out);
    return [o]() {
        const BenchShape* shape = nullptr;
        const std::vector<BenchShape> shapes = bench_shapes();
        for (const BenchShape& s : shapes)
            if (o->config == s.name) shape = &s;
        if (shape == nullptr) throw Error("--config: expected small or medium");
        if (o->groups < 1 || o->group_size < 1 || o->turns < 1 || o->turn_tokens < 1 ||
            o->observation_tokens < 0 || o->tool_ms < 0 || o->tool_workers < 0)
            throw Error("bench episodes: counts must be positive");
        Model model(shape->config);
        model.init_random(1, 0.02f);
        const ByteTokenizer bytes;
        const TextTokenizer tok(bytes);
        const std::string observation(static_cast<size_t>(o->observation_tokens), 'o');
        std::vector<env::Item> items(static_cast<size_t>(o->groups));
        for (size_t i = 0; i < items.size(); i++) {
            items[i].id = std::to_string(i);
            items[i].prompt = "Question " + std::to_string(i) +
                              ": what follows? Think step by "
                              "step and use the tool.\n";
            items[i].prompt_ids = tok.encode(items[i].prompt);
        }
        const auto groups_of = [&] {
            std::vector<rl::EpisodeGroup> groups;
            for (size_t i = 0; i < items.size(); i++) {
                rl::EpisodeGroup g;
                g.item = &items[i];
                for (int s = 0; s < o->group_size; s++)
                    g.envs.push_back(
                        std::make_shared<FixedTurns>(o->turns, observation, o->tool_ms));
                g.params.temperature = 1.0f;
                g.params.seed = 1000 + i;
                groups.push_back(std::move(g));
            }
            return groups;
        };
        const rl::EpisodeLimits limits{o->turns * (o->turn_tokens + o->observation_tokens),
                                       o->turn_tokens};
        auto held_groups = groups_of();
        Engine engine(model, rl::episode_engine_options(tok));
        auto t0 = Clock::now();
        const auto held = rl::run_episodes(held_groups, engine, tok, limits);
        const double held_s = seconds_since(t0);
        auto again_groups = groups_of();
        Engine again_engine(model, rl::episode_engine_options(tok));
        t0 = Clock::now();
        const auto again = rl::run_episodes(again_groups, again_engine, tok, limits, {}, false);
        const double again_s = seconds_since(t0);
        auto round_groups = groups_of();
        t0 = Clock::now();
        const auto round =
            rl::run_episodes(round_groups, rl::engine_generator(model, tok), tok, limits);
        const double round_s = seconds_since(t0);
        // KV kept, and the tool calls on worker threads while the engine decodes.
        double workers_s = 0;
        int64_t differ_workers = 0;
        if (o->tool_workers > 0) {
            rl::EpisodeLimits with_workers = limits;
            with_workers.tool_workers = o->tool_workers;
            auto worker_groups = groups_of();
            Engine worker_engine(model, rl::episode_engine_options(tok));
            t0 = Clock::now();
            const auto w = rl::run_episodes(worker_groups, worker_engine, tok, with_workers);
            workers_s = seconds_since(t0);
            for (size_t g = 0; g < w.size(); g++)
                for (size_t s = 0; s < w[g].size(); s++)
                    differ_workers += w[g][s].completion != held[g][s].completion;
        }
        // What the round path prefilled: every request's whole sequence.
        int64_t round_prefill = 0, episodes = 0;
        // Episodes that differ between the paths (sampling at temperature 1 turns a last-bit
        // difference of the logits, from another batch composition, into another token).
        int64_t differ_reprefill = 0, differ_rounds = 0, differ_between = 0;
        for (size_t g = 0; g < round.size(); g++) {
            round_prefill += static_cast<int64_t>(items[g].prompt_ids.size());
            for (size_t s = 0; s < round[g].size(); s++) {
                episodes++;
                differ_reprefill += again[g][s].completion != held[g][s].completion;
                differ_rounds += round[g][s].completion != held[g][s].completion;
                differ_between += round[g][s].completion != again[g][s].completion;
                for (const rl::EpisodeSpan& sp : round[g][s].spans) {
                    if (sp.kind == rl::EpisodeSpan::Kind::model && sp.begin > 0)
                        round_prefill +=
                            static_cast<int64_t>(items[g].prompt_ids.size() + sp.begin);
                }
            }
        }
        nlohmann::json r = {{"config", o->config},
                            {"threads", omp_get_max_threads()},
                            {"episodes", episodes},
                            {"turns", o->turns},
                            {"turn_tokens", o->turn_tokens},
                            {"observation_tokens", o->observation_tokens},
                            {"tool_ms", o->tool_ms},
                            {"held_s", held_s},
                            {"reprefill_one_engine_s", again_s},
                            {"round_s", round_s},
                            {"speedup_vs_reprefill", again_s / held_s},
                            {"speedup_vs_rounds", round_s / held_s},
                            {"held_prefill_tokens", engine.prefill_tokens()},
                            {"reprefill_prefill_tokens", again_engine.prefill_tokens()},
                            {"round_prefill_tokens", round_prefill},
                            {"decode_tokens", engine.decode_tokens()},
                            {"episodes_differing_from_reprefill", differ_reprefill},
                            {"episodes_differing_from_rounds", differ_rounds},
                            {"reprefill_episodes_differing_from_rounds", differ_between}};
        if (o->tool_workers > 0) {
            r["tool_workers"] = o->tool_workers;
            r["held_tool_workers_s"] = workers_s;
            r["speedup_tool_workers_vs_held"] = held_s / workers_s;
            r["tool_workers_episodes_differing_from_held"] = differ_workers;
        }
        o->json_out.write(r);
        if (o->json_out.table()) {
            std::printf(
                "%s model, %d threads: %lld episodes of %d turns (%d tokens each, %d-token "
                "observations, tools %d ms)\n"
                "  KV kept across turns, one engine:       %8.2f s, %lld ids prefilled\n"
                "  each turn re-prefilled, one engine:     %8.2f s, %lld ids prefilled (%.2fx)\n"
                "  each turn re-prefilled, engine a round: %8.2f s, %lld ids prefilled (%.2fx)\n"
                "  episodes that differ from the KV-kept ones: %lld (one engine), %lld (rounds); "
                "between the two re-prefilling paths: %lld\n",
                o->config.c_str(), omp_get_max_threads(), static_cast<long long>(episodes),
                o->turns, o->turn_tokens, o->observation_tokens, o->tool_ms, held_s,
                static_cast<long long>(engine.prefill_tokens()), again_s,
                static_cast<long long>(again_engine.prefill_tokens()), again_s / held_s, round_s,
                static_cast<long long>(round_prefill), round_s / held_s,
                static_cast<long long>(differ_reprefill), static_cast<long long>(differ_rounds),
                static_cast<long long>(differ_between));
            if (o->tool_workers > 0) {
                std::printf(
                    "  KV kept, tools on %d threads beside the engine: %8.2f s (%.2fx faster "
                    "than KV kept); episodes that differ from the KV-kept ones: %lld\n",
                    o->tool_workers, workers_s, held_s / workers_s,
                    static_cast<long long>(differ_workers));
            }
        }
        return 0;
    };
}

}  // namespace crucible::cli
