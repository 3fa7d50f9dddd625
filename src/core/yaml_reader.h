// What every YAML file of ours is read with: the parse (errors "FILE:LINE: invalid YAML"),
// node positions for errors, the unknown-key message, and YamlSection, the strict reader of a
// mapping whose shape a flat schema cannot say (evolve's problem.yaml: lists of stages,
// features and endpoints). Config (config.h), the schema of defaults + file + --set, is built
// on the same pieces, so both name the file, line and dotted key in the same words.
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace crucible {

// Parses YAML text; `where` (a path, or "--set ...") names it in
// Error("WHERE:LINE: invalid YAML: ...").
YAML::Node parse_yaml(const std::string& text, const std::string& where);

// "WHERE:LINE" of a node (1-based), or WHERE alone for a node without a position.
std::string yaml_location(const std::string& where, const YAML::Node& node);

// "unknown key 'FULL' (known here: a, b, c)": the message for a key no schema has.
std::string unknown_key_message(const std::string& full, const std::vector<std::string>& known);

// What a value of type T must be, in error messages: "true or false", "an integer", "a
// non-negative integer", "a number", "a string".
template <typename T>
constexpr const char* yaml_expected() {
    if constexpr (std::is_same_v<T, bool>) {
        return "true or false";
    } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
        return "a non-negative integer";
    } else if constexpr (std::is_integral_v<T>) {
        return "an integer";
    } else if constexpr (std::is_floating_point_v<T>) {
        return "a number";
    } else {
        return "a string";
    }
}

// Strict access to one YAML mapping of file `file`, at dotted `prefix` ("" for the top): every
// key asked for is remembered, and finish() rejects the rest, so a typo is an error naming the
// file, line and key. A missing or null node reads as an empty mapping. Errors are
// Error("FILE:LINE: ...").
class YamlSection {
  public:
    YamlSection(YAML::Node node, std::string file, std::string prefix);

    // Whether `key` is present and not null (it becomes a known key).
    bool has(const std::string& key);
    // The node under `key`, whatever it holds (it becomes a known key).
    YAML::Node raw(const std::string& key);
    // Reads `key` into `out` when present; leaves `out` (its default) when not. A value that
    // is not a scalar of T's kind is Error("FILE:LINE: key 'FULL' must be an integer") etc.
    template <typename T>
    void get(const std::string& key, T& out) {
        if (!has(key)) return;
        const YAML::Node n = node_[key];
        try {
            if (!n.IsScalar()) throw YAML::Exception(n.Mark(), "not a scalar");
            out = n.as<T>();
        } catch (const YAML::Exception&) {
            fail(n, "key '" + full(key) + "' must be " + yaml_expected<T>());
        }
    }
    // A list of scalars (empty when absent).
    std::vector<std::string> strings(const std::string& key);
    // A list of mappings, a section for each, named "FULL[i]" (empty when absent); the caller
    // reads and finishes each. Error("FILE:LINE: key 'FULL' must be a list") for a non-list.
    std::vector<YamlSection> items(const std::string& key);
    // Throws for the first key of the mapping never asked for, listing the known ones.
    void finish();

    // The dotted name of `key` in this section.
    std::string full(const std::string& key) const;
    [[noreturn]] void fail(const YAML::Node& node, const std::string& what) const;
    const std::string& file() const { return file_; }
    const YAML::Node& node() const { return node_; }

  private:
    YAML::Node node_;
    std::string file_;
    std::string prefix_;
    std::set<std::string> seen_;
};

}  // namespace crucible
