#include "core/yaml_reader.h"

#include "core/error.h"

namespace crucible {

YAML::Node parse_yaml(const std::string& text, const std::string& where) {
    try {
        return YAML::Load(text);
    } catch (const YAML::Exception& e) {
        throw Error(where + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
    }
}

std::string yaml_location(const std::string& where, const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    if (m.line < 0) return where;
    return where + ":" + std::to_string(m.line + 1);
}

std::string unknown_key_message(const std::string& full, const std::vector<std::string>& known) {
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    return "unknown key '" + full + "' (known here: " + list + ")";
}

YamlSection::YamlSection(YAML::Node node, std::string file, std::string prefix)
    : node_(std::move(node)), file_(std::move(file)), prefix_(std::move(prefix)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
        fail(node_, "expected a mapping" + (prefix_.empty() ? "" : " for '" + prefix_ + "'"));
    }
}

bool YamlSection::has(const std::string& key) {
    seen_.insert(key);
    return node_ && node_.IsMap() && node_[key] && !node_[key].IsNull();
}

YAML::Node YamlSection::raw(const std::string& key) {
    seen_.insert(key);
    return node_.IsMap() ? node_[key] : YAML::Node();
}

std::vector<std::string> YamlSection::strings(const std::string& key) {
    std::vector<std::string> out;
    if (!has(key)) return out;
    const YAML::Node n = node_[key];
    if (!n.IsSequence()) fail(n, "key '" + full(key) + "' must be a list of strings");
    for (const auto& item : n) {
        if (!item.IsScalar()) fail(item, "key '" + full(key) + "' must be a list of strings");
        out.push_back(item.as<std::string>());
    }
    return out;
}

std::vector<YamlSection> YamlSection::items(const std::string& key) {
    std::vector<YamlSection> out;
    if (!has(key)) return out;
    const YAML::Node list = node_[key];
    if (!list.IsSequence()) fail(list, "key '" + full(key) + "' must be a list");
    for (size_t i = 0; i < list.size(); i++) {
        out.emplace_back(list[i], file_, full(key) + "[" + std::to_string(i) + "]");
    }
    return out;
}

void YamlSection::finish() {
    if (!node_ || !node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
        if (!it->first.IsScalar()) {
            fail(it->first, "keys must be plain names" +
                                (prefix_.empty() ? "" : " (under '" + prefix_ + "')"));
        }
        const std::string k = it->first.as<std::string>();
        if (!seen_.count(k)) {
            fail(it->first, unknown_key_message(
                                full(k), std::vector<std::string>(seen_.begin(), seen_.end())));
        }
    }
}

std::string YamlSection::full(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
}

void YamlSection::fail(const YAML::Node& node, const std::string& what) const {
    throw Error(yaml_location(file_, node) + ": " + what);
}

}  // namespace crucible
