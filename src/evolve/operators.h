// The offline operator: no LLM. It perturbs the numeric literals inside the evolve blocks
// (Gaussian steps relative to each value, sign and int/float kind kept) and, with some
// probability, crosses two parents whose blocks differ only in their literals (each literal
// taken from either parent). It makes real progress on parametric problems and gives the
// baseline an LLM run should beat.
#pragma once

#include <string>
#include <vector>

#include "core/rng.h"

namespace crucible::evolve {

struct NumericLiteral {
    size_t begin = 0;  // byte offset in the program
    size_t size = 0;
    double value = 0;
    bool is_float = false;
};

// The unsigned numeric literals (123, 1.5, .5, 2e-3) inside the program's evolve blocks, in
// order; digits that belong to identifiers (x1, v2_3) or strings' words are not literals.
std::vector<NumericLiteral> find_literals(const std::string& code);

struct OperatorResult {
    bool ok = false;
    std::string code;
    std::string description;  // e.g. "mutate: 0.5 -> 0.5213 at byte 120"
    bool crossover = false;
};

// Mutates 1..max_mutations literals of `parent`; with probability crossover_rate and a
// compatible `other` (same code once literals are blanked), crosses them first. Fails (ok
// false) when the blocks hold no literal.
OperatorResult offline_mutate(const std::string& parent, const std::vector<std::string>& others,
                              double sigma, int max_mutations, double crossover_rate, Rng& rng);

}  // namespace crucible::evolve
