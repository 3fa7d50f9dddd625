// `crucible demo`: the whole loop on this machine in minutes, from nothing. SFT warm-starts
// the default byte-level model on the built-in Countdown task, the held-out problems are
// scored (several samples each), GRPO with the DAPO preset trains on the same task, the
// problems are scored again, and the before/after accuracies are compared with 95% intervals
// and a paired test over problems. A stopped demo re-run continues where it stopped.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace crucible::rl {

struct DemoOptions {
    std::string out_dir = "runs/demo";
    int64_t sft_steps = 1000;
    int64_t rl_steps = 60;
    int eval_problems = 200;  // held-out problems scored before and after
    int eval_samples = 8;     // samples per problem (temperature 1)
    uint64_t seed = 1;
    std::vector<std::string> rl_overrides;   // key=value applied to the RL config
    std::vector<std::string> sft_overrides;  // key=value applied to the SFT config
};

// Runs the demo and returns what it writes to OUT/results.json (before, after, ci_before,
// ci_after, p_value, seconds and more); OUT/report.html holds the curves.
nlohmann::json run_demo(const DemoOptions& options, std::ostream& log);

}  // namespace crucible::rl
