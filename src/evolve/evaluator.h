// Scoring a candidate: writes it into a fresh scratch directory and runs the problem's
// evaluator stages in the sandbox (src/sandbox). A stage must exit 0 and print, as the last
// non-empty line of stdout, a JSON object with a finite numeric "combined_score"; other
// numeric keys are metrics, and "artifacts" (text or any JSON) is kept to show the LLM.
// Timeouts, crashes, bad output, NaN and inf all make the candidate fail, never score.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "evolve/problem.h"

namespace crucible::evolve {

struct EvalOutcome {
    bool ok = false;
    double score = 0;                                   // combined_score of the last stage run
    nlohmann::json metrics = nlohmann::json::object();  // merged over the stages run
    std::string artifacts;  // evaluator artifacts, or stderr's tail on failure
    std::string error;      // why it failed
    int stages_run = 0;
    bool timed_out = false;
    double wall_s = 0;
};

// Thread-safe. Throws Error only when the sandbox itself cannot run (not for a bad program).
// The candidate (evaluator.run) and each stage run in sandboxes of their own, each from a fresh
// scratch directory holding only `code` as the program file; a stage sees nothing the
// candidate wrote but the run's stdout and stderr, read-only. Their folders are made in
// WORK_DIR/crucible-evolve-<pid>-XXXXXX (work_dir empty: the system's temp directory) and
// removed before returning; Error when that folder lies inside a path the sandboxes show.
EvalOutcome evaluate_program(const Problem& problem, const std::string& code,
                             const std::filesystem::path& work_dir = {});

// Where a run's evaluations make their folders: RUN/scratch, or the system's temp directory
// when the run folder lies inside a path the sandboxes show (the problem folder or its
// read_only paths), where every sandbox would see the other evaluations. Throws Error when
// both are shown.
std::filesystem::path evaluation_work_dir(const Problem& problem,
                                          const std::filesystem::path& run_dir);

// Removes the crucible-evolve-<pid>-* folders in `work_dir` whose process no longer exists
// (left by a killed run); returns how many. Folders of live processes are left alone.
int remove_stale_evaluations(const std::filesystem::path& work_dir);

// Parses an evaluator's stdout as described above; sets *error and returns false when it is
// not acceptable.
bool parse_eval_output(const std::string& stdout_text, EvalOutcome* out, std::string* error);

}  // namespace crucible::evolve
