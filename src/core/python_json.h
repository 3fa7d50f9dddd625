// JSON text as Python's json.dumps writes it by default (", " and ": " between items, non-ASCII
// kept as is): what a Hugging Face chat template's `tojson` puts in a prompt, so a tool schema
// or a call's arguments render byte for byte as the model saw them in training.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace crucible {

// `j` with Python's default separators, keys in the order `j` holds them (parse with
// nlohmann::ordered_json to keep a request's order). Invalid UTF-8 in strings becomes U+FFFD.
std::string python_json_dumps(const nlohmann::ordered_json& j);

}  // namespace crucible
