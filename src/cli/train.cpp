#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible::cli {

std::function<int()> add_train(CLI::App& app) {
    CLI::App* train = app.add_subcommand("train", "Train a model (sft)");
    train->require_subcommand(1);
    CLI::App* sft = train->add_subcommand(
        "sft",
        "Supervised fine-tuning on JSONL or a built-in task (defaults: the built-in "
        "Countdown task on the default ~1.6M-parameter byte-level model)");
    struct Options {
        std::string config;
        std::vector<std::string> sets;
        std::string resume;
        bool print_config = false;
    };
    auto opt = std::make_shared<Options>();
    sft->add_option("--config", opt->config, "YAML config (see examples/sft_countdown.yaml)")
        ->check(CLI::ExistingFile);
    sft->add_option("--set", opt->sets, "override a config key: key.path=value (repeatable)");
    sft->add_option("--resume", opt->resume,
                    "RUN_DIR: continue that run from its latest checkpoint, exactly as if it had "
                    "never stopped (its config.yaml is the config)")
        ->check(CLI::ExistingDirectory);
    sft->add_flag("--print-config", opt->print_config,
                  "print the effective config (defaults, file, overrides) and exit");
    return [opt]() {
        Config config(kSftConfigDefaults);
        if (!opt->resume.empty()) {
            // The run's own effective config; --config/--set may only restate it.
            config.merge_file((std::filesystem::path(opt->resume) / "config.yaml").string());
        }
        if (!opt->config.empty()) config.merge_file(opt->config);
        for (const std::string& s : opt->sets) config.set(s);
        if (!opt->resume.empty()) {
            const std::filesystem::path dir(opt->resume);
            const std::filesystem::path named =
                std::filesystem::path(config.get_string("run.dir")) / config.get_string("run.name");
            if (!std::filesystem::exists(named) || !std::filesystem::equivalent(named, dir)) {
                throw Error("--resume " + opt->resume + ": its config.yaml names run folder " +
                            named.string() + "; run from the folder the run was started in");
            }
        }
        if (opt->print_config) {
            std::cout << config.dump();
            return 0;
        }
        resolve_run_name(config);
        SftTrainer trainer(config, !opt->resume.empty(), std::cout);
        trainer.run();
        std::cout << "done: " << trainer.checkpoint_dir(trainer.step()).string() << "\n";
        return 0;
    };
}

}  // namespace crucible::cli
