#include "demo/demo.h"

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "demo/search_demo.h"

namespace crucible::cli {

std::function<int()> add_demo(CLI::App& app) {
    CLI::App* demo = app.add_subcommand(
        "demo",
        "From nothing to a measured RL gain on this machine: SFT the default model on the "
        "built-in Countdown task, score held-out problems, run GRPO (DAPO preset), score "
        "again, and compare with 95% intervals and a paired test. `demo search`: RL teaches "
        "the model to use a search tool");
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

    CLI::App* search = demo->add_subcommand(
        "search",
        "RL teaches a model to search: a knowledge base of fictional entities generated from "
        "the seed and indexed, SFT on demonstrations of which only some search, held-out "
        "questions about unseen entities scored as search episodes, GRPO (DAPO preset) in the "
        "search environment, scored again, with the search figures before and after");
    auto sopt = std::make_shared<rl::SearchDemoOptions>();
    search
        ->add_option("--out", sopt->out_dir, "output folder (re-running continues a stopped demo)")
        ->capture_default_str();
    search->add_option("--entities", sopt->entities, "entities in the knowledge base")
        ->capture_default_str();
    search
        ->add_option("--search-share", sopt->search_share,
                     "share of the SFT demonstrations that search")
        ->capture_default_str();
    search->add_option("--sft-steps", sopt->sft_steps, "SFT steps")->capture_default_str();
    search->add_option("--rl-steps", sopt->rl_steps, "RL steps")->capture_default_str();
    search->add_option("--questions", sopt->eval_questions, "held-out questions scored")
        ->capture_default_str();
    search->add_option("--samples", sopt->eval_samples, "episodes per held-out question")
        ->capture_default_str();
    search->add_option("--seed", sopt->seed, "seed of everything")->capture_default_str();
    search->add_option("--rl-set", sopt->rl_overrides, "override an RL config key (key=value)");
    search->add_option("--sft-set", sopt->sft_overrides, "override an SFT config key (key=value)");
    return [opt, sopt, search]() {
        if (search->parsed()) {
            rl::run_search_demo(*sopt, std::cout);
        } else {
            rl::run_demo(*opt, std::cout);
        }
        return 0;
    };
}

}  // namespace crucible::cli
