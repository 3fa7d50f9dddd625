// `crucible demo search`: RL teaches a small model to use a search tool, on this machine, from
// nothing. A knowledge base of fictional entities is generated from the seed (demo/search_kb.h)
// and indexed; SFT trains the default byte-level model on protocol demonstrations about one
// part of the entities, imperfect on purpose (only some of them search: the others answer
// from memory); held-out questions about entities no training saw are scored as search
// episodes (several samples each); GRPO with the DAPO preset trains in the search environment
// on a second part of the entities with an exact-match reward; the held-out questions are
// scored again and compared with 95% intervals and a paired test, with the search figures
// (searches per question, the right document retrieved) before and after. A stopped run
// re-run continues where it stopped.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace crucible::rl {

struct SearchDemoOptions {
    std::string out_dir = "runs/demo-search";
    int entities = 2000;        // in the knowledge base: half SFT, a quarter RL, the rest held out
    double search_share = 0.5;  // SFT demonstrations that search (the others answer directly)
    int64_t sft_steps = 400;
    int64_t rl_steps = 40;
    int eval_questions = 200;  // held-out questions scored before and after
    int eval_samples = 4;      // episodes per question (temperature 1)
    uint64_t seed = 1;
    std::vector<std::string> rl_overrides;   // key=value applied to the RL config
    std::vector<std::string> sft_overrides;  // key=value applied to the SFT config
};

// Runs the demo and returns what it writes to OUT/results.json (the keys of `crucible demo`'s
// results — before, after, ci_before, ci_after, p_value, seconds — plus closed_book, chance
// and the search figures); OUT/report.html holds the table and the curves.
nlohmann::json run_search_demo(const SearchDemoOptions& options, std::ostream& log);

}  // namespace crucible::rl
