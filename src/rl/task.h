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
#include "rl/rl_config.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::reward {
struct RubricItem;
}

namespace crucible::rl {

struct TaskItem {
    std::string id;
    std::string prompt;  // the text shown to the model (after any chat template)
    std::vector<int32_t> prompt_ids;
    std::string answer;    // gold answer (or the task's own encoding of the problem)
    bool has_gold = true;  // false: a task jsonl line with a rubric and no answer
    std::string verifier;  // jsonl: exact, numeric, math, mc, regex
    int index = 0;         // position in its split (built-in tasks score by it)
    std::shared_ptr<const reward::RubricItem> rubric;  // task jsonl: the line's "rubric", if any
};

// The task's verdict on one completion. Correctness and format credit are kept apart, so that
// accuracy means "fully correct" whatever credit the reward gives for form.
struct TaskScore {
    std::optional<double> correct;  // 1 fully correct, 0 not; none: the item has no gold answer
    double format = 0.0;            // format credit (Countdown: TinyZero's 0.1 for a
                                    // well-formed wrong answer); 0 for tasks without one
};

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

// Builds the task named by task.* of an RL config (data files are read here: errors name the
// file, line and field); `seed` is the config's, which the built-in tasks' data derive from.
Task load_task(const RlTaskConfig& task, uint64_t seed, const TextTokenizer& tok);
// The same from a whole RL config (its task.* and seed).
Task load_task(const Config& config, const TextTokenizer& tok);

}  // namespace crucible::rl
