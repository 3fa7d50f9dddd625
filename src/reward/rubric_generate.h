// Rubric generation following Rubrics as Rewards (RaR, arXiv 2507.17746): a judge model,
// grounded in a reference answer, writes 7-20 self-contained criteria, each with a 2-4 word
// title, a description, a category (Essential / Important / Optional / Pitfall) and a weight
// (Essential 5, Important 3-4, Optional 1-2, Pitfall -1 or -2). The output is validated
// strictly and retried a bounded number of times; the result is for a person to review.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "reward/rubric.h"
#include "serve/openai_client.h"

namespace crucible::reward {

struct GenerateOptions {
    std::string model;
    int min_criteria = 7;
    int max_criteria = 20;
    int max_attempts = 3;  // the first request plus retries on invalid output
    double temperature = 0;
    int max_tokens = 4096;
};

// The request sent for one item (public for tests).
std::vector<ChatMessage> generate_prompt(const RubricItem& item, const GenerateOptions& options);

// Validates a generator reply {"rubric": [{"title", "description", "category", "weight"}, ...]}:
// the count within [min, max], each field present, category one of the four, weight within
// its category's range, at least one positive weight. Returns the rubric (category kept as a
// "category:<name>" tag) or nullopt with *why.
std::optional<Rubric> parse_generated_rubric(const std::string& reply,
                                             const GenerateOptions& options, std::string* why);

struct GeneratedRubric {
    bool ok = false;
    Rubric rubric;
    std::string error;
    int attempts = 0;
};

// Asks `client` for a rubric for `item` (its conversation and reference answer), retrying on
// invalid output with the reason. Never throws for endpoint or output failures.
GeneratedRubric generate_rubric(OpenAIClient& client, const RubricItem& item,
                                const GenerateOptions& options);

// The rubric as RaR's dataset format: [{"title", "description", "weight"}] plus "category".
nlohmann::json rubric_to_rar_json(const Rubric& rubric);

}  // namespace crucible::reward
