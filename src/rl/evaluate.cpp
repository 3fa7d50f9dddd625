#include "rl/evaluate.h"

#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/rng.h"
#include "engine/engine.h"

namespace crucible::rl {

void add_sample(TaskEvaluation& ev, size_t item, int64_t tokens,
                const std::function<std::optional<double>()>& correct) {
    ev.tokens += tokens;
    double score = NAN;
    try {
        const std::optional<double> c = correct();
        if (c && (*c == 0.0 || *c == 1.0)) score = *c;
    } catch (const std::exception&) {
    }
    ev.scores[item].push_back(score);
    if (std::isnan(score)) ev.failures++;
}

void finish_evaluation(TaskEvaluation& ev) {
    double total = 0.0;
    int64_t count = 0;
    for (const std::vector<double>& item : ev.scores) {
        for (double score : item) {
            if (std::isnan(score)) continue;
            total += score;
            count++;
        }
    }
    ev.mean = count > 0 ? total / count : 0.0;
    const int64_t n = count + ev.failures;
    ev.mean_length = n > 0 ? static_cast<double>(ev.tokens) / static_cast<double>(n) : 0.0;
}

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
    for (size_t i = 0; i < items.size(); i++) {
        for (const GeneratedSequence& s : outs[i]) {
            std::vector<int32_t> ids = s.tokens;
            if (!ids.empty() && ids.back() == tok.eos) ids.pop_back();
            add_sample(ev, i, static_cast<int64_t>(s.tokens.size()),
                       [&] { return task.score(items[i], tok.decode(ids)).correct; });
        }
    }
    finish_evaluation(ev);
    ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return ev;
}

TaskEvaluation evaluate_episodes(const EpisodeSource& source, const TextTokenizer& tok,
                                 const RlEnvConfig& env, const Task& task,
                                 const std::vector<TaskItem>& items, int samples,
                                 const SamplingParams& params, uint64_t seed,
                                 const EpisodeLimits& limits,
                                 std::vector<std::vector<Episode>>* episodes_out) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<EpisodeGroup> groups;
    for (const TaskItem& item : items) {
        EpisodeGroup g;
        g.item = &item;
        for (int s = 0; s < samples; s++) g.envs.push_back(make_environment(env, task, item));
        g.params = params;
        g.params.seed = Rng::mix(seed, static_cast<uint64_t>(item.index));
        g.params.stop_ids = {tok.eos};
        groups.push_back(std::move(g));
    }
    std::vector<std::vector<Episode>> episodes = run_episodes(groups, source, tok, limits);
    TaskEvaluation ev;
    ev.scores.resize(items.size());
    for (size_t i = 0; i < items.size(); i++) {
        for (const Episode& e : episodes[i]) {
            add_sample(ev, i, static_cast<int64_t>(e.completion.size()),
                       [&]() -> std::optional<double> {
                           if (!e.error.empty()) return std::nullopt;
                           return e.env->score().correct;
                       });
        }
    }
    finish_evaluation(ev);
    ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (episodes_out) *episodes_out = std::move(episodes);
    return ev;
}

}  // namespace crucible::rl
