// The rubric file formats: a criterion, a rubric and a dataset row in every supported shape
// (native, HealthBench, RaR, RLCF checklists), and the native JSON written back.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reward/rubric.h"

namespace crucible::reward {

// Parses a criterion in any supported shape: native {criterion, points|weight, kind, ...},
// HealthBench {criterion, points, tags}, RaR {title, description, weight}, RLCF
// {question, weight} or a bare string (a judge criterion with 1 point). `index` is its
// position in the rubric (0-based). Throws Error naming source, criterion index and field.
Criterion parse_criterion(const nlohmann::json& j, size_t index, const SourceRef& where);

// Parses a rubric (a JSON array of criteria, or an RLCF checklist string with one question a
// line, each optionally followed by "(weight)"). Refuses an empty rubric, duplicate ids and a
// rubric with no positive points.
Rubric parse_rubric(const nlohmann::json& j, const SourceRef& where);

// Parses the RLCF checklist text: one question a line (headings ending in ":" skipped),
// leading "1." / "-" markers dropped,
// a trailing "(NN)" read as the weight (default 100), a line "<END>" ends it.
Rubric parse_checklist_text(const std::string& text, const SourceRef& where);

// Parses one dataset row. Accepted fields (all formats at once, first match wins):
//   conversation  "messages" | "prompt" (a string or a list of {role, content}) | "question"
//   response      "response" | "completion" (string)
//   rubric        "rubric" | "rubrics" | "checklist"
//   reference     "reference_answer" | "reference" | "answer"
//   id            "id" | "prompt_id";  tags "example_tags" | "tags";  "aggregation"
// `require_rubric` false allows rows without a rubric (for `rubric generate`).
RubricItem parse_rubric_item(const nlohmann::json& j, const SourceRef& where,
                             bool require_rubric = true);

// Every non-blank line of a JSONL file through parse_rubric_item.
std::vector<RubricItem> load_rubric_items(const std::string& path, bool require_rubric = true);

// The criterion back as native JSON (round-trips through parse_criterion).
nlohmann::json to_json(const Criterion& c);
nlohmann::json to_json(const Rubric& r);

}  // namespace crucible::reward
