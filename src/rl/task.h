// What the RL trainer trains on: prompts (already tokenized) and the task's verifier, for the
// built-in tasks and for any JSONL dataset.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "env/environment.h"
#include "rl/rl_config.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::reward {
struct RubricItem;
}

namespace crucible::rl {

// An item of the task's data (env::Item: id, prompt, prompt_ids, answer, index) with what the
// RL task adds.
struct TaskItem : env::Item {
    bool has_gold = true;  // false: a task jsonl line with a rubric and no answer
    std::string verifier;  // jsonl: exact, numeric, math, mc, regex
    std::shared_ptr<const reward::RubricItem> rubric;  // task jsonl: the line's "rubric", if any
    // task jsonl: the line's fields but "prompt" and "messages" (a Python reward's columns)
    nlohmann::json columns = nlohmann::json::object();
};

// The task's verdict on one completion (env::Verdict): `correct` 1 fully correct, 0 not, none
// when the item has no gold answer; `format` credit (Countdown: TinyZero's 0.1 for a
// well-formed wrong answer), 0 for tasks without one.
using TaskScore = env::Verdict;

struct Task {
    std::string name;
    std::vector<TaskItem> train, eval;
    // The verdict on a completion (text, end-of-sequence removed). May throw (a verifier's
    // error): the RL trainer then marks the sample invalid.
    std::function<TaskScore(const TaskItem&, const std::string&)> score;
    bool has_format_credit = false;  // score() can give format credit (the `format` reward)
    // Text that ends a completion besides the end-of-sequence token ("" : none).
    std::vector<std::string> stop_strings;
};

// Puts `task`'s verdict under a time limit (core/deadline_call.h): a call past `seconds`
// throws Error "reward_timeout: no verdict within S s (`setting`)" (its computation is left to
// finish alone, on copies of the item and the text), so every path that scores (rollouts,
// environments' verdicts, held-out accuracy) marks the sample instead of hanging. 0: no limit.
void limit_verdict_time(Task& task, double seconds, const std::string& setting);

// A fresh environment for one episode on an item of `task` (env.*): the task as a one-turn
// environment (single_turn), or the calculator environment, scored by the task's verdict.
// The environment refers to `task` and the item it is reset with, which must outlive it.
std::shared_ptr<env::Environment> make_environment(const RlEnvConfig& env, const Task& task,
                                                   const TaskItem& item);
// The same with any verdict and the task's stop strings (the eval harness scores episodes
// with its own verifiers).
std::shared_ptr<env::Environment> make_environment(const RlEnvConfig& env, env::VerdictFn verdict,
                                                   std::vector<std::string> stop_strings);

// Builds the task named by task.* of an RL config (data files are read here: errors name the
// file, line and field); `seed` is the config's, which the built-in tasks' data derive from.
Task load_task(const RlTaskConfig& task, uint64_t seed, const TextTokenizer& tok);
// The same from a whole RL config (its task.* and seed).
Task load_task(const Config& config, const TextTokenizer& tok);

}  // namespace crucible::rl
