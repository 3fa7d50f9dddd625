#define PCRE2_CODE_UNIT_WIDTH 8
#include "reward/rubric.h"

#include <pcre2.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/jsonl.h"
#include "reward/verify/math_answer.h"
#include "reward/verify/verifiers.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

[[noreturn]] void fail_at(const SourceRef& where, const std::string& what) {
    throw Error(where.describe() + ": " + what);
}

std::string criterion_ref(size_t index, const std::string& field) {
    return "criterion " + std::to_string(index) + (field.empty() ? "" : " field '" + field + "'");
}

std::string get_string(const json& j, const char* key, size_t index, const SourceRef& where,
                       bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) fail_at(where, criterion_ref(index, key) + ": missing (expected a string)");
        return "";
    }
    if (!it->is_string())
        fail_at(where, criterion_ref(index, key) + ": expected a string, got " + it->dump());
    return it->get<std::string>();
}

std::optional<double> get_number(const json& j, const char* key, size_t index,
                                 const SourceRef& where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number() || !std::isfinite(it->get<double>()))
        fail_at(where, criterion_ref(index, key) + ": expected a finite number, got " + it->dump());
    return it->get<double>();
}

std::vector<std::string> get_string_list(const json& j, const char* key, size_t index,
                                         const SourceRef& where) {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    if (!it->is_array())
        fail_at(where,
                criterion_ref(index, key) + ": expected a list of strings, got " + it->dump());
    for (const json& v : *it) {
        if (!v.is_string())
            fail_at(where, criterion_ref(index, key) +
                               ": expected a list of strings, got element " + v.dump());
        out.push_back(v.get<std::string>());
    }
    return out;
}

std::shared_ptr<const Pattern> compile_regex(const std::string& pattern, bool icase, size_t index,
                                             const SourceRef& where, const char* field) {
    std::string error;
    auto p = Pattern::compile(pattern, icase, &error);
    if (!p)
        fail_at(where, criterion_ref(index, field) + ": invalid regular expression '" + pattern +
                           "' (" + error + ")");
    return p;
}

// The fields each kind accepts beyond the common ones; anything else is a typo we refuse.
const std::set<std::string>& allowed_fields(CriterionKind kind) {
    static const std::set<std::string> judge{}, regex{"pattern", "flags"},
        contains{"value", "case_sensitive"},
        numeric{"target", "tolerance", "rel_tolerance", "pattern"}, length{"unit", "min", "max"},
        js{"required_keys"}, verifier{"verifier", "answer"};
    switch (kind) {
        case CriterionKind::judge:
            return judge;
        case CriterionKind::regex:
            return regex;
        case CriterionKind::contains:
        case CriterionKind::not_contains:
            return contains;
        case CriterionKind::numeric:
            return numeric;
        case CriterionKind::length:
            return length;
        case CriterionKind::json:
            return js;
        case CriterionKind::verifier:
            return verifier;
    }
    return judge;
}

const std::set<std::string> kCommonFields{"id",       "criterion", "points", "weight",
                                          "kind",     "tags",      "title",  "description",
                                          "question", "category"};

std::string describe_programmatic(const Criterion& c) {
    switch (c.kind) {
        case CriterionKind::regex:
            return "The response matches the pattern /" + c.pattern + "/";
        case CriterionKind::contains:
            return "The response contains \"" + c.value + "\"";
        case CriterionKind::not_contains:
            return "The response does not contain \"" + c.value + "\"";
        case CriterionKind::numeric: {
            char buf[64];
            std::snprintf(buf, sizeof(buf), "%g", c.target);
            return std::string("The response's answer is ") + buf;
        }
        case CriterionKind::length:
            return "The response has the required length";
        case CriterionKind::json:
            return "The response is valid JSON";
        case CriterionKind::verifier:
            return "The response's answer equals " + c.answer + " (" + c.verifier + ")";
        case CriterionKind::judge:
            break;
    }
    return "";
}

}  // namespace

std::string SourceRef::describe() const {
    std::string s = file.empty() ? std::string("<input>") : file;
    if (line > 0) {
        s.push_back(':');
        s.append(std::to_string(line));
    }
    if (!item.empty()) {
        s.append(": item '");
        s.append(item);
        s.push_back('\'');
    }
    return s;
}

CriterionKind criterion_kind_from_string(const std::string& name) {
    static const std::pair<const char*, CriterionKind> kinds[] = {
        {"judge", CriterionKind::judge},       {"regex", CriterionKind::regex},
        {"contains", CriterionKind::contains}, {"not_contains", CriterionKind::not_contains},
        {"numeric", CriterionKind::numeric},   {"length", CriterionKind::length},
        {"json", CriterionKind::json},         {"verifier", CriterionKind::verifier}};
    for (const auto& [n, k] : kinds)
        if (name == n) return k;
    throw Error("unknown criterion kind '" + name +
                "' (expected judge, regex, contains, not_contains, numeric, length, json or "
                "verifier)");
}

const char* to_string(CriterionKind kind) {
    switch (kind) {
        case CriterionKind::judge:
            return "judge";
        case CriterionKind::regex:
            return "regex";
        case CriterionKind::contains:
            return "contains";
        case CriterionKind::not_contains:
            return "not_contains";
        case CriterionKind::numeric:
            return "numeric";
        case CriterionKind::length:
            return "length";
        case CriterionKind::json:
            return "json";
        case CriterionKind::verifier:
            return "verifier";
    }
    return "?";
}

Aggregation aggregation_from_string(const std::string& name) {
    if (name == "healthbench") return Aggregation::healthbench;
    if (name == "weighted_mean") return Aggregation::weighted_mean;
    if (name == "implicit") return Aggregation::implicit;
    throw Error("unknown aggregation '" + name +
                "' (expected healthbench, weighted_mean or implicit)");
}

const char* to_string(Aggregation aggregation) {
    switch (aggregation) {
        case Aggregation::healthbench:
            return "healthbench";
        case Aggregation::weighted_mean:
            return "weighted_mean";
        case Aggregation::implicit:
            return "implicit";
    }
    return "?";
}

Criterion parse_criterion(const json& j, size_t index, const SourceRef& where) {
    Criterion c;
    c.id = std::string("c").append(std::to_string(index));
    if (j.is_string()) {  // a bare checklist question
        c.text = trim(j.get<std::string>());
        if (c.text.empty()) fail_at(where, criterion_ref(index, "") + ": empty criterion text");
        return c;
    }
    if (!j.is_object())
        fail_at(where, criterion_ref(index, "") + ": expected an object or a string, got " +
                           j.dump().substr(0, 80));

    if (j.contains("kind")) try {
            c.kind = criterion_kind_from_string(get_string(j, "kind", index, where, true));
        } catch (const Error& e) {
            fail_at(where, criterion_ref(index, "kind") + ": " + e.what());
        }
    for (const auto& [key, value] : j.items()) {
        (void)value;
        if (!kCommonFields.count(key) && !allowed_fields(c.kind).count(key))
            fail_at(where, criterion_ref(index, key) + ": unknown field for a " +
                               to_string(c.kind) + " criterion");
    }

    const std::string id = get_string(j, "id", index, where, false);
    if (!id.empty()) c.id = id;

    // The text: native/HealthBench "criterion", RaR "description" (with "title"), RLCF "question".
    std::string text = get_string(j, "criterion", index, where, false);
    if (text.empty()) text = get_string(j, "description", index, where, false);
    if (text.empty()) text = get_string(j, "question", index, where, false);
    const std::string title = get_string(j, "title", index, where, false);
    if (text.empty()) text = title;
    c.text = trim(text);

    const auto points = get_number(j, "points", index, where);
    const auto weight = get_number(j, "weight", index, where);
    if (points && weight)
        fail_at(where,
                criterion_ref(index, "points") + ": give either 'points' or 'weight', not both");
    if (!points && !weight)
        fail_at(where, criterion_ref(index, "points") +
                           ": missing (expected a number in 'points' "
                           "or 'weight')");
    c.points = points ? *points : *weight;
    if (c.points == 0)
        fail_at(where, criterion_ref(index, points ? "points" : "weight") + ": is 0");
    c.tags = get_string_list(j, "tags", index, where);
    const std::string category = get_string(j, "category", index, where, false);
    if (!category.empty()) c.tags.push_back("category:" + category);

    switch (c.kind) {
        case CriterionKind::judge:
            if (c.text.empty())
                fail_at(where, criterion_ref(index, "criterion") +
                                   ": missing (a judge criterion needs its text)");
            break;
        case CriterionKind::regex: {
            c.pattern = get_string(j, "pattern", index, where, true);
            const std::string flags = get_string(j, "flags", index, where, false);
            if (flags != "" && flags != "i")
                fail_at(where, criterion_ref(index, "flags") +
                                   ": expected \"i\" or nothing, got '" + flags + "'");
            c.compiled = compile_regex(c.pattern, flags == "i", index, where, "pattern");
            break;
        }
        case CriterionKind::contains:
        case CriterionKind::not_contains: {
            c.value = get_string(j, "value", index, where, true);
            if (c.value.empty()) fail_at(where, criterion_ref(index, "value") + ": is empty");
            auto it = j.find("case_sensitive");
            if (it != j.end()) {
                if (!it->is_boolean())
                    fail_at(where,
                            criterion_ref(index, "case_sensitive") + ": expected true or false");
                c.case_sensitive = it->get<bool>();
            }
            break;
        }
        case CriterionKind::numeric: {
            const auto target = get_number(j, "target", index, where);
            if (!target)
                fail_at(where, criterion_ref(index, "target") + ": missing (expected a number)");
            c.target = *target;
            if (auto t = get_number(j, "tolerance", index, where)) c.abs_tol = *t;
            if (auto t = get_number(j, "rel_tolerance", index, where)) c.rel_tol = *t;
            if (c.abs_tol < 0 || c.rel_tol < 0)
                fail_at(where, criterion_ref(index, "tolerance") + ": must be >= 0");
            c.pattern = get_string(j, "pattern", index, where, false);
            if (!c.pattern.empty()) {
                c.compiled = compile_regex(c.pattern, false, index, where, "pattern");
                if (c.compiled->capture_count() < 1)
                    fail_at(where, criterion_ref(index, "pattern") +
                                       ": needs a capture group around the number");
            }
            break;
        }
        case CriterionKind::length: {
            const std::string unit = get_string(j, "unit", index, where, false);
            if (unit == "" || unit == "words")
                c.unit = LengthUnit::words;
            else if (unit == "tokens")
                c.unit = LengthUnit::tokens;
            else if (unit == "chars")
                c.unit = LengthUnit::chars;
            else
                fail_at(where, criterion_ref(index, "unit") +
                                   ": expected words, tokens or chars, got '" + unit + "'");
            c.min_length = get_number(j, "min", index, where);
            c.max_length = get_number(j, "max", index, where);
            if (!c.min_length && !c.max_length)
                fail_at(where, criterion_ref(index, "min") + ": give 'min', 'max' or both");
            if (c.min_length && c.max_length && *c.min_length > *c.max_length)
                fail_at(where, criterion_ref(index, "min") + ": is greater than 'max'");
            break;
        }
        case CriterionKind::json:
            c.required_keys = get_string_list(j, "required_keys", index, where);
            break;
        case CriterionKind::verifier: {
            c.verifier = get_string(j, "verifier", index, where, true);
            static const std::set<std::string> kinds{"exact", "regex",  "numeric",
                                                     "mc",    "choice", "math"};
            if (!kinds.count(c.verifier))
                fail_at(where, criterion_ref(index, "verifier") + ": unknown verifier '" +
                                   c.verifier + "' (expected exact, regex, numeric, mc or math)");
            c.answer = get_string(j, "answer", index, where, true);
            if (c.verifier == "regex") {  // eval::verify_regex throws when it does not compile
                try {
                    eval::verify_regex(c.answer, "");
                } catch (const Error& e) {
                    fail_at(where, criterion_ref(index, "answer") + ": " + e.what());
                }
            }
            break;
        }
    }
    if (c.text.empty()) c.text = describe_programmatic(c);
    return c;
}

Rubric parse_rubric(const json& j, const SourceRef& where) {
    if (j.is_string()) return parse_checklist_text(j.get<std::string>(), where);
    if (!j.is_array())
        fail_at(where, "rubric: expected a list of criteria, got " + j.dump().substr(0, 80));
    Rubric r;
    for (size_t i = 0; i < j.size(); ++i) r.criteria.push_back(parse_criterion(j[i], i, where));
    if (r.criteria.empty()) fail_at(where, "rubric: has no criteria");
    std::set<std::string> ids;
    double positive = 0;
    for (size_t i = 0; i < r.criteria.size(); ++i) {
        if (!ids.insert(r.criteria[i].id).second)
            fail_at(where, criterion_ref(i, "id") + ": duplicate id '" + r.criteria[i].id + "'");
        if (r.criteria[i].points > 0) positive += r.criteria[i].points;
    }
    if (positive <= 0) fail_at(where, "rubric: no criterion has positive points");
    return r;
}

Rubric parse_checklist_text(const std::string& text, const SourceRef& where) {
    json list = json::array();
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = trim(std::string_view(text).substr(start, end - start));
        start = end + 1;
        if (line == "<END>") break;
        if (line.empty() || line.back() == ':') continue;  // blank, or a heading
        // Drop list markers: "1.", "1)", "-", "*".
        size_t p = 0;
        while (p < line.size() && line[p] >= '0' && line[p] <= '9') ++p;
        if (p > 0 && p < line.size() && (line[p] == '.' || line[p] == ')'))
            line = trim(line.substr(p + 1));
        else if (line[0] == '-' || line[0] == '*')
            line = trim(line.substr(1));
        double weight = 100;
        if (!line.empty() && line.back() == ')') {
            const size_t open = line.rfind('(');
            if (open != std::string::npos) {
                const auto n = eval::parse_number(line.substr(open + 1, line.size() - open - 2));
                if (n && !n->percent) {
                    weight = n->value;
                    line = trim(line.substr(0, open));
                }
            }
        }
        if (line.empty()) continue;
        list.push_back({{"criterion", line}, {"weight", weight}});
    }
    return parse_rubric(list, where);
}

namespace {

std::vector<ChatMessage> parse_messages(const json& j, const SourceRef& where, const char* field) {
    std::vector<ChatMessage> out;
    if (j.is_string()) {
        out.push_back({"user", j.get<std::string>()});
        return out;
    }
    if (!j.is_array())
        fail_at(where,
                std::string("field '") + field + "': expected a string or a list of messages");
    for (size_t i = 0; i < j.size(); ++i) {
        const json& m = j[i];
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
            !m.contains("content") || !m["content"].is_string())
            fail_at(where, std::string("field '") + field + "' message " + std::to_string(i) +
                               ": expected {\"role\": string, \"content\": string}");
        out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    if (out.empty()) fail_at(where, std::string("field '") + field + "': no messages");
    return out;
}

const json* first_of(const json& j, std::initializer_list<const char*> keys, const char** which) {
    for (const char* k : keys) {
        auto it = j.find(k);
        if (it != j.end() && !it->is_null()) {
            if (which) *which = k;
            return &*it;
        }
    }
    return nullptr;
}

}  // namespace

RubricItem parse_rubric_item(const json& j, const SourceRef& where_in, bool require_rubric) {
    SourceRef where = where_in;
    if (!j.is_object()) fail_at(where, "expected a JSON object");
    RubricItem item;
    if (const json* id = first_of(j, {"id", "prompt_id"}, nullptr)) {
        item.id = id->is_string() ? id->get<std::string>() : id->dump();
        where.item = item.id;
    } else {
        item.id = where.file + ":" + std::to_string(where.line);
    }
    const char* which = nullptr;
    const json* conv = first_of(j, {"messages", "prompt", "question"}, &which);
    if (!conv)
        fail_at(where, "missing the conversation (field 'messages', 'prompt' or 'question')");
    item.messages = parse_messages(*conv, where, which);
    if (const json* r = first_of(j, {"response", "completion"}, &which)) {
        if (!r->is_string())
            fail_at(where, std::string("field '") + which + "': expected a string");
        item.response = r->get<std::string>();
    }
    if (const json* r = first_of(j, {"reference_answer", "reference", "answer"}, &which)) {
        if (!r->is_string())
            fail_at(where, std::string("field '") + which + "': expected a string");
        item.reference_answer = r->get<std::string>();
    }
    if (const json* t = first_of(j, {"example_tags", "tags"}, &which)) {
        if (!t->is_array()) fail_at(where, std::string("field '") + which + "': expected a list");
        for (const json& v : *t) {
            if (!v.is_string())
                fail_at(where, std::string("field '") + which + "': expected strings");
            item.tags.push_back(v.get<std::string>());
        }
    }
    if (const json* r = first_of(j, {"rubric", "rubrics", "checklist"}, &which)) {
        item.rubric = parse_rubric(*r, where);
    } else if (require_rubric) {
        fail_at(where, "missing the rubric (field 'rubric', 'rubrics' or 'checklist')");
    }
    if (const json* a = first_of(j, {"aggregation"}, nullptr)) {
        if (!a->is_string()) fail_at(where, "field 'aggregation': expected a string");
        try {
            item.rubric.aggregation = aggregation_from_string(a->get<std::string>());
        } catch (const Error& e) {
            fail_at(where, std::string("field 'aggregation': ") + e.what());
        }
    }
    return item;
}

std::vector<RubricItem> load_rubric_items(const std::string& path, bool require_rubric) {
    std::vector<RubricItem> items;
    std::set<std::string> ids;
    for_each_jsonl_line(path, "", [&](const JsonlLine& line) {
        if (trim(line.text).empty()) return;  // also form feeds and vertical tabs
        const SourceRef where{path, line.number, ""};
        json j = json::parse(line.text, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) fail_at(where, "not valid JSON");
        items.push_back(parse_rubric_item(j, where, require_rubric));
        if (!ids.insert(items.back().id).second)
            fail_at(where, "duplicate item id '" + items.back().id + "'");
    });
    return items;
}

json criterion_to_json(const Criterion& c) {
    json j{{"id", c.id}, {"criterion", c.text}, {"points", c.points}, {"kind", to_string(c.kind)}};
    std::vector<std::string> tags;
    for (const std::string& t : c.tags) {
        if (t.rfind("category:", 0) == 0)
            j["category"] = t.substr(9);
        else
            tags.push_back(t);
    }
    if (!tags.empty()) j["tags"] = tags;
    switch (c.kind) {
        case CriterionKind::judge:
            break;
        case CriterionKind::regex:
            j["pattern"] = c.pattern;
            if (c.compiled && c.compiled->icase()) j["flags"] = "i";
            break;
        case CriterionKind::contains:
        case CriterionKind::not_contains:
            j["value"] = c.value;
            j["case_sensitive"] = c.case_sensitive;
            break;
        case CriterionKind::numeric:
            j["target"] = c.target;
            j["tolerance"] = c.abs_tol;
            j["rel_tolerance"] = c.rel_tol;
            if (!c.pattern.empty()) j["pattern"] = c.pattern;
            break;
        case CriterionKind::length:
            j["unit"] = c.unit == LengthUnit::words    ? "words"
                        : c.unit == LengthUnit::tokens ? "tokens"
                                                       : "chars";
            if (c.min_length) j["min"] = *c.min_length;
            if (c.max_length) j["max"] = *c.max_length;
            break;
        case CriterionKind::json:
            j["required_keys"] = c.required_keys;
            break;
        case CriterionKind::verifier:
            j["verifier"] = c.verifier;
            j["answer"] = c.answer;
            break;
    }
    return j;
}

json rubric_to_json(const Rubric& r) {
    json out = json::array();
    for (const Criterion& c : r.criteria) out.push_back(criterion_to_json(c));
    return out;
}

// ---- Pattern (PCRE2) ---------------------------------------------------------------------------

namespace {

// Bounds on one match: backtracking steps and heap for backtracking frames. Far above what any
// sensible criterion needs on a long response; a pathological pattern simply does not match.
constexpr uint32_t kMatchLimit = 1'000'000;
constexpr uint32_t kHeapLimitKiB = 64 * 1024;

struct MatchContext {
    pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
    MatchContext() {
        pcre2_set_match_limit(ctx, kMatchLimit);
        pcre2_set_heap_limit(ctx, kHeapLimitKiB);
    }
    ~MatchContext() { pcre2_match_context_free(ctx); }
};

const MatchContext& match_context() {
    static const MatchContext context;
    return context;
}

}  // namespace

std::shared_ptr<const Pattern> Pattern::compile(const std::string& pattern, bool icase,
                                                std::string* error) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    if (icase) options |= PCRE2_CASELESS;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &code, &offset, nullptr);
    if (!re) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(code, buf, sizeof(buf));
        *error = std::string(reinterpret_cast<const char*>(buf)) + " at offset " +
                 std::to_string(offset);
        return nullptr;
    }
    std::shared_ptr<Pattern> p(new Pattern());
    p->code_ = re;
    p->icase_ = icase;
    uint32_t captures = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &captures);
    p->capture_count_ = static_cast<int>(captures);
    return p;
}

Pattern::~Pattern() {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Pattern::search(std::string_view text) const {
    auto* re = static_cast<pcre2_code*>(code_);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
    const int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md,
                               match_context().ctx);
    pcre2_match_data_free(md);
    return rc >= 0;
}

std::optional<std::string> Pattern::last_group(std::string_view text, int group) const {
    auto* re = static_cast<pcre2_code*>(code_);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
    std::optional<std::string> found;
    PCRE2_SIZE at = 0;
    while (at <= text.size()) {
        const int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at,
                                   0, md, match_context().ctx);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        if (group < rc && ov[2 * group] != PCRE2_UNSET)
            found = std::string(text.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]));
        // Continue after this match; after an empty match, one byte on (to the next character
        // start, so a UTF-8 sequence is never split).
        if (ov[1] > ov[0]) {
            at = ov[1];
        } else {
            at = ov[1] + 1;
            while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
        }
    }
    pcre2_match_data_free(md);
    return found;
}

// ---- programmatic criteria ---------------------------------------------------------------------

int64_t count_words(std::string_view text) {
    int64_t n = 0;
    bool in_word = false;
    for (char c : text) {
        const bool space = is_space(c);
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

namespace {

// The last number written in `text` (digits with optional sign, decimals, exponent).
std::optional<double> last_number(std::string_view text) {
    static const std::shared_ptr<const Pattern> number = [] {
        std::string error;
        return Pattern::compile(R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)",
                                false, &error);
    }();
    const auto last = number->last_group(text, 0);
    if (!last) return std::nullopt;
    const auto n = eval::parse_number(*last);
    return n ? std::optional<double>(n->value) : std::nullopt;
}

std::optional<double> numeric_answer(const Criterion& c, std::string_view response) {
    if (c.compiled) {  // the last match wins, like a final answer
        const auto group = c.compiled->last_group(response, 1);
        if (!group) return std::nullopt;
        if (auto n = eval::parse_number(*group)) return n->value;
        return std::nullopt;
    }
    if (auto answer = eval::extract_math_answer(response)) {
        if (auto n = eval::parse_number(*answer)) return n->value;
        if (auto n = last_number(*answer)) return n;
    }
    return last_number(response);
}

std::optional<json> parse_json_response(std::string_view response) {
    std::string text = trim(response);
    // One fenced block ```json ... ``` (or ``` ... ```) is unwrapped.
    if (text.rfind("```", 0) == 0) {
        const size_t nl = text.find('\n');
        const size_t close = text.rfind("```");
        if (nl == std::string::npos || close <= nl) return std::nullopt;
        text = trim(std::string_view(text).substr(nl + 1, close - nl - 1));
    }
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return std::nullopt;
    return j;
}

}  // namespace

bool check_programmatic(const Criterion& c, std::string_view response,
                        const TokenCounter& count_tokens) {
    switch (c.kind) {
        case CriterionKind::judge:
            return false;
        case CriterionKind::regex: {
            return c.compiled && c.compiled->search(response);
        }
        case CriterionKind::contains:
        case CriterionKind::not_contains: {
            const bool found = c.case_sensitive
                                   ? response.find(c.value) != std::string_view::npos
                                   : lower(response).find(lower(c.value)) != std::string::npos;
            return c.kind == CriterionKind::contains ? found : !found;
        }
        case CriterionKind::numeric: {
            const auto x = numeric_answer(c, response);
            if (!x) return false;
            return std::fabs(*x - c.target) <= std::max(c.abs_tol, c.rel_tol * std::fabs(c.target));
        }
        case CriterionKind::length: {
            double n = 0;
            switch (c.unit) {
                case LengthUnit::words:
                    n = static_cast<double>(count_words(response));
                    break;
                case LengthUnit::chars: {  // UTF-8 code points
                    for (char ch : response)
                        if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++n;
                    break;
                }
                case LengthUnit::tokens:
                    n = static_cast<double>(count_tokens ? count_tokens(response)
                                                         : static_cast<int64_t>(response.size()));
                    break;
            }
            if (c.min_length && n < *c.min_length) return false;
            if (c.max_length && n > *c.max_length) return false;
            return true;
        }
        case CriterionKind::json: {
            const auto j = parse_json_response(response);
            if (!j) return false;
            if (c.required_keys.empty()) return true;
            if (!j->is_object()) return false;
            for (const std::string& k : c.required_keys)
                if (!j->contains(k)) return false;
            return true;
        }
        case CriterionKind::verifier:
            try {
                return eval::verify(c.verifier, c.answer, std::string(response));
            } catch (const std::exception&) {
                return false;
            }
    }
    return false;
}

// ---- aggregation -------------------------------------------------------------------------------

namespace {

Aggregate aggregate_subset(const Rubric& rubric, std::span<const double> met,
                           Aggregation aggregation, const std::string* tag) {
    double num = 0, den = 0;
    bool any = false;
    for (size_t i = 0; i < rubric.criteria.size(); ++i) {
        const Criterion& c = rubric.criteria[i];
        if (tag && std::find(c.tags.begin(), c.tags.end(), *tag) == c.tags.end()) continue;
        any = true;
        if (std::isnan(met[i])) return {kNaN, kNaN};
        if (aggregation == Aggregation::healthbench) {
            num += c.points * met[i];
            if (c.points > 0) den += c.points;
        } else {
            const double w = std::fabs(c.points);
            num += w * (c.points > 0 ? met[i] : 1.0 - met[i]);
            den += w;
        }
    }
    if (!any || den <= 0) return {kNaN, kNaN};
    const double raw = num / den;
    return {std::clamp(raw, 0.0, 1.0), raw};
}

}  // namespace

Aggregate aggregate(const Rubric& rubric, std::span<const double> met, Aggregation aggregation) {
    if (met.size() != rubric.criteria.size())
        throw Error("aggregate: " + std::to_string(met.size()) + " verdicts for " +
                    std::to_string(rubric.criteria.size()) + " criteria");
    if (aggregation == Aggregation::implicit)
        throw Error("aggregate: an implicit rubric score comes from the judge");
    return aggregate_subset(rubric, met, aggregation, nullptr);
}

double aggregate_tag(const Rubric& rubric, std::span<const double> met, Aggregation aggregation,
                     const std::string& tag) {
    if (aggregation == Aggregation::implicit) aggregation = Aggregation::healthbench;
    return aggregate_subset(rubric, met, aggregation, &tag).score;
}

}  // namespace crucible::reward
