#include "rl/presets.h"

#include <utility>

#include "core/error.h"

namespace crucible::rl {

namespace {

const std::pair<const char*, const char*> kPresets[] = {
#include "rl_presets.inc"
};

}  // namespace

std::vector<std::string> rl_preset_names() {
    std::vector<std::string> names;
    for (const auto& [name, text] : kPresets) names.emplace_back(name);
    return names;
}

const char* rl_preset(const std::string& name) {
    std::string known;
    for (const auto& [preset, text] : kPresets) {
        if (name == preset) return text;
        known += known.empty() ? preset : std::string(", ") + preset;
    }
    throw Error("unknown RL preset '" + name + "' (expected one of: " + known + ")");
}

}  // namespace crucible::rl
