#include "core/config.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/strings.h"
#include "core/yaml_reader.h"

namespace crucible {

namespace {

enum class Kind { boolean, integer, floating, string, null, other };

Kind scalar_kind(const YAML::Node& n) {
    if (n.IsNull()) return Kind::null;
    if (!n.IsScalar()) return Kind::other;
    const std::string& s = n.Scalar();
    if (n.Tag() == "!") return Kind::string;  // quoted
    bool b;
    if (YAML::convert<bool>::decode(n, b) && (s == "true" || s == "false")) return Kind::boolean;
    int64_t i;
    if (YAML::convert<int64_t>::decode(n, i)) return Kind::integer;
    double d;
    if (YAML::convert<double>::decode(n, d)) return Kind::floating;
    return Kind::string;
}

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::boolean:
            return "true or false";
        case Kind::integer:
            return "an integer";
        case Kind::floating:
            return "a number";
        case Kind::string:
            return "a string";
        default:
            return "a value";
    }
}

// Whether `value` may replace a default of kind `want` (an integer is a valid number; a
// null default accepts a string; a string accepts anything scalar).
bool compatible(Kind want, Kind got) {
    if (want == got) return true;
    if (want == Kind::floating && got == Kind::integer) return true;
    if (want == Kind::null && (got == Kind::string || got == Kind::null)) return true;
    if (want == Kind::string && got != Kind::other) return true;
    return false;
}

bool is_number(Kind k) {
    return k == Kind::integer || k == Kind::floating;
}

// A YAML line's blanks: spaces and tabs (lines are already split, and the rest of the
// whitespace set is text to YAML).
std::string trim_blanks(std::string_view s) {
    return trim(s, " \t");
}

// A bound of an interval: a number, or inf / -inf.
bool parse_bound(const std::string& text, double* out) {
    const std::string t = trim_blanks(text);
    if (t.empty()) return false;
    char* end = nullptr;
    *out = std::strtod(t.c_str(), &end);
    return end == t.c_str() + t.size() && !std::isnan(*out);
}

// Calls fn(dotted key, node) for every leaf of a schema mapping.
void for_each_leaf(const YAML::Node& map, const std::string& prefix,
                   const std::function<void(const std::string&, const YAML::Node&)>& fn) {
    if (!map.IsMap()) return;
    for (auto it = map.begin(); it != map.end(); ++it) {
        const std::string full = (prefix.empty() ? "" : prefix + ".") + it->first.Scalar();
        if (it->second.IsMap()) {
            for_each_leaf(it->second, full, fn);
        } else {
            fn(full, it->second);
        }
    }
}

}  // namespace

Config::Config(const std::string& defaults_yaml) {
    schema_ = YAML::Load(defaults_yaml);
    values_ = YAML::Clone(schema_);
    std::vector<std::string> lines;
    std::stringstream text(defaults_yaml);
    for (std::string line; std::getline(text, line);) lines.push_back(line);
    // A numeric key's interval is the start of the comment on its value's line.
    for_each_leaf(schema_, "", [&](const std::string& full, const YAML::Node& node) {
        const YAML::Mark m = node.Mark();
        if (!is_number(scalar_kind(node)) || m.line < 0 ||
            m.line >= static_cast<int>(lines.size())) {
            return;
        }
        const std::string& line = lines[m.line];
        size_t hash = line.find('#', m.column);
        while (hash != std::string::npos && hash > 0 && line[hash - 1] != ' ' &&
               line[hash - 1] != '\t') {
            hash = line.find('#', hash + 1);
        }
        if (hash == std::string::npos) return;
        const std::string comment = trim_blanks(line.substr(hash + 1));
        if (comment.empty() || (comment[0] != '[' && comment[0] != '(')) return;
        const size_t close = comment.find_first_of("])");
        const size_t comma = comment.find(',');
        Range r{};
        if (close == std::string::npos || comma == std::string::npos || comma > close ||
            !parse_bound(comment.substr(1, comma - 1), &r.lo) ||
            !parse_bound(comment.substr(comma + 1, close - comma - 1), &r.hi) || r.lo > r.hi) {
            throw Error("config schema line " + std::to_string(m.line + 1) + ": key '" + full +
                        "': malformed interval (expected e.g. [0, 1) or (0, inf))");
        }
        r.lo_open = comment[0] == '(';
        r.hi_open = comment[close] == ')';
        r.text = comment.substr(0, close + 1);
        if (!r.contains(node.as<double>())) {
            throw Error("config schema line " + std::to_string(m.line + 1) + ": key '" + full +
                        "': the default " + node.Scalar() + " is outside " + r.text);
        }
        ranges_[full] = r;
    });
}

std::vector<std::string> Config::unranged_keys() const {
    std::vector<std::string> out;
    for_each_leaf(schema_, "", [&](const std::string& full, const YAML::Node& node) {
        if (is_number(scalar_kind(node)) && !ranges_.count(full)) out.push_back(full);
    });
    return out;
}

void Config::merge(const YAML::Node& src, YAML::Node dst, const YAML::Node& schema,
                   const std::string& prefix, const std::string& where) {
    if (!src.IsMap()) {
        throw Error(yaml_location(where, src) + ": expected a mapping" +
                    (prefix.empty() ? "" : " for '" + prefix + "'"));
    }
    for (auto it = src.begin(); it != src.end(); ++it) {
        if (!it->first.IsScalar()) {
            throw Error(yaml_location(where, it->first) + ": keys must be plain names" +
                        (prefix.empty() ? "" : " (under '" + prefix + "')"));
        }
        const std::string key = it->first.as<std::string>();
        const std::string full = prefix.empty() ? key : prefix + "." + key;
        const YAML::Node want = schema[key];
        if (!want) {
            std::vector<std::string> known;
            for (auto s = schema.begin(); s != schema.end(); ++s) {
                known.push_back(s->first.as<std::string>());
            }
            throw Error(yaml_location(where, it->first) + ": " + unknown_key_message(full, known));
        }
        if (want.IsMap()) {
            merge(it->second, dst[key], want, full, where);
            continue;
        }
        const Kind wk = scalar_kind(want), gk = scalar_kind(it->second);
        if (!compatible(wk, gk)) {
            throw Error(yaml_location(where, it->second) + ": key '" + full + "' must be " +
                        kind_name(wk));
        }
        // No setting means NaN or infinity: a NaN weight or learning rate silently trains on
        // nothing (or on NaN) and compares false against every range check.
        if (wk == Kind::floating && !std::isfinite(it->second.as<double>())) {
            throw Error(yaml_location(where, it->second) + ": key '" + full +
                        "' must be a finite number");
        }
        if (auto r = ranges_.find(full);
            r != ranges_.end() && !r->second.contains(it->second.as<double>())) {
            throw Error(yaml_location(where, it->second) + ": key '" + full + "' must be in " +
                        r->second.text + ", got " + it->second.Scalar());
        }
        dst[key] = YAML::Clone(it->second);
    }
}

void Config::merge_text(const std::string& text, const std::string& where) {
    const YAML::Node n = parse_yaml(text, where);
    if (n.IsNull()) return;  // an empty file changes nothing
    merge(n, values_, schema_, "", where);
}

void Config::merge_file(const std::string& path) {
    merge_text(read_file(path), path);
}

void Config::set(const std::string& assignment) {
    const size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
        throw Error("--set " + assignment + ": expected key=value");
    }
    const std::string key = assignment.substr(0, eq);
    const std::string value = assignment.substr(eq + 1);
    if (value.find_first_of("\r\n") != std::string::npos) {
        throw Error("--set " + key + ": the value must be on one line");
    }
    // Build {a: {b: {c: value}}} and merge it, so --set gets the same checks as a file.
    std::string yaml;
    std::stringstream parts(key);
    std::string part;
    int depth = 0;
    while (std::getline(parts, part, '.')) {
        yaml += std::string(2 * depth, ' ') + part + ":\n";
        depth++;
    }
    yaml.pop_back();
    yaml += " " + value + "\n";
    merge_text(yaml, "--set " + assignment);
}

YAML::Node Config::lookup(const std::string& key) const {
    // Rebind with reset(): assigning a yaml-cpp node would overwrite the referenced value.
    YAML::Node n;
    n.reset(values_);
    std::stringstream parts(key);
    std::string part;
    while (std::getline(parts, part, '.')) {
        const YAML::Node& cn = n;
        if (!cn.IsMap() || !cn[part]) throw Error("config: no key '" + key + "'");
        n.reset(cn[part]);
    }
    return n;
}

std::string Config::get_string(const std::string& key) const {
    const YAML::Node n = lookup(key);
    if (!n.IsNull() && !n.IsScalar()) throw Error("config: key '" + key + "' is a section");
    return n.IsNull() ? std::string() : n.as<std::string>();
}

int64_t Config::get_int(const std::string& key) const {
    try {
        return lookup(key).as<int64_t>();
    } catch (const YAML::Exception&) {
        throw Error("config: key '" + key + "' must be an integer");
    }
}

double Config::get_double(const std::string& key) const {
    try {
        return lookup(key).as<double>();
    } catch (const YAML::Exception&) {
        throw Error("config: key '" + key + "' must be a number");
    }
}

bool Config::get_bool(const std::string& key) const {
    try {
        return lookup(key).as<bool>();
    } catch (const YAML::Exception&) {
        throw Error("config: key '" + key + "' must be true or false");
    }
}

std::string Config::dump() const {
    YAML::Emitter out;
    out << values_;
    return std::string(out.c_str()) + "\n";
}

std::vector<std::string> Config::diff(const Config& a, const Config& b) {
    std::vector<std::string> out;
    std::function<void(const YAML::Node&, const YAML::Node&, const YAML::Node&, std::string)> walk =
        [&](const YAML::Node& schema, const YAML::Node& x, const YAML::Node& y,
            std::string prefix) {
            for (auto it = schema.begin(); it != schema.end(); ++it) {
                const std::string k = it->first.as<std::string>();
                const std::string full = prefix.empty() ? k : prefix + "." + k;
                if (it->second.IsMap()) {
                    walk(it->second, x[k], y[k], full);
                } else {
                    YAML::Emitter ex, ey;
                    ex << x[k];
                    ey << y[k];
                    if (std::string(ex.c_str()) != std::string(ey.c_str())) out.push_back(full);
                }
            }
        };
    walk(a.schema_, a.values_, b.values_, "");
    return out;
}

}  // namespace crucible
