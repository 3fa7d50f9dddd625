// Rubrics: per-item lists of criteria, each judged met / not met, aggregated into one score
// in [0, 1]. This file holds the format (parsing with errors that name file, line, item,
// criterion and field), the importers (HealthBench, RaR, RLCF checklists), the programmatic
// criteria (regex, contains, numeric, length, json, verifier) and the aggregation rules.
// The LLM judge lives in judge.h; RubricScorer (rubric_scorer.h) puts the two together.
// docs/RUBRICS.md describes the format and the formulas.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "serve/openai_client.h"

namespace crucible::reward {

enum class CriterionKind { judge, regex, contains, not_contains, numeric, length, json, verifier };

// "judge", "regex", ...; throws Error for an unknown name.
CriterionKind criterion_kind_from_string(const std::string& name);
const char* to_string(CriterionKind kind);

enum class Aggregation { healthbench, weighted_mean, implicit };
Aggregation aggregation_from_string(const std::string& name);  // throws Error when unknown
const char* to_string(Aggregation aggregation);

enum class LengthUnit { words, tokens, chars };

// A compiled PCRE2 pattern (Perl syntax, UTF-8; invalid UTF-8 in a subject is tolerated; the
// effort of one match is bounded, so a pathological pattern fails to match instead of hanging
// or overflowing the stack). Immutable after compile, so one may be shared across threads.
class Pattern {
  public:
    // nullptr with *error set when the pattern does not compile.
    static std::shared_ptr<const Pattern> compile(const std::string& pattern, bool icase,
                                                  std::string* error);
    ~Pattern();
    Pattern(const Pattern&) = delete;
    Pattern& operator=(const Pattern&) = delete;

    bool search(std::string_view text) const;
    // Capture group `group` of the last non-overlapping match; nullopt when none matched.
    std::optional<std::string> last_group(std::string_view text, int group) const;
    int capture_count() const { return capture_count_; }
    bool icase() const { return icase_; }

  private:
    Pattern() = default;
    void* code_ = nullptr;  // pcre2_code_8*
    int capture_count_ = 0;
    bool icase_ = false;
};

struct Criterion {
    std::string id;     // from the file, else "c<index>"
    std::string text;   // what the judge reads; for programmatic kinds a description
    double points = 1;  // HealthBench points / RaR weight; negative marks a pitfall
    CriterionKind kind = CriterionKind::judge;
    std::vector<std::string> tags;

    // regex: searched anywhere in the response (PCRE2; "flags": "i" ignores case).
    std::string pattern;
    std::shared_ptr<const Pattern> compiled;
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
nlohmann::json criterion_to_json(const Criterion& c);
nlohmann::json rubric_to_json(const Rubric& r);

// ---- programmatic criteria ---------------------------------------------------------------------

// Counts the tokens of a response for `length` criteria in tokens. The default counts UTF-8
// bytes, which is the token count of the project's byte tokenizer; the RL trainer passes its
// own tokenizer's count.
using TokenCounter = std::function<int64_t(std::string_view)>;

// Whether a programmatic criterion is met by `response` (1 or 0). REQUIRES: c.is_programmatic().
// Never throws for any response text.
bool check_programmatic(const Criterion& c, std::string_view response,
                        const TokenCounter& count_tokens = {});

// Word count: runs of non-whitespace.
int64_t count_words(std::string_view text);

// ---- aggregation -------------------------------------------------------------------------------

// met[i] in [0, 1] for criterion i (a vote share, or 0/1); NaN when unknown.
// healthbench:   raw = sum_i points_i met_i / sum_{points_i > 0} points_i   (may be < 0)
//                score = clip(raw, 0, 1)
// weighted_mean: a pitfall (w < 0) counts as "avoided the pitfall" with weight |w|:
//                score = sum_i |w_i| m_i / sum_i |w_i|,  m_i = met_i (w_i > 0), 1 - met_i (w_i < 0)
// Returns NaN when any met[i] is NaN. REQUIRES: met.size() == rubric.criteria.size(),
// aggregation != implicit (an implicit score comes from the judge).
struct Aggregate {
    double score = 0;
    double raw = 0;  // healthbench's unclipped ratio; equal to score for weighted_mean
};
Aggregate aggregate(const Rubric& rubric, std::span<const double> met, Aggregation aggregation);

// The same rule over the criteria carrying `tag` only; NaN when none of them has positive
// points (HealthBench's per-tag score for one example).
double aggregate_tag(const Rubric& rubric, std::span<const double> met, Aggregation aggregation,
                     const std::string& tag);

}  // namespace crucible::reward
