// Scoring a model on a task's held-out problems by sampling from the generation engine: the
// per-problem, per-sample scores that the statistics of src/eval turn into accuracies,
// intervals and paired tests.
#pragma once

#include <cstdint>
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

// `samples` completions of each item (temperature 0: greedy, one is enough), scored by the
// task's correctness (format credit is not accuracy). Sample j of item i is seeded from
// (seed, item index, j), so results do not depend on batching. Every item needs a gold
// answer (throws crucible::Error naming the item otherwise); a sample whose verdict throws
// is a counted failure, not a stop.
TaskEvaluation evaluate_task(Model& model, const TextTokenizer& tok, const Task& task,
                             const std::vector<TaskItem>& items, int samples,
                             const SamplingParams& params, uint64_t seed);

}  // namespace crucible::rl
