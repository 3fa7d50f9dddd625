// Parent-selection strategies as pure functions over an island's scores, so each one's
// distribution can be checked against its formula (docs/EVOLVE.md):
//   uniform    p_i = 1/n
//   funsearch  p_i ∝ exp(s_i / T), T = T0 · (1 − (n mod N)/N)           (FunSearch, Nature 2023)
//   weighted   w_i = sigmoid(λ (s_i − median s) / MAD) · 1/(1 + children_i)   (ShinkaEvolve)
//   power_law  p_i ∝ rank_i^(−α), rank 1 = best, ties broken by order          (ShinkaEvolve)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "evolve/problem.h"

namespace crucible::evolve {

// Normalised selection probabilities (summing to 1) for candidates with `scores` and
// `children`, under options.selection. REQUIRES: scores non-empty, all finite.
std::vector<double> selection_probabilities(const EvolveOptions& options,
                                            const std::vector<double>& scores,
                                            const std::vector<int64_t>& children);

// An index drawn from `probabilities` (which sum to 1).
size_t sample_index(const std::vector<double>& probabilities, Rng& rng);

// Similarity of two texts in [0, 1]: Jaccard index of their sets of character 4-grams after
// collapsing whitespace (1 for identical normalised texts).
double code_similarity(const std::string& a, const std::string& b);

// The text with comments-free whitespace normalisation used for duplicate detection: runs of
// spaces and tabs collapsed, trailing spaces and blank lines dropped.
std::string normalise_code(const std::string& code);

// FNV-1a 64 of the normalised code, as 16 hex digits (stable across builds and machines).
std::string code_hash(const std::string& code);

}  // namespace crucible::evolve
