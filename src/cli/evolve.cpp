// `crucible evolve run|report|export`: the AlphaEvolve-style search (src/evolve) on the
// command line.
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "evolve/controller.h"
#include "evolve/report.h"

namespace crucible::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
    if (g_stop.load()) std::_Exit(130);  // a second Ctrl-C: leave now (resume recovers)
    g_stop.store(true);
}

// "openai:BASE_URL#MODEL[@WEIGHT]" (the "openai:" prefix is optional).
evolve::LlmEndpoint parse_llm(const std::string& spec) {
    std::string s = spec;
    if (s.rfind("openai:", 0) == 0) s = s.substr(7);
    const size_t hash = s.rfind('#');
    if (hash == std::string::npos || hash == 0 || hash + 1 == s.size()) {
        throw Error("--llm " + spec + ": expected openai:BASE_URL#MODEL[@WEIGHT]");
    }
    evolve::LlmEndpoint e;
    e.base_url = s.substr(0, hash);
    e.model = s.substr(hash + 1);
    const size_t at = e.model.rfind('@');
    if (at != std::string::npos) {
        try {
            e.weight = std::stod(e.model.substr(at + 1));
        } catch (const std::exception&) {
            throw Error("--llm " + spec + ": the weight after '@' is not a number");
        }
        e.model = e.model.substr(0, at);
    }
    return e;
}

}  // namespace

std::function<int()> add_evolve(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("evolve", "Evolve programs with LLMs (AlphaEvolve-style)");
    cmd->require_subcommand(1);
    struct Options {
        std::string problem, out, run_dir, html, csv, json_path;
        int iterations = -1, workers = -1;
        int64_t seed = -1;
        std::vector<std::string> llms;
        bool offline = false, resume = false, ucb = false, quiet = false;
        int64_t max_tokens = -1;
        double max_cost = -1;
    };
    auto opt = std::make_shared<Options>();
    CLI::App* run = cmd->add_subcommand("run", "Run (or --resume) an evolution");
    run->add_option("--problem", opt->problem, "problem folder (problem.yaml)")->required();
    run->add_option("--out", opt->out, "run folder (programs.sqlite, best/)")->required();
    run->add_option("--iterations", opt->iterations,
                    "candidates to generate in total (default: problem.yaml's evolve.iterations, "
                    "else 100)")
        ->default_str("");
    run->add_option("--workers", opt->workers,
                    "concurrent LLM calls + evaluations, 1: serial (default: problem.yaml's "
                    "evolve.workers, else 1)")
        ->default_str("");
    run->add_option("--seed", opt->seed,
                    "seed of the whole run (default: problem.yaml's evolve.seed, else 1)")
        ->default_str("");
    run->add_option("--llm", opt->llms,
                    "endpoint openai:BASE_URL#MODEL[@WEIGHT] (repeat for an ensemble)");
    run->add_flag("--offline", opt->offline, "no LLM: mutate numeric literals + crossover");
    run->add_flag("--resume", opt->resume, "continue the run stored in --out");
    run->add_flag("--ucb", opt->ucb, "pick endpoints with a UCB1 bandit instead of by weight");
    run->add_option("--max-tokens", opt->max_tokens,
                    "stop after this many LLM tokens in total (default: problem.yaml's, else no "
                    "limit)")
        ->default_str("");
    run->add_option("--max-cost", opt->max_cost,
                    "stop after this many USD (default: problem.yaml's, else no limit)")
        ->default_str("");
    run->add_flag("--quiet", opt->quiet, "no progress lines");
    CLI::App* report = cmd->add_subcommand("report", "Render a run as an offline HTML page");
    report->add_option("run", opt->run_dir, "run folder")->required();
    report->add_option("--out", opt->html, "HTML file to write")->required();
    CLI::App* exp = cmd->add_subcommand("export", "Export every program of a run");
    exp->add_option("run", opt->run_dir, "run folder")->required();
    exp->add_option("--csv", opt->csv, "CSV file to write");
    exp->add_option("--json", opt->json_path, "JSON file to write");

    return [opt, run, report, exp]() -> int {
        if (report->parsed()) {
            write_file_durable(opt->html, evolve::render_report(opt->run_dir));
            std::printf("wrote %s\n", opt->html.c_str());
            return 0;
        }
        if (exp->parsed()) {
            if (opt->csv.empty() && opt->json_path.empty()) {
                throw Error("evolve export: give --csv FILE and/or --json FILE");
            }
            if (!opt->csv.empty()) write_file_durable(opt->csv, evolve::export_csv(opt->run_dir));
            if (!opt->json_path.empty()) {
                write_file_durable(opt->json_path, evolve::export_json(opt->run_dir));
            }
            return 0;
        }
        evolve::Problem problem = evolve::load_problem(opt->problem);
        evolve::EvolveOptions& o = problem.options;
        if (opt->iterations >= 0) o.iterations = opt->iterations;
        if (opt->workers >= 0) o.workers = opt->workers;
        if (opt->seed >= 0) o.seed = static_cast<uint64_t>(opt->seed);
        if (opt->max_tokens >= 0) o.max_total_tokens = opt->max_tokens;
        if (opt->max_cost >= 0) o.max_cost_usd = opt->max_cost;
        if (opt->ucb) o.ucb = true;
        for (const auto& s : opt->llms) o.llms.push_back(parse_llm(s));
        if (!opt->llms.empty() && o.llms.size() > opt->llms.size()) {
            o.llms.erase(o.llms.begin(), o.llms.end() - static_cast<long>(opt->llms.size()));
        }
        if (opt->offline) o.mode = "offline";
        evolve::validate_options(o, "command line");
        std::unique_ptr<evolve::OpenAIEnsemble> llm;
        if (o.mode == "llm") llm = std::make_unique<evolve::OpenAIEnsemble>(o);
        evolve::ControllerHooks hooks;
        if (!opt->quiet)
            hooks.log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
        hooks.stop = &g_stop;
        std::signal(SIGINT, on_stop_signal);
        std::signal(SIGTERM, on_stop_signal);
        const evolve::RunSummary s =
            evolve::run_evolution(problem, opt->out, llm.get(), opt->resume, hooks);
        const nlohmann::json out = {{"candidates", s.candidates},
                                    {"evaluated", s.evaluated},
                                    {"failed", s.failed},
                                    {"rejected", s.rejected},
                                    {"initial_score", s.initial_score},
                                    {"best_score", s.best_score},
                                    {"best_id", s.best_id},
                                    {"tokens", s.tokens},
                                    {"cost_usd", s.cost_usd},
                                    {"stop_reason", s.stop_reason}};
        std::cout << out.dump() << std::endl;
        return 0;
    };
}

}  // namespace crucible::cli
