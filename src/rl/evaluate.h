// Scoring a model on a task's held-out problems by sampling from the generation engine: the
// per-problem, per-sample scores that the statistics of src/eval turn into accuracies,
// intervals and paired tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "engine/sampler.h"
#include "model/model.h"
#include "rl/task.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::rl {

struct TaskEvaluation {
    std::vector<std::vector<double>> scores;  // [problem][sample] 1 fully correct, 0 not,
                                              // NaN: the verdict failed (threw, not 0 or 1)
    double mean = 0.0;                        // accuracy over the samples with a verdict
    int64_t failures = 0;                     // samples whose verdict failed
    double mean_length = 0.0;                 // completion tokens
    int64_t tokens = 0;
    double seconds = 0.0;
};

// Adds one sample of item `item` (scores[item] must exist): its `tokens` and the verdict
// `correct` returns. 1 or 0 is the sample's score; a verdict that throws, is absent or is
// neither is a failure: NaN in `scores`, counted in `failures`.
void add_sample(TaskEvaluation& ev, size_t item, int64_t tokens,
                const std::function<std::optional<double>()>& correct);
// Sets `mean` (over the samples with a verdict, in order) and `mean_length` from the samples
// added.
void finish_evaluation(TaskEvaluation& ev);

// `samples` completions of each item (temperature 0: greedy, one is enough), scored by the
// task's correctness (format credit is not accuracy). Sample j of item i is seeded from
// (seed, item index, j), so results do not depend on batching. Every item needs a gold
// answer (throws crucible::Error naming the item otherwise); a sample whose verdict throws
// is a counted failure, not a stop.
TaskEvaluation evaluate_task(Model& model, const TextTokenizer& tok, const Task& task,
                             const std::vector<TaskItem>& items, int samples,
                             const SamplingParams& params, uint64_t seed);

}  // namespace crucible::rl
