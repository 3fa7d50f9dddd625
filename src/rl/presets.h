// The RL presets: the recipes the field names (GRPO, DAPO, Dr. GRPO, GSPO), each the YAML of
// examples/rl_<name>.yaml compiled into the binary. Merged over kRlConfigDefaults they give
// the effective config that docs/RL.md tabulates.
#pragma once

#include <string>
#include <vector>

namespace crucible::rl {

// The preset names, in the order grpo, dapo, dr_grpo, gspo.
std::vector<std::string> rl_preset_names();

// The YAML text of preset `name`. Throws crucible::Error naming the known presets otherwise.
const char* rl_preset(const std::string& name);

}  // namespace crucible::rl
