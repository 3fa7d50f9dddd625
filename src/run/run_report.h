// Training runs (SFT and RL) as one offline HTML page and as TensorBoard event files:
// `crucible report RUN...` on training run folders (eval runs have their own page,
// eval/report_html.h). Every number comes from the run's metrics.jsonl (one line per step);
// RL runs add their last step's rollouts from samples.jsonl.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace crucible {

struct TrainingRun {
    std::string name;  // in legends and tables: the folder's name (with its parent's when two
                       // runs share one)
    std::filesystem::path dir;
    std::string kind;                     // "rl" or "sft"
    std::vector<nlohmann::json> metrics;  // metrics.jsonl, one object per logged step
};

// Whether `dir` is a training run: it holds metrics.jsonl.
bool is_training_run(const std::filesystem::path& dir);

// Reads DIR/metrics.jsonl (a torn last line of a killed run ends it). Throws Error naming the
// file when it is missing or holds no step.
TrainingRun load_training_run(const std::filesystem::path& dir);

// Gives runs that share a folder name their parent's name too ("a/rl", "b/rl").
void name_runs(std::vector<TrainingRun>& runs);

// TensorBoard's smoothing: an exponential moving average with weight `w` in [0, 1), divided
// by 1 - w^n after n finite values (so the start is not pulled to 0); non-finite values pass
// through and do not count.
std::vector<double> smooth_series(const std::vector<double>& values, double w);

// The page: a table of the runs, a chart per metric with every run that has it (x: step),
// preferred metrics first (loss, reward, accuracy, held-out accuracy, KL, entropy, grad norm,
// lr, clip fractions, lengths, the time split), then the rest; for RL runs, their last
// step's rollouts (prompt, completion, reward, advantage) one click away. `smoothing` in
// [0, 1): TensorBoard's weight (0: raw).
std::string training_report_html(const std::vector<TrainingRun>& runs, double smoothing);

// Each run's metrics as TensorBoard scalars under DIR/<run name>/ (tags as in metrics.jsonl,
// e.g. "loss", "reward/correct"; wall time from the steps' durations). Returns the files.
std::vector<std::filesystem::path> write_tensorboard(const std::vector<TrainingRun>& runs,
                                                     const std::filesystem::path& dir);

}  // namespace crucible
