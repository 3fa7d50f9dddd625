// The rubric file formats: parsing (native, HealthBench, RaR, RLCF checklists) with errors that
// name file, line, item, criterion and field, and the native JSON written back.
#include "reward/rubric_format.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/jsonl.h"
#include "core/strings.h"
#include "reward/verify/verifiers.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

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

std::shared_ptr<const Regex> compile_regex(const std::string& pattern, bool icase, size_t index,
                                           const SourceRef& where, const char* field) {
    std::string error;
    RegexOptions options;
    options.icase = icase;
    auto p = Regex::compile(pattern, options, &error);
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
            c.kind = parse_criterion_kind(get_string(j, "kind", index, where, true));
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
            item.rubric.aggregation = parse_aggregation(a->get<std::string>());
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

json to_json(const Criterion& c) {
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

json to_json(const Rubric& r) {
    json out = json::array();
    for (const Criterion& c : r.criteria) out.push_back(to_json(c));
    return out;
}

}  // namespace crucible::reward
