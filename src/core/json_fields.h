// Reading one field of a JSON object: the one getter family behind every JSONL dataset, task
// and document reader, so a missing or mistyped field reads the same wherever it is found; and
// the one way a number that may be undefined is written.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace crucible {

// obj[key] as a string. Throws Error("WHERE: missing field 'KEY'") when absent and
// Error("WHERE: field 'KEY' must be a string, got TYPE") when not a string; `where` is the
// caller's prefix, usually a JsonlLine's "FILE:LINE".
const std::string& string_field(const nlohmann::json& obj, const char* key,
                                const std::string& where);

// j[key] when j is an object holding a string there; `fallback` otherwise (absent, null, or of
// another type). For lenient reads of what a peer sent, such as an API's error body.
std::string string_or(const nlohmann::json& j, const char* key, const std::string& fallback = "");

// x as a JSON number, or null when it is NaN or infinite (JSON has neither): how every report
// and results file writes a statistic that may be undefined.
nlohmann::json number_or_null(double x);

}  // namespace crucible
