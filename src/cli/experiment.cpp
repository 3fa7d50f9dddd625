// `crucible experiment run --spec EXP.yaml --out DIR` and `crucible experiment report DIR`
// (experiment/experiment.h).
#include "experiment/experiment.h"

#include <iostream>
#include <memory>

#include "cli/commands.h"

namespace crucible::cli {

std::function<int()> add_experiment(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "experiment", "Ablations over seeds: arms x seeds trained, evaluated and compared");
    cmd->require_subcommand(1);
    CLI::App* run = cmd->add_subcommand(
        "run",
        "Train and evaluate every arm x seed of a spec not yet done in --out, then write "
        "results.json and report.html (docs/EXPERIMENTS.md)");
    auto spec = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    run->add_option("--spec", *spec, "the experiment's YAML spec")
        ->required()
        ->check(CLI::ExistingFile);
    run->add_option("--out", *out, "the experiment's folder (a re-run resumes it)")->required();
    CLI::App* report = cmd->add_subcommand(
        "report", "Redraw results.json and report.html from the runs stored in DIR");
    auto dir = std::make_shared<std::string>();
    report->add_option("dir", *dir, "the experiment's folder")
        ->required()
        ->check(CLI::ExistingDirectory);
    return [=]() {
        if (run->parsed()) {
            experiment::run_experiment(experiment::load_spec(*spec), *out, std::cerr);
            return 0;
        }
        experiment::write_experiment_report(*dir);
        std::cerr << "experiment: wrote " << *dir << "/results.json and " << *dir
                  << "/report.html\n";
        return 0;
    };
}

}  // namespace crucible::cli
