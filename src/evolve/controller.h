// The evolve loop. Each iteration picks an island (round robin), a parent and inspirations
// from it, asks the operator (an LLM through LlmBackend, or the offline mutator) for a child,
// rejects (near-)duplicates, records the child as pending, evaluates it in the sandbox and
// records the result; up to `workers` iterations are in flight at once. With one worker the
// run is serial and a function of the seed alone. Killed at any moment, run(resume=true)
// evaluates what was pending and goes on: the database only ever moves a program from pending
// to evaluated/failed once, in one transaction with its placement.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>

#include "evolve/llm.h"
#include "evolve/problem.h"
#include "evolve/program_db.h"

namespace crucible::evolve {

struct RunSummary {
    int64_t candidates = 0;  // rows with iteration > 0
    int64_t evaluated = 0;
    int64_t failed = 0;
    int64_t rejected = 0;
    double initial_score = 0;
    double best_score = 0;
    int64_t best_id = 0;
    int64_t tokens = 0;
    double cost_usd = 0;
    std::string stop_reason;  // "iterations", "token budget", "cost budget", "stopped"
};

struct ControllerHooks {
    // Called at named points ("pending", "evaluated") with the iteration; tests throw from it
    // to simulate a crash.
    std::function<void(const std::string& point, int64_t iteration)> on_event;
    // Progress lines (one per finished candidate); empty: silent.
    std::function<void(const std::string& line)> log;
    const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): finish in-flight work
};

// Runs (or, with resume, continues) the run stored in `run_dir`. `llm` may be null in
// offline mode. The options used are problem.options; on resume the structural ones (seed,
// islands, features, selection) must match the stored run's, else Error. Writes
// run_dir/best/<program_file> and run_dir/best/info.json at the end.
RunSummary run_evolution(const Problem& problem, const std::filesystem::path& run_dir,
                         LlmBackend* llm, bool resume, const ControllerHooks& hooks = {});

}  // namespace crucible::evolve
