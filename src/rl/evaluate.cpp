#include "rl/evaluate.h"

#include <chrono>

#include "core/error.h"
#include "core/rng.h"
#include "engine/engine.h"

namespace crucible::rl {

TaskEvaluation evaluate_task(Model& model, const TextTokenizer& tok, const Task& task,
                             const std::vector<TaskItem>& items, int samples,
                             const SamplingParams& params, uint64_t seed) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<GenerationRequest> requests;
    for (const TaskItem& item : items) {
        GenerationRequest r;
        r.prompt = item.prompt_ids;
        r.params = params;
        r.params.seed = Rng::mix(seed, static_cast<uint64_t>(item.index));
        r.params.stop_ids = {tok.eos};
        r.params.stop_strings = task.stop_strings;
        r.n = samples;
        requests.push_back(std::move(r));
    }
    EngineOptions options;
    options.detokenize = tok.decode;
    Engine engine(model, options);
    const auto outs = engine.generate(requests);
    TaskEvaluation ev;
    ev.scores.resize(items.size());
    double total = 0.0;
    int64_t count = 0;
    for (size_t i = 0; i < items.size(); i++) {
        for (const GeneratedSequence& s : outs[i]) {
            std::vector<int32_t> ids = s.tokens;
            if (!ids.empty() && ids.back() == tok.eos) ids.pop_back();
            const std::optional<double> correct = task.score(items[i], tok.decode(ids)).correct;
            if (!correct) {
                throw Error("evaluate_task: held-out item '" + items[i].id +
                            "' has no gold answer to score accuracy against");
            }
            const double score = *correct;
            ev.scores[i].push_back(score);
            total += score;
            ev.tokens += static_cast<int64_t>(s.tokens.size());
            count++;
        }
    }
    ev.mean = count > 0 ? total / count : 0.0;
    ev.mean_length = count > 0 ? static_cast<double>(ev.tokens) / count : 0.0;
    ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return ev;
}

}  // namespace crucible::rl
