#include "env/builtin.h"

#include "core/error.h"
#include "env/countdown.h"

namespace crucible {

bool is_builtin_task(const std::string& name) {
    return name == "countdown_lite" || name == "addition";
}

BuiltinSplits builtin_task_items(const std::string& name, int n_train, int n_eval, int max_digits,
                                 uint64_t seed) {
    std::vector<PromptCompletion> train, eval;
    if (name == "countdown_lite") {
        countdown_split(n_train, n_eval, seed, &train, &eval);
    } else if (name == "addition") {
        addition_split(n_train, n_eval, max_digits, seed, &train, &eval);
    } else {
        throw Error("unknown built-in task '" + name + "' (expected countdown_lite or addition)");
    }
    auto items = [](const std::string& split, std::vector<PromptCompletion>& pcs) {
        std::vector<DatasetItem> out(pcs.size());
        for (size_t i = 0; i < pcs.size(); i++) {
            out[i].id = split + "-" + std::to_string(i);
            out[i].has_prompt = true;
            out[i].prompt = std::move(pcs[i].prompt);
            out[i].answer = std::move(pcs[i].completion);
        }
        return out;
    };
    return {items("train", train), items("eval", eval)};
}

}  // namespace crucible
