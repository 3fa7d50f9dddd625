#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

// OpenMP's default wait policy spins at every barrier; when another process shares the cores
// (the normal case on a shared machine) a spinning thread holds up a descheduled one, and a
// training step with hundreds of small parallel regions ran 3-4x slower in measurements
// (docs/PERFORMANCE.md). libgomp reads OMP_WAIT_POLICY when it loads, before main, so the
// binary re-executes itself once with the passive policy unless the user chose one.
static void default_to_passive_openmp_waits(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("CRUCIBLE_DEFAULTED_OMP_WAIT_POLICY", "1", 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with the default policy.
}

int main(int argc, char** argv) {
    default_to_passive_openmp_waits(argv);
    CLI::App app{"crucible: train, run and evaluate reasoning language models on CPU"};
    app.require_subcommand(1);
    auto train = crucible::cli::add_train(app);
    auto bench = crucible::cli::add_bench(app);
    auto tokenize = crucible::cli::add_tokenize(app);
    auto convert = crucible::cli::add_convert(app);
    auto generate = crucible::cli::add_generate(app);
    auto sandbox = crucible::cli::add_sandbox(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (app.got_subcommand("train")) return train();
        if (app.got_subcommand("bench")) return bench();
        if (app.got_subcommand("tokenize")) return tokenize();
        if (app.got_subcommand("convert")) return convert();
        if (app.got_subcommand("generate")) return generate();
        if (app.got_subcommand("sandbox")) return sandbox();
    } catch (const crucible::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {  // a bug, not bad input: still one readable line
        std::fprintf(stderr, "internal error: %s\n", e.what());
        return 2;
    }
    return 0;
}
