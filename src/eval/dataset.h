// Eval datasets: JSONL items {id, prompt | messages, answer | gold, verifier?, cluster?,
// metadata?}, or rubric items that carry a `rubric` (docs/RUBRICS.md: rubric | rubrics |
// checklist, criterion tags, example_tags, aggregation) instead of or besides an answer; those
// are scored by the rubric (verifier "rubric"). A bad line (not JSON, no prompt, no answer, an
// unknown verifier, a bad rubric) is not fatal: it is left out and reported with its file,
// line and reason, so a run goes on and its report says how many were excluded. Duplicate ids
// are fatal (runs are matched by id).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "reward/rubric.h"

namespace crucible::eval {

struct EvalItem {
    std::string id;  // the "id" field (a string or a number), else "line-N"
    // Exactly one of the two: a raw prompt, or chat messages (role, content).
    std::string prompt;
    std::vector<std::pair<std::string, std::string>> messages;
    std::string answer;    // "answer", else "gold"; a JSON number becomes its decimal text
    std::string verifier;  // the item's "verifier", else the dataset default; "rubric"
    std::string cluster;   // the cluster field's value as text ("" when absent)
    int line = 0;          // 1-based line in the file
    // The rubric of a rubric item (verifier "rubric"; its id is the item's); null otherwise.
    std::shared_ptr<const reward::RubricItem> rubric;

    bool is_chat() const { return !messages.empty(); }
    bool is_rubric() const { return rubric != nullptr; }
};

struct Dataset {
    std::vector<EvalItem> items;
    std::vector<std::string> excluded;  // "FILE:LINE: reason", one per bad line
};

// The verifier kinds `verify` accepts (verifiers.h), "choice" being an alias of "mc". ("rubric"
// is not one: it is the verifier of items that carry a rubric.)
bool is_known_verifier(const std::string& kind);
// "python:FILE:FUNCTION" or "python:FILE:FUNCTION:verl": a Python function scores the item
// (reward/python_reward.h; trl's signature unless ":verl"), in eval only.
bool is_python_verifier(const std::string& kind);

// Reads `path`. `default_verifier` applies to items without one; `cluster_field` names the
// field holding an item's cluster ("" for none). Throws crucible::Error when the file cannot
// be read or two items share an id (naming both lines).
Dataset load_dataset(const std::string& path, const std::string& default_verifier = "math",
                     const std::string& cluster_field = "cluster");

}  // namespace crucible::eval
