// RubricScorer: the one entry point the RL trainer (`reward: rubric`), the eval harness and
// `crucible rubric score` use. It checks programmatic criteria in place, issues the judge
// calls of a whole batch concurrently (bounded by JudgeOptions::max_concurrency), averages
// votes and aggregates. A judge failure marks that sample (failed = true, with the reason);
// it never throws out of a batch.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "reward/judge.h"
#include "reward/rubric.h"
#include "reward/rubric_criteria.h"

namespace crucible::reward {

struct CriterionResult {
    std::string id;
    double met = 0;  // share of votes that found it met (0/1 for programmatic); NaN: unknown
    int votes = 0;   // judge votes that answered (0 for programmatic)
    std::string explanation;
    std::string error;  // why met is unknown
};

struct RubricResult {
    double score = 0;  // in [0, 1]; NaN when failed
    double raw = 0;    // healthbench: the unclipped ratio (may be < 0); else equal to score
    Aggregation aggregation = Aggregation::healthbench;
    bool failed = false;
    std::string failure;                    // the first error, naming the criterion
    std::vector<CriterionResult> criteria;  // in rubric order
    std::string explanation;                // the implicit judge's explanation
    nlohmann::json to_json() const;
    // The inverse of to_json (null numbers read back as NaN). Throws Error on another shape.
    static RubricResult from_json(const nlohmann::json& j);
};

struct RubricScorerOptions {
    Aggregation aggregation = Aggregation::healthbench;  // when an item names none
    TokenCounter count_tokens;                           // for `length` in tokens; default bytes
};

class RubricScorer {
  public:
    // `judge` may be null when no item needs one (programmatic criteria only); an item that
    // needs it then fails with a reason.
    RubricScorer(RubricScorerOptions options, std::shared_ptr<Judge> judge);

    // One result per item; responses[i] is scored against items[i]. An empty `responses`
    // scores each item's own `response` (an item without one fails). Thread-safe: several
    // batches may be scored at once. REQUIRES: responses empty or responses.size() ==
    // items.size() (else throws Error).
    std::vector<RubricResult> score_batch(std::span<const RubricItem> items,
                                          std::span<const std::string> responses = {}) const;
    RubricResult score(const RubricItem& item, const std::string& response) const;

    // The judge's totals (zeros without a judge).
    JudgeStats judge_stats() const;
    const RubricScorerOptions& options() const { return options_; }

  private:
    RubricScorerOptions options_;
    std::shared_ptr<Judge> judge_;
};

// Everything needed to build a scorer from a config (the RL trainer's `reward: rubric` keys,
// the CLI's flags), with the same names and defaults as `crucible rubric score`.
struct RubricScorerConfig {
    std::string judge;                        // "openai:BASE_URL#MODEL"; empty: programmatic only
    std::string mode = "per-criterion";       // or "one-call"
    std::string aggregation = "healthbench";  // or "weighted_mean", "implicit"
    int votes = 1;
    double temperature = 0;
    int max_tokens = 1024;
    int max_attempts = 3;
    std::string cache;  // SQLite judge cache; empty: none
    int concurrency = 8;
    double rps = 0;
    int retries = 4;  // HTTP retries on 429/5xx/timeouts
    double timeout_s = 120;
    double price_in = 0;   // USD per 1M judge prompt tokens
    double price_out = 0;  // USD per 1M judge completion tokens
    uint64_t seed = 0;
};

// Throws Error naming the bad value (endpoint, mode, aggregation, votes, ...).
std::unique_ptr<RubricScorer> make_rubric_scorer(const RubricScorerConfig& config,
                                                 TokenCounter count_tokens = {});

}  // namespace crucible::reward
