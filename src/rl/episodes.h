// Episodes of environments (env/environment.h) sampled from a policy, token-exact: every
// turn's request is the episode's id sequence so far (prompt ids, then each turn's generated
// ids and each observation's ids, tokenized on their own), never text re-tokenized. The
// RL trainer collects its rollouts here and scores held-out items the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "env/environment.h"
#include "rl/rl_config.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::rl {

// A stretch of an episode's ids after its prompt: the model's (trained) or a tool's
// observation (in the sequence, masked from the loss).
struct EpisodeSpan {
    enum class Kind { model, tool };
    Kind kind = Kind::model;
    size_t begin = 0, end = 0;  // [begin, end) in Episode::completion
};

struct Episode {
    std::vector<int32_t> completion;  // every id after the prompt, model's and tools', in order
    std::vector<EpisodeSpan> spans;   // cover `completion` in order
    bool truncated = false;           // cut by a token limit (a turn's, the episode's budget)
    int turns = 0;                    // model turns
    int tool_calls = 0;               // steps whose info names a "tool"
    int malformed_calls = 0;          // steps whose info has "malformed"
    int tool_errors = 0;              // steps whose info has "tool_error" (failed, timed out)
    std::string end;                  // info "end" of the last step ("budget" when cut by it)
    double step_reward = 0.0;         // sum of the steps' rewards
    bool has_step_reward = false;     // some step gave a reward
    std::string error;                // a step threw: the episode ended there
    std::shared_ptr<env::Environment> env;  // for score()

    // Completion ids that the model generated (1) or a tool's (0); empty when all are the
    // model's (a one-turn episode).
    std::vector<uint8_t> model_mask() const;
};

// Generates `requests` (one result per sample of each): the engine, or a scripted policy in
// tests. `on_request_done` (may be empty) is called as each request finishes.
using Generator = std::function<std::vector<std::vector<GeneratedSequence>>(
    const std::vector<GenerationRequest>& requests,
    const std::function<void(size_t, const std::vector<GeneratedSequence>&)>& on_request_done)>;

// A generator on `model`'s generation engine (a fresh engine per call).
Generator engine_generator(Model& model, const TextTokenizer& tok);

struct EpisodeLimits {
    // Ids after the prompt (the model's and the tools' together) at most; the episode ends
    // truncated when they run out.
    int max_new_tokens = 16;
    int max_tokens_per_turn = 0;  // 0: no limit besides max_new_tokens
    // Prompt and ids after it at most (0: none); the episode ends as with the budget.
    int max_context = 0;
    // An observation longer than this is cut in the middle (cut_observation); 0: not cut.
    int max_observation_tokens = 0;
    // On an engine: threads that run environment steps while the engine keeps decoding (a
    // slow tool no longer pauses every sequence); 0: steps run between engine steps. With
    // workers, when a next turn joins the batch depends on the tools' timing, so batches
    // (and the last bits of the numerics) can differ from run to run.
    int tool_workers = 0;
    // With tool_workers: a step (a tool call) still running after this many seconds ends its
    // episode with an error (excluded, as any failed sample) and its thread is left to finish
    // alone; 0: no limit.
    double step_timeout_s = 0;
};

// `ids` when at most `max_tokens` long; else its head and tail around the ids of
// "\n...[K tokens cut]...\n" (K the ids left out), max_tokens ids in all (only the head when
// max_tokens is too small for the marker). The middle of a long tool output matters least.
std::vector<int32_t> cut_observation(const std::vector<int32_t>& ids, int max_tokens,
                                     const TextTokenizer& tok);

// The limits of the episodes `env` runs, with `max_new_tokens` ids after the prompt.
inline EpisodeLimits episode_limits(const RlEnvConfig& env, int max_new_tokens) {
    return {max_new_tokens,   env.max_tokens_per_turn, env.max_context, env.max_observation_tokens,
            env.tool_workers, env.step_timeout_s};
}

// One group: `envs.size()` episodes of one item from one prompt, sharing its prefill on the
// first turn. `params` holds the sampling settings; max_tokens and stop strings are set per
// turn (stop_ids: the caller's, e.g. end-of-sequence). The first turn of episode s draws as
// sample s of one request seeded params.seed (so a one-turn environment samples exactly as a
// plain request with n = envs.size()); turn t > 0 of episode s draws with the seed
// Rng::mix(Rng::mix(params.seed, s), t).
struct EpisodeGroup {
    std::vector<std::shared_ptr<env::Environment>> envs;
    const env::Item* item = nullptr;
    SamplingParams params;
};

// Runs every group's episodes to their end, in rounds: each round submits one request per
// group that has episodes waiting for their first turn, and one per episode waiting for a
// later turn. `on_group_done(g, episodes)` (may be empty) is called as soon as every episode
// of group g has ended. Result [g][s] is episode s of group g.
std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, const Generator& generate, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done = {});

// The same episodes on one engine, turn after turn without rounds: every turn is submitted
// with `hold`, so a sequence that waits for its environment keeps its KV cache and its next
// turn prefills only the ids it does not have (the previous turn's last token and the
// observation); a turn is submitted as soon as the previous one's environment step returns,
// while the other sequences keep decoding. Seeds and requests are those of the round-based
// path, so the episodes are the same. Environment steps run on the calling thread between
// engine steps (a slow tool pauses decoding for its duration) unless limits.tool_workers
// threads run them beside the engine. With keep_kv false every turn
// prefills its whole sequence again (the same episodes: what `crucible bench episodes`
// compares against).
std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, Engine& engine, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done = {},
    bool keep_kv = true);

// The engine options episodes run with on `model` (stop strings decoded with `tok`).
EngineOptions episode_engine_options(const TextTokenizer& tok);

// Where episodes' turns come from: a scripted Generator when set (tests), else a fresh engine
// on `model` driven turn by turn (the overload above: KV kept across turns).
struct EpisodeSource {
    Model* model = nullptr;
    Generator scripted;
};
std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, const EpisodeSource& source, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done = {});

// The text of `ids` without a final end-of-sequence token.
std::string completion_text(const TextTokenizer& tok, const std::vector<int32_t>& ids);

}  // namespace crucible::rl
