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
    std::vector<std::vector<double>> scores;  // [problem][sample] the task's score
    double mean = 0.0;                        // over every sample
    double mean_length = 0.0;                 // completion tokens
    int64_t tokens = 0;
    double seconds = 0.0;
};

// `samples` completions of each item (temperature 0: greedy, one is enough). Sample j of item
// i is seeded from (seed, item index, j), so results do not depend on batching.
TaskEvaluation evaluate_task(Model& model, const TextTokenizer& tok, const Task& task,
                             const std::vector<TaskItem>& items, int samples,
                             const SamplingParams& params, uint64_t seed);

}  // namespace crucible::rl
