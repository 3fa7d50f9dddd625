#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
    CLI::App app{"crucible: train, run and evaluate reasoning language models on CPU"};
    app.require_subcommand(1);
    auto train = crucible::cli::add_train(app);
    auto bench = crucible::cli::add_bench(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (app.got_subcommand("train")) return train();
        if (app.got_subcommand("bench")) return bench();
    } catch (const crucible::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
