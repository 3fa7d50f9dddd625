#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "dist/world.h"
#include "rl/presets.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible::cli {

namespace {

// Under mpirun: rank 0 names a new run and every rank takes that name; every rank must run the
// same binary with the same config, checked before any work. Alone: just the naming.
void agree_across_ranks(Config& config, void (*name_new_run)(Config&)) {
    if (dist::is_root()) name_new_run(config);
    if (dist::size() == 1) return;
    std::string name = config.get_string("run.name");
    dist::broadcast(name);
    config.set("run.name=" + name);
    dist::check_same(read_file("/proc/self/exe"), "the crucible binary");
    dist::check_same(config.dump(), "the effective config");
}

// Where a rank's progress lines go: rank 0's to stdout, the others' nowhere.
std::ostream& rank_log() {
    static std::ostream discard(nullptr);
    return dist::is_root() ? std::cout : discard;
}

struct TrainOptions {
    std::string preset;  // rl only
    std::string env;     // rl only: env.name, before --set
    std::string config;
    std::vector<std::string> sets;
    std::string resume;
    bool print_config = false;
};

void add_common_options(CLI::App* cmd, TrainOptions* opt, const char* example) {
    cmd->add_option("--config", opt->config, std::string("YAML config (see ") + example + ")")
        ->check(CLI::ExistingFile);
    cmd->add_option("--set", opt->sets, "override a config key: key.path=value (repeatable)");
    cmd->add_option("--resume", opt->resume,
                    "RUN_DIR: continue that run from its latest checkpoint, exactly as if it had "
                    "never stopped (its config.yaml is the config)")
        ->check(CLI::ExistingDirectory);
    cmd->add_flag("--print-config", opt->print_config,
                  "print the effective config (defaults, file, overrides) and exit");
}

// Whether a config.yaml's text has `key` at the top level (a line "key:").
bool has_top_level_key(const std::string& yaml, const std::string& key) {
    size_t at = 0;
    while (at < yaml.size()) {
        if (yaml.compare(at, key.size() + 1, key + ":") == 0) return true;
        const size_t nl = yaml.find('\n', at);
        if (nl == std::string::npos) break;
        at = nl + 1;
    }
    return false;
}

// Defaults, then (on resume) the run's own config.yaml, then --preset, --config, --set.
// `kind` is "sft" or "rl": a run of the other kind is refused by name.
Config effective_config(const char* defaults, const TrainOptions& opt, const std::string& kind) {
    Config config(defaults);
    if (!opt.resume.empty()) {
        const std::filesystem::path file = std::filesystem::path(opt.resume) / "config.yaml";
        if (std::filesystem::is_regular_file(file)) {
            // An RL config has a task and an algorithm; an SFT config has data.
            const std::string text = read_file(file);
            const bool rl = has_top_level_key(text, "algorithm") || has_top_level_key(text, "task");
            if (rl != (kind == "rl")) {
                throw Error("--resume " + opt.resume + ": this is an " +
                            std::string(rl ? "RL" : "SFT") + " run; resume it with crucible " +
                            "train " + (rl ? "rl" : "sft") + " --resume " + opt.resume);
            }
        }
        // The run's own effective config; --preset/--config/--set may only restate it.
        config.merge_file((std::filesystem::path(opt.resume) / "config.yaml").string());
    }
    if (!opt.preset.empty()) config.merge_text(rl::rl_preset(opt.preset), "--preset " + opt.preset);
    if (!opt.config.empty()) config.merge_file(opt.config);
    if (!opt.env.empty()) config.set("env.name=" + opt.env);
    for (const std::string& s : opt.sets) config.set(s);
    if (!opt.resume.empty()) {
        const std::filesystem::path dir(opt.resume);
        const std::filesystem::path named =
            std::filesystem::path(config.get_string("run.dir")) / config.get_string("run.name");
        if (!std::filesystem::exists(named) || !std::filesystem::equivalent(named, dir)) {
            throw Error("--resume " + opt.resume + ": its config.yaml names run folder " +
                        named.string() + "; run from the folder the run was started in");
        }
    }
    return config;
}

}  // namespace

std::function<int()> add_train(CLI::App& app) {
    CLI::App* train = app.add_subcommand("train", "Train a model (sft, rl)");
    train->require_subcommand(1);
    CLI::App* sft = train->add_subcommand(
        "sft",
        "Supervised fine-tuning on JSONL or a built-in task (defaults: the built-in "
        "Countdown task on the default ~1.6M-parameter byte-level model)");
    CLI::App* rl = train->add_subcommand(
        "rl",
        "Reinforcement learning with verifiable rewards (GRPO, DAPO, Dr. GRPO, GSPO; see "
        "examples/rl_*.yaml and docs/RL.md)");
    auto sft_opt = std::make_shared<TrainOptions>();
    auto rl_opt = std::make_shared<TrainOptions>();
    add_common_options(sft, sft_opt.get(), "examples/sft_countdown.yaml");
    add_common_options(rl, rl_opt.get(), "examples/rl_dapo.yaml");
    std::string names;
    for (const std::string& n : rl::rl_preset_names()) names += (names.empty() ? "" : ", ") + n;
    rl->add_option("--preset", rl_opt->preset,
                   "start from a recipe compiled into the binary (" + names +
                       "; examples/rl_<name>.yaml), before --config and --set");
    rl->add_option("--env", rl_opt->env,
                   "the environment, as --set env.name=NAME: single_turn, calculator, search, "
                   "python, or server (an external agent runs the episodes against the "
                   "trainer's server: docs/SERVING.md, \"RL endpoints\")");
    return [sft, sft_opt, rl_opt]() {
        if (sft->parsed()) {
            Config config = effective_config(kSftConfigDefaults, *sft_opt, "sft");
            if (sft_opt->print_config) {
                std::cout << config.dump();
                return 0;
            }
            agree_across_ranks(config, resolve_run_name);
            SftTrainer trainer(config, !sft_opt->resume.empty(), rank_log());
            trainer.run();
            rank_log() << "done: " << trainer.checkpoint_dir(trainer.step()).string() << "\n";
            return 0;
        }
        Config config = effective_config(kRlConfigDefaults, *rl_opt, "rl");
        if (rl_opt->print_config) {
            std::cout << config.dump();
            return 0;
        }
        agree_across_ranks(config, rl::resolve_rl_run_name);
        rl::RlTrainer trainer(config, !rl_opt->resume.empty(), rank_log());
        trainer.run();
        rank_log() << "done: " << trainer.checkpoint_dir(trainer.step()).string() << "\n";
        return 0;
    };
}

}  // namespace crucible::cli
