// LoRA adapters in and out of PEFT's folder layout: adapter_config.json (peft_type LORA, r,
// lora_alpha, target_modules) and adapter_model.safetensors, tensors named
// base_model.model.<module>.lora_A.weight (r, in) and .lora_B.weight (out, r), what
// `PeftModel.from_pretrained` reads. The model side (Model::enable_lora, merge_lora) is in model.h.
#pragma once

#include <filesystem>

#include "model/model.h"

namespace crucible {

// Writes `model`'s adapters into `dir` (created): adapter_config.json and
// adapter_model.safetensors (F32), each file fsynced. `base` names the base model folder in the
// config (base_model_name_or_path; may be empty).
void save_lora_adapter(const Model& model, const std::filesystem::path& dir,
                       const std::string& base = "");

// Reads a PEFT LoRA folder into `model`, which must have no adapters yet: enables LoRA with the
// file's r, lora_alpha and target_modules, then copies every adapter tensor. Errors name the
// file and the field or tensor: a missing or unreadable config, a feature this LoRA does not
// compute (rsLoRA, DoRA, fan_in_fan_out, trained biases, a target other than the seven
// projections), a missing or extra tensor, a shape that does not match the base, a value that
// is NaN or infinite.
void load_lora_adapter(Model& model, const std::filesystem::path& dir);

}  // namespace crucible
