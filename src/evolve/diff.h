// Turning an LLM reply into a child program: SEARCH/REPLACE blocks (AlphaEvolve's format),
// applied exactly or, failing that, line by line ignoring indentation and trailing spaces;
// else a fenced full rewrite of the evolve blocks. The child must keep the parent's markers
// and everything outside them; every failure comes back as text to show the LLM next time.
#pragma once

#include <string>
#include <vector>

namespace crucible::evolve {

struct SearchReplace {
    std::string search;
    std::string replace;
};

// The blocks "<<<<<<< SEARCH\n...\n=======\n...\n>>>>>>> REPLACE" in `text`, in order.
std::vector<SearchReplace> parse_diff(const std::string& text);

// The content of the last fenced code block (``` or ```lang) in `text`; empty when none.
std::string parse_fenced_code(const std::string& text);

struct ApplyResult {
    bool ok = false;
    std::string code;   // the child when ok
    std::string error;  // why not, when !ok (shown to the LLM)
    bool full_rewrite = false;
    int fuzzy_matches = 0;  // blocks that matched only ignoring whitespace
};

// Applies `reply` to `parent`: SEARCH/REPLACE blocks if it has any (each SEARCH must match
// inside an evolve block; exact first, else whitespace-tolerant, and must be unique), else a
// fenced code block as a full rewrite (a whole program keeping the markers, or just the new
// content of a single evolve block). The result must pass check_fixed_parts.
ApplyResult apply_reply(const std::string& parent, const std::string& reply);

}  // namespace crucible::evolve
