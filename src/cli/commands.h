// The subcommands of the `crucible` binary, each registered on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace crucible::cli {

// Each returns the function to run when its subcommand was chosen (exit code).
std::function<int()> add_train(CLI::App& app);
std::function<int()> add_bench(CLI::App& app);
std::function<int()> add_tokenize(CLI::App& app);
// `bench tokenize`, registered on the `bench` subcommand by add_bench.
std::function<int()> add_bench_tokenize(CLI::App& bench);
// `bench generate`, registered on the `bench` subcommand by add_bench.
std::function<int()> add_bench_generate(CLI::App& bench);
std::function<int()> add_convert(CLI::App& app);
std::function<int()> add_generate(CLI::App& app);
std::function<int()> add_sandbox(CLI::App& app);

}  // namespace crucible::cli
