// The subcommands of the `crucible` binary, each registered on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace crucible::cli {

// Each returns the function to run when its subcommand was chosen (exit code).
std::function<int()> add_train(CLI::App& app);
std::function<int()> add_bench(CLI::App& app);
std::function<int()> add_tokenize(CLI::App& app);
std::function<int()> add_convert(CLI::App& app);

}  // namespace crucible::cli
