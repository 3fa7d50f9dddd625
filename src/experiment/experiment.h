// `crucible experiment`: ablations over seeds. A spec names a base RL config, arms (each a list
// of `--set` overrides) and seeds; every arm x seed is trained, its final policy evaluated on one
// fixed set of held-out items (the same items, sampling seeds and settings for every run, so the
// arms are compared on the same items), and the report gives each arm's mean with an interval
// that carries both the seed-to-seed spread and the item sampling, and each arm's paired
// difference against the control (docs/EXPERIMENTS.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace crucible::experiment {

struct ArmSpec {
    std::string name;
    std::string preset;            // an RL preset for this arm ("" : the spec's)
    std::vector<std::string> set;  // "key=value" overrides of the base config
};

struct ExperimentSpec {
    std::string base;              // an RL config file ("" : the defaults); relative to the spec
    std::string preset;            // an RL preset applied before `base` ("" : none)
    std::vector<std::string> set;  // overrides for every arm, applied after `base`
    std::vector<ArmSpec> arms;     // arms[0] is the control
    std::vector<int64_t> seeds;
    int eval_items = 64;   // the first held-out items with a gold answer
    int eval_samples = 4;  // K samples of each
    double eval_temperature = 1.0;
    uint64_t eval_seed = 0;  // the held-out items (a built-in task's) and the samples' seeds
    int64_t eval_every = 0;  // also evaluate the checkpoints at multiples of this step (0: none)
    int resamples = 2000;    // bootstrap replicates
    uint64_t bootstrap_seed = 0;
};

// Reads a spec (YAML). Every error is one crucible::Error naming the file and the field.
ExperimentSpec load_spec(const std::filesystem::path& file);

// The RL config of one run: the arm's preset (else the spec's), base, the spec's overrides, the
// arm's, then seed and run folder (`out`/runs/<arm>/seed-<seed>). Throws Error naming a bad
// override.
std::string run_config_yaml(const ExperimentSpec& spec, const ArmSpec& arm, int64_t seed,
                            const std::filesystem::path& out);

// Runs every arm x seed not yet done under `out` (a run is done when its evaluation file
// exists; a run killed after a checkpoint resumes from it, one killed before starts again),
// then writes `out`/results.json and `out`/report.html. The spec is copied to `out`/spec.yaml;
// a second call with a different spec on the same `out` is refused naming what differs.
// Under mpirun the ranks split into groups of `ranks_per_run` (dist::RankGroups) and the
// unfinished runs are dealt to the groups in turn: each run is an ordinary (data-parallel when
// ranks_per_run > 1) RL run of its group, evaluated by the group's first rank, and rank 0 writes
// the report once every group is done. A run's result does not depend on the ranks it ran on.
// `log` is written by the first rank of each group.
void run_experiment(const ExperimentSpec& spec, const std::filesystem::path& out, std::ostream& log,
                    int ranks_per_run = 1);

// results.json's content from the runs stored under `out` (each run's evaluation and metrics).
nlohmann::json experiment_results(const std::filesystem::path& out);
// Writes `out`/results.json and `out`/report.html from the stored runs.
void write_experiment_report(const std::filesystem::path& out);

}  // namespace crucible::experiment
