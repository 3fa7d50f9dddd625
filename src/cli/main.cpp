#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

// libgomp's default waits spin for ~300,000 iterations at every barrier. When another process
// shares the cores (the normal case on a shared machine), the spinning thread holds up a
// descheduled one and a training step of hundreds of small parallel regions ran 3-4x slower;
// fully passive waits fix that but make single-sequence decode 5-18x slower (every region then
// pays a futex wake-up). A short spin (GOMP_SPINCOUNT=3000) measured within 12% of passive
// under contention and as fast as spinning for decode (docs/PERFORMANCE.md). libgomp reads the
// variable when it loads, before main, so the binary re-executes itself once with it unless the
// user chose a policy.
static void default_to_short_openmp_spins(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) {
        return;
    }
    setenv("GOMP_SPINCOUNT", "3000", 1);
    setenv("CRUCIBLE_DEFAULTED_GOMP_SPINCOUNT", "1", 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with the default policy.
}

int main(int argc, char** argv) {
    default_to_short_openmp_spins(argv);
    CLI::App app{"crucible: train, run and evaluate reasoning language models on CPU"};
    app.require_subcommand(1);
    auto train = crucible::cli::add_train(app);
    auto demo = crucible::cli::add_demo(app);
    auto bench = crucible::cli::add_bench(app);
    auto tokenize = crucible::cli::add_tokenize(app);
    auto convert = crucible::cli::add_convert(app);
    auto generate = crucible::cli::add_generate(app);
    auto serve = crucible::cli::add_serve(app);
    auto sandbox = crucible::cli::add_sandbox(app);
    auto evolve = crucible::cli::add_evolve(app);
    auto eval = crucible::cli::add_eval(app);
    auto verify = crucible::cli::add_verify(app);
    auto compare = crucible::cli::add_compare(app);
    auto report = crucible::cli::add_report(app);
    auto rubric = crucible::cli::add_rubric(app);
    auto index = crucible::cli::add_index(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (app.got_subcommand("train")) return train();
        if (app.got_subcommand("demo")) return demo();
        if (app.got_subcommand("bench")) return bench();
        if (app.got_subcommand("tokenize")) return tokenize();
        if (app.got_subcommand("convert")) return convert();
        if (app.got_subcommand("generate")) return generate();
        if (app.got_subcommand("serve")) return serve();
        if (app.got_subcommand("sandbox")) return sandbox();
        if (app.got_subcommand("evolve")) return evolve();
        if (app.got_subcommand("eval")) return eval();
        if (app.got_subcommand("verify")) return verify();
        if (app.got_subcommand("compare")) return compare();
        if (app.got_subcommand("report")) return report();
        if (app.got_subcommand("rubric")) return rubric();
        if (app.got_subcommand("index")) return index();
    } catch (const crucible::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {  // a bug, not bad input: still one readable line
        std::fprintf(stderr, "internal error: %s\n", e.what());
        return 2;
    }
    return 0;
}
