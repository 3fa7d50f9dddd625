// Layered YAML configuration: built-in defaults, then a user file, then `--set key=value`
// overrides. Every key must exist in the defaults and keep its type, so a typo or a wrong
// type is an error that names the file, line and key. A numeric key whose schema comment
// starts with an interval accepts only values inside it (a range error names the interval).
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

namespace crucible {

class Config {
  public:
    // `defaults_yaml` is the schema: every accepted key with its default value. A number's
    // comment may start with its allowed interval, `beta2: 0.95  # [0, 1) ...`: brackets
    // closed, parentheses open, `inf` unbounded. Throws Error for a malformed interval or a
    // default outside its own.
    explicit Config(const std::string& defaults_yaml);

    // Merges a YAML file over the current values. Throws Error("FILE:LINE: ...") for unknown
    // keys, wrong types, numbers outside their interval or invalid YAML.
    void merge_file(const std::string& path);
    // Merges YAML text (used for a saved config). `where` names it in errors.
    void merge_text(const std::string& text, const std::string& where);
    // Applies "a.b.c=value"; the value is parsed as a YAML scalar or flow sequence.
    void set(const std::string& assignment);

    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_double(const std::string& key) const;
    bool get_bool(const std::string& key) const;

    // The effective configuration as YAML text (what a run saves as config.yaml).
    std::string dump() const;
    // Dotted keys whose values differ between two configs.
    static std::vector<std::string> diff(const Config& a, const Config& b);
    // Numeric keys whose schema gives no interval (the shipped schemas have none).
    std::vector<std::string> unranged_keys() const;

  private:
    struct Range {
        double lo, hi;
        bool lo_open, hi_open;
        std::string text;  // as written in the schema, e.g. "[0, 1)"
        bool contains(double v) const {
            return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        }
    };

    YAML::Node lookup(const std::string& key) const;
    void merge(const YAML::Node& src, YAML::Node dst, const YAML::Node& schema,
               const std::string& prefix, const std::string& where);

    YAML::Node schema_;
    YAML::Node values_;
    std::map<std::string, Range> ranges_;  // by dotted key
};

}  // namespace crucible
