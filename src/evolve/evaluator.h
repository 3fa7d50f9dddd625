// Scoring a candidate: writes it into a fresh scratch directory and runs the problem's
// evaluator stages in the sandbox (src/sandbox). A stage must exit 0 and print, as the last
// non-empty line of stdout, a JSON object with a finite numeric "combined_score"; other
// numeric keys are metrics, and "artifacts" (text or any JSON) is kept to show the LLM.
// Timeouts, crashes, bad output, NaN and inf all make the candidate fail, never score.
#pragma once

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
EvalOutcome evaluate_program(const Problem& problem, const std::string& code);

// Parses an evaluator's stdout as described above; sets *error and returns false when it is
// not acceptable.
bool parse_eval_output(const std::string& stdout_text, EvalOutcome* out, std::string* error);

}  // namespace crucible::evolve
