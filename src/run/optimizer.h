// The optimizer both trainers share: AdamW over every trainable tensor of a Model (every
// parameter, or its LoRA adapters: Model::trainable), and its state (first and second moments,
// laid out like them) as optimizer.safetensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "kernels/kernels.h"
#include "model/model.h"

namespace crucible {

// One AdamW update of every tensor from the model's gradients (kernels::adamw_update);
// `hp.weight_decay` applies only to the tensors that take decay (TensorInfo::decay). `m` and
// `v` hold trainable().size floats each; `t` is the 1-based optimizer step.
void adamw_step(Model& model, std::vector<float>& m, std::vector<float>& v,
                const kernels::AdamWParams& hp, int64_t t);

// AdamW's first and second moments as optimizer.safetensors (exp_avg.NAME, exp_avg_sq.NAME).
void save_optimizer_state(const Model& model, const std::vector<float>& m,
                          const std::vector<float>& v, const std::filesystem::path& file);
void load_optimizer_state(const Model& model, const std::filesystem::path& file,
                          std::vector<float>* m, std::vector<float>* v);

}  // namespace crucible
