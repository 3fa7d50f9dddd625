// The parts of a training run's folder that SFT and RL share: finding the latest complete
// checkpoint, the optimizer-state file, the tokenizer files that travel with the weights, and
// trimming a JSONL log back to a checkpoint on resume.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/model.h"

namespace crucible {

// The highest step-N folder under `dir` holding a complete checkpoint (trainer_state.json is
// written last), or -1.
int64_t latest_checkpoint(const std::filesystem::path& dir);

// Removes .tmp-* folders under `dir`: checkpoints a killed run never published.
void remove_unpublished_checkpoints(const std::filesystem::path& dir);

// AdamW's first and second moments as optimizer.safetensors (exp_avg.NAME, exp_avg_sq.NAME).
void save_optimizer_state(const Model& model, const std::vector<float>& m,
                          const std::vector<float>& v, const std::filesystem::path& file);
void load_optimizer_state(const Model& model, const std::filesystem::path& file,
                          std::vector<float>* m, std::vector<float>* v);

// Copies the tokenizer files a model folder has (tokenizer.json, tokenizer_config.json, ...).
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

// Keeps the lines of a JSONL log whose "step" is <= `step` (and stops at a torn line).
void truncate_jsonl_after_step(const std::filesystem::path& file, int64_t step);

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace crucible
