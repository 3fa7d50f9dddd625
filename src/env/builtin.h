// The built-in prompt/answer tasks by name, as dataset items, for SFT (`data.train:
// builtin:countdown_lite`) and RL (`task.name: countdown_lite`): one place maps a name to its
// generator (countdown.h). Countdown with TinyZero's rules (countdown_tinyzero.h) is RL's alone:
// its prompts depend on the chat format and its verdict on the problem, not on an answer text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "env/dataset_item.h"

namespace crucible {

struct BuiltinSplits {
    std::vector<DatasetItem> train, eval;
};

// True for "countdown_lite" and "addition".
bool is_builtin_task(const std::string& name);

// The splits of the task `name` (countdown_split's or addition_split's, with their rules and
// errors): item i of a split has id "train-i" or "eval-i", the problem's prompt and its answer.
// `max_digits` is addition's operand size (unused by countdown_lite). Throws Error for a name
// is_builtin_task refuses.
BuiltinSplits builtin_task_items(const std::string& name, int n_train, int n_eval, int max_digits,
                                 uint64_t seed);

}  // namespace crucible
