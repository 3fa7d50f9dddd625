// From a run's stored samples to its metrics (results.json and the terminal table), and the
// paired comparison of two runs. Every number is recomputed from RUN_DIR/samples.sqlite.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/statistics.h"
#include "reward/rubric.h"
#include "reward/rubric_scorer.h"

namespace crucible::eval {

// A run's scores as the statistics want them: one row per item (dataset order), K columns,
// NaN for a missing or failed sample; answers for majority voting, canonicalised per item so
// that answers the item's verifier finds equal share one spelling.
struct RunData {
    std::string dir;
    std::string model;
    int k = 0;
    std::vector<std::string> ids;
    std::vector<std::string> clusters;  // "" when the item has none
    ScoreRows scores;
    std::vector<std::vector<std::string>> answers;
    int64_t n_failed = 0;               // failed samples among the first K
    std::vector<std::string> failures;  // the first few failure reasons, "id#j: reason"
    std::vector<std::string> excluded;  // dataset lines left out, as recorded by the eval
    // The run's recorded settings: model, data, chat (and chat_reason), temperature, top_p,
    // max_tokens, seed, strip_think, env, k (judge totals and exclusions left out).
    std::map<std::string, std::string> settings;

    // Rubric items: their rubric (null for other items) and, per sample index < K, the stored
    // per-criterion result of the run's judge and of the second judge (nullopt when absent).
    std::vector<std::shared_ptr<const reward::RubricItem>> rubrics;
    std::vector<std::vector<std::optional<reward::RubricResult>>> rubric_results;
    std::vector<std::vector<std::optional<reward::RubricResult>>> rubric_results_b;
    std::string judge, judge_b;                             // endpoints as recorded ("" when none)
    nlohmann::json judge_stats = nlohmann::json::object();  // the run's totals (JudgeStats keys)
    nlohmann::json judge_b_stats = nlohmann::json::object();
    bool has_rubric() const;
};

// The settings that change what a score means: two runs that differ in one of them are not
// measuring the same thing (chat vs raw prompts scored 2.5% vs 65.6% on one checkpoint).
inline constexpr const char* kScoringSettings[] = {"chat",       "temperature", "top_p",
                                                   "max_tokens", "strip_think", "env"};

// Reads RUN_DIR/samples.sqlite. Throws crucible::Error when it is missing or holds no items.
RunData load_run(const std::string& run_dir);

struct ResultsOptions {
    int bootstrap = 0;  // resamples for the bootstrap intervals (0: none)
    uint64_t bootstrap_seed = 0;
    double level = 0.95;
};

// Every metric with its interval (the layout is documented in docs/EVALUATION.md). A run with
// rubric items gets a "rubric" section (mean score clustered by item, HealthBench's overall
// figure, per-tag scores, judge stats, and with a second judge its score and the agreement);
// maj@K (no extracted answer to vote on) and Clopper-Pearson (not a binomial count) are left
// out of such a run, and pass@k / pass^k count a sample as correct only with full credit.
nlohmann::json compute_results(const RunData& run, const ResultsOptions& options = {});

// A fixed-width table of compute_results' metrics for the terminal.
std::string results_table(const nlohmann::json& results);

struct CompareOptions {
    double delta = 0.05;       // the difference the power analysis sizes the eval for
    int permutations = 10000;  // sign-flip resamples beyond 20 items (exact below)
    uint64_t seed = 0;
    double level = 0.95;
};

// Paired comparison of two runs on the items present in both (matched by id): the per-item
// difference of avg@K with its SE, CI, paired-t and sign-flip p-values, and Miller's power
// analysis (MDE at this n and K, items and samples needed for options.delta).
// Throws crucible::Error when the runs share no item.
nlohmann::json compare_runs(const RunData& a, const RunData& b, const CompareOptions& options);

// compare_runs' result as text for the terminal.
std::string comparison_text(const nlohmann::json& comparison);

}  // namespace crucible::eval
