// The parts of a training run's folder that SFT and RL share: naming a new run, finding the
// latest complete checkpoint, the tokenizer files that travel with the weights, and trimming a
// JSONL log back to a checkpoint on resume. (The optimizer state is run/optimizer.h.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace crucible {

class Config;

// Names a new run when run.name is empty: PREFIX-YYYYmmdd-HHMMSS (UTC), with -2, -3, ... added
// while run.dir already holds that name. A given run.name is kept.
void name_new_run(Config& config, const std::string& prefix);

// The highest step-N folder under `dir` holding a complete checkpoint (trainer_state.json is
// written last), or -1.
int64_t latest_checkpoint(const std::filesystem::path& dir);

// A model folder as given; for a training run's folder (no config.json of its own, a
// checkpoints/ folder with a complete checkpoint) its latest checkpoint, so `--model runs/x`
// means the run's newest weights. Other paths are returned unchanged (loading names them).
std::filesystem::path resolve_model_dir(const std::filesystem::path& dir);

// Removes .tmp-* folders under `dir`: checkpoints a killed run never published.
void remove_unpublished_checkpoints(const std::filesystem::path& dir);

// Copies the tokenizer files a model folder has (tokenizer.json, tokenizer_config.json, ...).
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

// Keeps the lines of a JSONL log whose "step" is <= `step` (and stops at a torn line).
void truncate_jsonl_after_step(const std::filesystem::path& file, int64_t step);

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace crucible
