// A training run's checkpoint, the one layout SFT and RL write and read: RUN/checkpoints/step-N
// holding the model (config.json, model.safetensors; with LoRA the PEFT adapter folder's files
// instead, naming the base, which load_model reads back as base + adapters), the tokenizer
// files, the optimizer state
// (optimizer.safetensors), config.yaml and trainer_state.json. It is filled as a .tmp-step-N
// folder and published by one rename; trainer_state.json is written last, so a folder without
// it is never taken as a checkpoint (latest_checkpoint in run_folder.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/model.h"

namespace crucible {

struct TrainerCheckpoint {
    const Model* model = nullptr;
    const std::vector<float>* adam_m = nullptr;  // AdamW's moments, laid out like the parameters
    const std::vector<float>* adam_v = nullptr;
    std::function<void(const std::filesystem::path&)> write_tokenizer;  // into the folder given
    std::filesystem::path lora_base;  // with LoRA: the base model folder the adapters need
    std::string config_yaml;          // the run's whole config
    nlohmann::json state;  // trainer_state.json: "format" names the trainer, "step" the step
};

// Writes `c` as the checkpoint folder `dir` (RUN/checkpoints/step-N). Refuses weights that are
// not finite (Error "TRAINER: step N: the weights after the update are not finite; ...") so no
// checkpoint holds a broken state. When `dir` already exists the existing folder is kept and a
// note goes to `log`.
void write_trainer_checkpoint(const std::filesystem::path& dir, const TrainerCheckpoint& c,
                              const std::string& trainer, int64_t step, std::ostream& log);

// Opens the run folder `run_dir` for a trainer whose config schema is `defaults_yaml`. With
// `resume`: RUN/config.yaml (over the defaults) must equal `config` key for key, and a
// checkpoint must exist; returns the latest checkpoint's step. Without: a folder that holds
// checkpoints is refused (resume it, or name another run); RUN/checkpoints is created and
// `config` written as RUN/config.yaml; returns -1. Errors name the folder or file and, for a
// changed config, the keys that differ.
int64_t open_run_folder(const std::filesystem::path& run_dir, const Config& config,
                        const std::string& defaults_yaml, bool resume);

// DIR/trainer_state.json, checked to be a `format` state whose `integer_fields` are integers.
// Throws Error("DIR/trainer_state.json: not valid JSON: ...") or Error("...: not a Crucible
// WHAT trainer state").
nlohmann::json read_trainer_state(const std::filesystem::path& dir, const std::string& format,
                                  std::initializer_list<const char*> integer_fields,
                                  const std::string& what);

}  // namespace crucible
