#include "reward/rubric.h"

#include <utility>

#include "core/error.h"

namespace crucible::reward {

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

CriterionKind parse_criterion_kind(const std::string& name) {
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

Aggregation parse_aggregation(const std::string& name) {
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

}  // namespace crucible::reward
