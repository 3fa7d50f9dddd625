// Model weights in and out of a folder in HF's layout (config.json + model.safetensors).
// Full HF interop (sharding, BF16 writing, tokenizer files) is a later step; names and
// shapes are already HF's, so folders written here are ordinary HF checkpoints.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "model/model.h"
#include "model/safetensors.h"

namespace crucible {

// Writes config.json and model.safetensors (F32) into `dir`, each file fsynced.
void save_model(const Model& model, const std::filesystem::path& dir);

// Reads `dir`/config.json and `dir`/model.safetensors. Throws Error naming the file and the
// tensor for missing tensors, wrong shapes or unsupported dtypes.
// A sharded folder (model.safetensors.index.json + shards) loads the same way. A PEFT LoRA
// folder (adapter_config.json) loads as its base_model_name_or_path folder with the adapters
// enabled (model/lora_adapter.h).
// With `held_as` bfloat16 or q8_0 the matrices are held in that format alone
// (Model::hold_matrices_in): a model that only generates, or a frozen LoRA base, loads at half
// (bf16) or about a quarter (Q8_0) of its fp32 size. float32: fp32 weights, as trained.
std::unique_ptr<Model> load_model(const std::filesystem::path& dir,
                                  MatmulDtype held_as = MatmulDtype::float32);

// Copies every parameter of `model` from `file` (matching names and shapes; a redundant
// lm_head.weight in a tied checkpoint is ignored). Any other tensor the model does not have
// is an error, unless `allow_extra` (files that also carry non-parameter tensors).
void load_weights(Model& model, const SafetensorsFile& file, bool allow_extra = false);
// The same over the shards of a sharded checkpoint.
void load_weights(Model& model, const std::vector<SafetensorsFile>& files);
// Copies one parameter from `file`, checking shape and dtype.
void load_tensor(Model& model, const TensorInfo& t, const SafetensorsFile& file);

}  // namespace crucible
