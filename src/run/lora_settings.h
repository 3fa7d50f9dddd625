// The `lora:` section both trainers' configs share: rank 0 trains every parameter, a rank > 0
// trains LoRA adapters of that rank on the listed projections of a frozen base.
#pragma once

#include "core/config.h"
#include "model/model.h"

namespace crucible {

// The schema lines, the same in SFT's and RL's defaults.
#define CRUCIBLE_LORA_CONFIG_DEFAULTS                                                            \
    "lora:                       # LoRA adapters on a frozen base (docs/PERFORMANCE.md, LoRA)\n" \
    "  rank: 0                   # [0, 65536] 0: full fine-tuning; r > 0: adapters of rank r\n"  \
    "  alpha: 32.0               # (0, 1e6] the adapters' scale is alpha / rank\n"               \
    "  targets: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj  # comma-separated\n"

// lora.rank, lora.alpha and lora.targets; rank 0 means none. Errors name the key, and so does
// train.dtype q8_0 without adapters (a Q8_0 base is frozen).
LoraConfig read_lora_settings(const Config& c);

}  // namespace crucible
