// `crucible experiment run --spec EXP.yaml --out DIR` and `crucible experiment report DIR`
// (experiment/experiment.h).
#include "experiment/experiment.h"

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/world.h"

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
    auto ranks_per_run = std::make_shared<int>(1);
    run->add_option("--ranks-per-run", *ranks_per_run,
                    "under mpirun: the ranks that train one run together (data-parallel); the "
                    "runs are dealt to ranks/R groups that work side by side (default 1)")
        ->check(CLI::Range(1, 1 << 20).description(""));
    CLI::App* report = cmd->add_subcommand(
        "report", "Redraw results.json and report.html from the runs stored in DIR");
    auto dir = std::make_shared<std::string>();
    report->add_option("dir", *dir, "the experiment's folder")
        ->required()
        ->check(CLI::ExistingDirectory);
    return [=]() {
        if (run->parsed()) {
            experiment::run_experiment(experiment::load_spec(*spec), *out, std::cerr,
                                       *ranks_per_run);
            return 0;
        }
        if (dist::size() > 1) {
            throw Error("under mpirun only `crucible experiment run` runs across ranks");
        }
        experiment::write_experiment_report(*dir);
        std::cerr << "experiment: wrote " << *dir << "/results.json and " << *dir
                  << "/report.html\n";
        return 0;
    };
}

}  // namespace crucible::cli
