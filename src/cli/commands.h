// The subcommands of the `crucible` binary, each registered on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace crucible::cli {

// Each returns the function to run when its subcommand was chosen (exit code).
std::function<int()> add_train(CLI::App& app);
// `demo`: SFT, held-out scoring, GRPO, scoring again, paired comparison (src/cli/demo.cpp).
std::function<int()> add_demo(CLI::App& app);
std::function<int()> add_bench(CLI::App& app);
std::function<int()> add_tokenize(CLI::App& app);
// `bench tokenize`, registered on the `bench` subcommand by add_bench.
std::function<int()> add_bench_tokenize(CLI::App& bench);
// `bench generate`, registered on the `bench` subcommand by add_bench.
std::function<int()> add_bench_generate(CLI::App& bench);
// `bench linear`, registered on the `bench` subcommand by add_bench.
std::function<int()> add_bench_linear(CLI::App& bench);
// `crucible bench episodes` (a subcommand of bench).
std::function<int()> add_bench_episodes(CLI::App& bench);
std::function<int()> add_convert(CLI::App& app);
std::function<int()> add_generate(CLI::App& app);
std::function<int()> add_serve(CLI::App& app);
std::function<int()> add_sandbox(CLI::App& app);
std::function<int()> add_evolve(CLI::App& app);
// The eval harness (src/cli/eval.cpp).
std::function<int()> add_eval(CLI::App& app);
// `crucible experiment run|report` (experiment.cpp).
std::function<int()> add_experiment(CLI::App& app);
std::function<int()> add_verify(CLI::App& app);
std::function<int()> add_compare(CLI::App& app);
std::function<int()> add_report(CLI::App& app);
// `rubric score` and `rubric generate` (src/cli/rubric.cpp).
std::function<int()> add_rubric(CLI::App& app);
// `index build` and `index search`: the search tool's BM25 index (src/cli/index.cpp).
std::function<int()> add_index(CLI::App& app);

}  // namespace crucible::cli
