// Rubrics: per-item lists of criteria, each judged met / not met, aggregated into one score
// in [0, 1]. This file holds the types (criterion, rubric, dataset item) and their names. The
// files beside it hold one idea each: rubric_format.h (parsing every supported shape with
// errors that name file, line, item, criterion and field; the native JSON back),
// rubric_criteria.h (the programmatic criteria: regex, contains, numeric, length, json,
// verifier), rubric_aggregate.h (the aggregation rules), judge.h (the LLM judge) and
// rubric_scorer.h (the judge and the rules together). docs/RUBRICS.md describes the format and
// the formulas.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/chat_message.h"
#include "core/regex.h"

namespace crucible::reward {

enum class CriterionKind { judge, regex, contains, not_contains, numeric, length, json, verifier };

// "judge", "regex", ...; throws Error for an unknown name.
CriterionKind parse_criterion_kind(const std::string& name);
const char* to_string(CriterionKind kind);

enum class Aggregation { healthbench, weighted_mean, implicit };
Aggregation parse_aggregation(const std::string& name);  // throws Error when unknown
const char* to_string(Aggregation aggregation);

enum class LengthUnit { words, tokens, chars };

struct Criterion {
    std::string id;     // from the file, else "c<index>"
    std::string text;   // what the judge reads; for programmatic kinds a description
    double points = 1;  // HealthBench points / RaR weight; negative marks a pitfall
    CriterionKind kind = CriterionKind::judge;
    std::vector<std::string> tags;

    // regex: searched anywhere in the response (PCRE2; "flags": "i" ignores case).
    std::string pattern;
    std::shared_ptr<const Regex> compiled;
    // contains / not_contains
    std::string value;
    bool case_sensitive = false;
    // numeric: the number to find, compared with |x - target| <= max(abs_tol, rel_tol |target|).
    // The number compared is capture group 1 of `pattern` when given, else the final answer
    // (eval::extract_math_answer) when it parses, else the last number in the response.
    double target = 0;
    double abs_tol = 1e-6;
    double rel_tol = 0;
    // length: min_length <= count <= max_length (either may be absent).
    LengthUnit unit = LengthUnit::words;
    std::optional<double> min_length;
    std::optional<double> max_length;
    // json: the response (or its one fenced ```json block) parses; an object with these keys.
    std::vector<std::string> required_keys;
    // verifier: eval::verify(verifier, answer, response); verifier in exact|regex|numeric|mc|math.
    std::string verifier;
    std::string answer;

    bool is_programmatic() const { return kind != CriterionKind::judge; }
};

struct Rubric {
    std::vector<Criterion> criteria;
    std::optional<Aggregation> aggregation;  // absent: the scorer's default
};

// One dataset row: a conversation to be answered, optionally its response, and its rubric.
struct RubricItem {
    std::string id;                     // "id" / "prompt_id", else "<file>:<line>"
    std::vector<ChatMessage> messages;  // the conversation before the response
    std::optional<std::string> response;
    std::string reference_answer;   // RaR's reference answer, used by `rubric generate`
    std::vector<std::string> tags;  // HealthBench example_tags; inherit the item's score
    Rubric rubric;
};

// Where a value came from, for error messages: "data.jsonl:12: item 'q7'".
struct SourceRef {
    std::string file;
    int64_t line = 0;
    std::string item;
    std::string describe() const;
};

}  // namespace crucible::reward
