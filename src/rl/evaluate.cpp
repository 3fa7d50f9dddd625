#include "rl/evaluate.h"

#include <chrono>
#include <cmath>
#include <optional>

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
        if (!item.has_gold) {
            throw Error("evaluate_task: held-out item '" + item.id +
                        "' has no gold answer to score accuracy against");
        }
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
            ev.tokens += static_cast<int64_t>(s.tokens.size());
            // A sample is correct (1) or not (0); a verdict that throws or is neither is a
            // failure: NaN in `scores`, counted, and left out of the mean.
            double score = NAN;
            try {
                const std::optional<double> correct = task.score(items[i], tok.decode(ids)).correct;
                if (correct && (*correct == 0.0 || *correct == 1.0)) score = *correct;
            } catch (const std::exception&) {
            }
            ev.scores[i].push_back(score);
            if (std::isnan(score)) {
                ev.failures++;
                continue;
            }
            total += score;
            count++;
        }
    }
    ev.mean = count > 0 ? total / count : 0.0;
    const int64_t n = count + ev.failures;
    ev.mean_length = n > 0 ? static_cast<double>(ev.tokens) / static_cast<double>(n) : 0.0;
    ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return ev;
}

}  // namespace crucible::rl
