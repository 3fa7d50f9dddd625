#include "demo/demo.h"

#include <iostream>
#include <memory>

#include "cli/commands.h"

namespace crucible::cli {

std::function<int()> add_demo(CLI::App& app) {
    CLI::App* demo = app.add_subcommand(
        "demo",
        "From nothing to a measured RL gain on this machine: SFT the default model on the "
        "built-in Countdown task, score held-out problems, run GRPO (DAPO preset), score "
        "again, and compare with 95% intervals and a paired test");
    auto opt = std::make_shared<rl::DemoOptions>();
    demo->add_option("--out", opt->out_dir, "output folder (re-running continues a stopped demo)")
        ->capture_default_str();
    demo->add_option("--sft-steps", opt->sft_steps, "SFT steps")->capture_default_str();
    demo->add_option("--rl-steps", opt->rl_steps, "RL steps")->capture_default_str();
    demo->add_option("--problems", opt->eval_problems, "held-out problems scored")
        ->capture_default_str();
    demo->add_option("--samples", opt->eval_samples, "samples per held-out problem")
        ->capture_default_str();
    demo->add_option("--seed", opt->seed, "seed of everything")->capture_default_str();
    demo->add_option("--rl-set", opt->rl_overrides, "override an RL config key (key=value)");
    demo->add_option("--sft-set", opt->sft_overrides, "override an SFT config key (key=value)");
    return [opt]() {
        rl::run_demo(*opt, std::cout);
        return 0;
    };
}

}  // namespace crucible::cli
