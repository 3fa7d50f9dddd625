#include "eval/dataset.h"

#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/jsonl.h"
#include "env/dataset_item.h"
#include "reward/rubric_format.h"
#include "reward/verify/verifiers.h"

namespace crucible::eval {

using nlohmann::json;

bool is_known_verifier(const std::string& kind) {
    return kind == "exact" || kind == "regex" || kind == "numeric" || kind == "mc" ||
           kind == "choice" || kind == "math";
}

bool is_python_verifier(const std::string& kind) {
    return kind.rfind("python:", 0) == 0;
}

namespace {

// A scalar field as text: strings as they are, numbers as JSON writes them; "" otherwise.
std::string scalar_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number() || v.is_boolean()) return v.dump();
    return {};
}

// The first of `keys` present in `j` with a non-null value (the rubric format's rule).
const json* first_of(const json& j, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = j.find(k);
        if (it != j.end() && !it->is_null()) return &*it;
    }
    return nullptr;
}

// A line with a rubric: parsed by reward::parse_rubric_item (any format docs/RUBRICS.md
// accepts), scored by the rubric. `item->id` is already set. Returns "" or the reason.
std::string parse_rubric_line(const json& j, const std::string& path, int line_no, EvalItem* item) {
    if (j.contains("verifier") && j["verifier"] != "rubric")
        return "item '" + item->id + "' has a rubric, so it is scored by it; field 'verifier' " +
               "must be absent or \"rubric\" (a criterion of kind verifier checks an answer)";
    json r = j;
    r["id"] = item->id;  // so the rubric's errors and results name the item as the run does
    r.erase("prompt_id");
    for (const char* key : {"answer", "gold"}) {  // a number is fine as a gold answer
        if (r.contains(key) && (r[key].is_number() || r[key].is_boolean())) r[key] = r[key].dump();
    }
    const std::string prefix = path + ":" + std::to_string(line_no) + ": ";
    try {
        auto rubric = std::make_shared<reward::RubricItem>(
            reward::parse_rubric_item(r, reward::SourceRef{path, line_no, ""}));
        item->rubric = std::move(rubric);
    } catch (const Error& e) {
        std::string why = e.what();
        if (why.rfind(prefix, 0) == 0) why.erase(0, prefix.size());
        return why;
    }
    // Keep a conversation given as one string a raw prompt, so --raw sends it as it is.
    const json* conv = first_of(j, {"messages", "prompt", "question"});
    if (conv && conv->is_string()) {
        item->prompt = conv->get<std::string>();
    } else {
        for (const ChatMessage& m : item->rubric->messages)
            item->messages.emplace_back(m.role, m.content);
    }
    if (const json* a = first_of(j, {"answer", "gold"})) item->answer = scalar_text(*a);
    item->verifier = "rubric";
    return {};
}

// Parses one line into `item`; returns "" or the reason the line is left out.
std::string parse_item(const JsonlLine& line, const std::string& default_verifier,
                       const std::string& cluster_field, EvalItem* item) {
    json j;
    try {
        j = parse_jsonl_object(line);
    } catch (const Error&) {
        return "not a JSON object";
    }
    item->line = line.number;
    item->id = "line-" + std::to_string(line.number);
    const bool has_rubric = first_of(j, {"rubric", "rubrics", "checklist"}) != nullptr;
    if (j.contains("id")) {
        item->id = scalar_text(j["id"]);
        if (item->id.empty()) return "field 'id' must be a non-empty string or a number";
    } else if (has_rubric && j.contains("prompt_id")) {  // HealthBench's name for it
        item->id = scalar_text(j["prompt_id"]);
        if (item->id.empty()) return "field 'prompt_id' must be a non-empty string or a number";
    }
    if (has_rubric) {
        const std::string why = parse_rubric_line(j, line.path, line.number, item);
        if (!why.empty()) return why;
        if (!cluster_field.empty() && j.contains(cluster_field))
            item->cluster = scalar_text(j[cluster_field]);
        return {};
    }
    if (j.contains("verifier") && j["verifier"] == "rubric")
        return "verifier 'rubric' needs a 'rubric' (or 'rubrics', 'checklist') field";
    const std::string where = line.where();
    DatasetItem d;
    try {
        d = parse_dataset_item(std::move(j), where, line.number);
    } catch (const Error& e) {
        std::string why = e.what();
        if (why.rfind(where + ": ", 0) == 0) why.erase(0, where.size() + 2);
        return why;
    }
    if (d.chat) {
        if (d.messages.empty()) return "field 'messages' must be a non-empty array";
        for (ChatMessage& m : d.messages)
            item->messages.emplace_back(std::move(m.role), std::move(m.content));
    } else if (d.has_prompt) {
        item->prompt = std::move(d.prompt);
    } else {
        return "needs 'prompt' or 'messages'";
    }
    // Stricter than the item's answer: a number or a string, not empty.
    if (!d.fields.contains(d.answer_key)) return "needs 'answer' (or 'gold')";
    item->answer = scalar_text(d.fields[d.answer_key]);
    if (item->answer.empty())
        return "field '" + d.answer_key + "' must be a non-empty string or a number";
    item->verifier = d.verifier.value_or(default_verifier);
    if (is_python_verifier(item->verifier)) {
        if (!cluster_field.empty() && d.fields.contains(cluster_field))
            item->cluster = scalar_text(d.fields[cluster_field]);
        return {};
    }
    if (!is_known_verifier(item->verifier))
        return "unknown verifier '" + item->verifier +
               "' (expected exact, regex, numeric, mc, choice, math or python:FILE:FUNCTION)";
    // A gold that an empty completion matches (a regex such as ".*" or "4?") would score
    // every empty answer correct.
    try {
        if (verify(item->verifier, item->answer, ""))
            return "the " + item->verifier +
                   " verifier accepts an empty completion against this answer";
    } catch (const Error& e) {
        return e.what();
    }
    if (!cluster_field.empty() && d.fields.contains(cluster_field))
        item->cluster = scalar_text(d.fields[cluster_field]);
    return {};
}

}  // namespace

Dataset load_dataset(const std::string& path, const std::string& default_verifier,
                     const std::string& cluster_field) {
    if (!is_known_verifier(default_verifier) && !is_python_verifier(default_verifier))
        throw Error("--verifier: unknown verifier '" + default_verifier +
                    "' (expected exact, regex, numeric, mc, choice, math or python:FILE:FUNCTION)");
    Dataset d;
    std::map<std::string, int> seen;  // id -> line
    for_each_jsonl_line(path, "the dataset", [&](const JsonlLine& line) {
        EvalItem item;
        const std::string why = parse_item(line, default_verifier, cluster_field, &item);
        if (!why.empty()) {
            d.excluded.push_back(line.where() + ": " + why);
            return;
        }
        const auto [it, fresh] = seen.emplace(item.id, line.number);
        if (!fresh)
            throw Error(line.where() + ": id '" + item.id + "' was already used on line " +
                        std::to_string(it->second) +
                        " (ids must be unique: runs are compared by id)");
        d.items.push_back(std::move(item));
    });
    return d;
}

}  // namespace crucible::eval
