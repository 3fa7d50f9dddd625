// An evolve problem: a folder with problem.yaml, the initial program (any language) whose
// evolvable parts sit between EVOLVE-BLOCK-START / EVOLVE-BLOCK-END marker lines, and the
// evaluator the sandbox runs on each candidate. Also the run options (islands, selection,
// features, budgets), read from the same file's `evolve:` section. docs/EVOLVE.md has the
// format; every key is checked and errors name the file, line and key.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace crucible::evolve {

// One evaluator stage of the cascade. A candidate runs stage k+1 only when its combined_score
// after stage k is >= stage k's threshold (the last stage's threshold is unused).
struct EvalStage {
    std::vector<std::string> command;  // {program}, {problem}, {scratch}, {run_stdout},
                                       // {run_stderr} are substituted
    double threshold = 0;
    bool has_threshold = false;
};

// A MAP-Elites feature dimension: "code_length" (characters of the evolve blocks),
// "diversity" (mean 1 - similarity to a reference set, in [0, 1]), "score" (combined_score) or
// the name of any metric the evaluator prints. Values are clipped to [min, max] and cut into
// `bins` equal bins; fixed ranges keep cells stable across a resume.
struct FeatureDim {
    std::string name;
    int bins = 10;
    double min = 0;
    double max = 1;
};

struct LlmEndpoint {
    std::string base_url;  // OpenAI-compatible, e.g. http://127.0.0.1:8000/v1
    std::string model;
    double weight = 1;
    double usd_per_mtok_in = 0;  // prices per million tokens, for the cost budget
    double usd_per_mtok_out = 0;
};

struct EvolveOptions {
    // search
    int iterations = 100;  // total candidates (the initial program is not counted)
    int workers = 1;       // concurrent LLM calls + evaluations; 1 is serial and deterministic
    uint64_t seed = 1;
    int islands = 4;
    int migration_interval = 20;  // evaluated children between ring migrations (0: never)
    double migration_rate = 0.1;  // top max(1, floor(rate * island size)) copied to neighbours
    std::string selection = "weighted";  // weighted | funsearch | power_law | uniform
    double weighted_lambda = 10;
    double funsearch_t0 = 0.1;
    int funsearch_period = 30000;
    double power_law_alpha = 1;
    int archive_size = 20;       // elite archive: the best programs over all islands
    double archive_ratio = 0.1;  // chance of taking the parent from the archive instead
    int num_top_inspirations = 2;
    int num_diverse_inspirations = 1;
    std::vector<FeatureDim> features;
    double similarity_threshold = 0.99;  // reject a candidate this similar to an island member
    // operators
    std::string mode = "llm";  // llm | offline
    double offline_crossover_rate = 0.2;
    double offline_sigma = 0.05;  // relative step of a numeric mutation
    int offline_max_mutations = 3;
    std::string diff_mode = "diff";  // diff (SEARCH/REPLACE) | full (rewrite the blocks)
    double full_rewrite_rate = 0.1;  // with diff_mode diff: chance of asking for a rewrite
    std::vector<LlmEndpoint> llms;
    bool ucb = false;  // pick endpoints with a UCB1 bandit instead of by weight
    double ucb_c = 1.4;
    double temperature = 0.7;
    int max_tokens = 4096;
    double llm_timeout_s = 120;
    std::string system_prompt;    // empty: the built-in one
    std::string prompt_template;  // empty: the built-in one (see prompt.h for placeholders)
    // budgets: 0 means none
    int64_t max_total_tokens = 0;
    double max_cost_usd = 0;
};

struct Problem {
    std::filesystem::path dir;  // absolute
    std::string name;
    std::string description;  // shown to the LLM
    std::string language = "python";
    std::string program_file;  // name the candidate is written under in the scratch directory
    std::string initial_code;
    // problem.yaml's best_known: the best combined_score known for the problem (a published
    // result), drawn in the report; NaN: none given.
    double best_known = NAN;
    // evaluator.run: the candidate alone, in a sandbox of its own that is torn down (every
    // process it started killed) before the first stage starts; its stdout and stderr reach
    // the stages as read-only files ({run_stdout}, {run_stderr}). Empty: the stages run the
    // candidate themselves, in the evaluator's sandbox.
    std::vector<std::string> run_command;
    std::vector<EvalStage> stages;
    double timeout_s = 60;  // wall clock per stage (and for the run)
    double cpu_s = 60;
    size_t mem_mb = 2048;
    int procs = 64;
    std::vector<std::filesystem::path> read_only;  // visible to the evaluator (dir included)
    EvolveOptions options;
};

// Throws Error("WHERE: ...") when an option is out of range or names an unknown strategy.
void validate_options(const EvolveOptions& options, const std::string& where);

// Loads DIR/problem.yaml. Throws Error("DIR/problem.yaml:LINE: ...") naming the bad key.
Problem load_problem(const std::filesystem::path& dir);

// The [begin, end) byte ranges of each evolve block's content: the lines strictly between a
// line containing EVOLVE-BLOCK-START and the next containing EVOLVE-BLOCK-END. Returns an
// empty vector and sets *error when markers are missing, unpaired or nested.
std::vector<std::pair<size_t, size_t>> evolve_blocks(const std::string& code, std::string* error);

// The evolve blocks' contents joined with newlines (the whole code when there are none).
std::string evolve_text(const std::string& code);

// Empty when `child` keeps `parent`'s markers and everything outside the blocks byte for byte;
// else what differs.
std::string check_fixed_parts(const std::string& parent, const std::string& child);

}  // namespace crucible::evolve
