// What one RL step passes from phase to phase (RlTrainer::train_step): the rollouts with their
// rewards and advantages, the group filter's counts, and the update's statistics.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rl/episodes.h"
#include "rl/objective.h"

namespace crucible::rl {

// One sampled episode of one training item (one completion, for a one-turn environment).
struct Rollout {
    int group = 0;    // index of its group within the step
    size_t item = 0;  // index into the task's train items
    int sample = 0;   // index within the group
    // The prompt's ids when not the item's (an agent's session: its first turn's prompt).
    std::vector<int32_t> prompt;
    std::string session;                // env server: the agent's session id
    std::vector<float> behaviour_logp;  // env server: the engine's logprobs at the model's ids
    // Every id after the prompt: generated ids (end-of-sequence included when it ended a turn)
    // and, in a multi-turn episode, the tools' observation ids between turns.
    std::vector<int32_t> completion;
    std::string text;        // completion text without a final end-of-sequence token
    bool truncated = false;  // hit a token limit (rollout.max_new_tokens, a turn's)
    // Per completion id: 1 the model's, 0 an observation's (in the sequence, no loss, no
    // advantage, no KL); empty: every id is the model's.
    std::vector<uint8_t> model_mask;
    std::vector<EpisodeSpan> spans;  // the model's turns and the observations, in order
    int turns = 1, tool_calls = 0, malformed_calls = 0, tool_errors = 0;
    std::string end;                        // why the episode ended (environment info "end")
    std::shared_ptr<env::Environment> env;  // the episode's environment, for its verdict
    double python = NAN;       // the Python reward (rewards.python), NaN when it failed
    std::string python_error;  // why ("reward_timeout: ...", the exception's last line)
    double step_reward = 0.0;  // the environment's step rewards, summed
    bool has_step_reward = false;
    std::optional<double> correct;  // the task's verdict; none: the item has no gold answer
    std::vector<std::pair<std::string, double>> components;
    double rubric = NAN;  // the rubric reward (when on); NaN with rubric_error when it failed
    std::string rubric_error;
    double reward = 0.0;
    bool valid = true;  // every reward component produced a finite number
    std::string error;
    bool kept = false;     // its group is in the update batch
    bool in_loss = false;  // kept, valid and not removed by overlong filtering
    double advantage = 0.0;
    std::vector<float> old_logp, ref_logp;  // at the model's ids only

    // Ids the model generated (the loss's tokens).
    size_t model_tokens() const {
        if (model_mask.empty()) return completion.size();
        size_t n = 0;
        for (uint8_t m : model_mask) n += m;
        return n;
    }
};

// A step's rollouts: every generation round's, in order (groups of G consecutive samples),
// and the groups that make the update batch.
struct RolloutBatch {
    std::vector<Rollout> rollouts;
    std::vector<int> kept_groups;  // Rollout::group of the kept groups, in the order kept
    int rounds = 0;                // generation rounds (dynamic sampling refills)
    bool multi_turn = false;       // env.name is not single_turn: env/* metrics, spans
    int groups_total = 0;
    int groups_zero_std = 0;           // fewer than 2 valid samples, or all rewards equal
    int groups_judged = 0;             // groups with >= 2 verdicts
    int groups_all_same_accuracy = 0;  // of those, all right or all wrong
    int64_t generated_tokens = 0;
    double time_generate_s = 0.0;
    double time_reward_s = 0.0;
};

// Sums over a step's optimizer steps (the update phase).
struct UpdateStats {
    double loss = 0.0;
    LossStats loss_stats;
    double entropy_sum = 0.0;  // the policy's entropy at each completion token of the first pass
    int64_t entropy_tokens = 0;
    double grad_norm_sum = 0.0;
    int optimizer_steps = 0;
    int64_t train_rows = 0;
    int64_t micro_batches = 0;
};

}  // namespace crucible::rl
