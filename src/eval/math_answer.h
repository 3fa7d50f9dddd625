// Math answer checking: extract the final answer of a solution, normalise its LaTeX, and
// decide equivalence by structure (sets, tuples, intervals, matrices, equations) and value
// (numbers, fractions, constant expressions, and expressions in variables evaluated at fixed
// numeric probe points). Two expressions are equal when GiNaC proves their difference zero
// (symbolic.h: exact for rational functions and radicals), else when they agree at every
// numeric probe point where both are defined (at least two; trig/log identities are decided
// here). e is Euler's number; "\sin^2 x" is (\sin x)^2. A parse failure is never "equal". The
// percent policy is the one described in verifiers.h.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace crucible::eval {

// ---- math -------------------------------------------------------------------------------------

// The final answer in a solution: the content of the last \boxed{...} (nested braces matched;
// also "\boxed 5" and \fbox), else the text after the last "answer is" or "answer:" up to the
// end of its line or sentence. nullopt when there is none, or the last \boxed is unbalanced.
std::optional<std::string> extract_math_answer(std::string_view text);

// The LaTeX normalisation applied before comparison: strips $ and \( \) delimiters, \boxed,
// \left/\right, spacing commands (\! \, \; \quad), \text{}/\mathrm{}/\mbox{} wrappers, unit
// words ("5 cm", "\text{ inches}"), degrees (^\circ), \$, trailing punctuation, thousands
// separators and all whitespace; \dfrac/\tfrac become \frac; a leading "x \in" is dropped.
// A percent sign is kept as a trailing '%'.
std::string normalize_math(std::string_view answer);

// Compares two already-extracted answers (gold first). Sets \{...\} (and bare lists "1, 2")
// are order-insensitive; tuples (...) and intervals compare element-wise and bracket by
// bracket, so [0,1) differs from [0,1]; "x=3" equals "3" when the left side is one variable;
// two equations are equal when lhs - rhs agree up to a constant factor at the probe points.
// Mixed numbers ("2\frac{1}{2}") read as a product, as LaTeX writes it.
bool math_answers_equal(std::string_view gold, std::string_view pred);

// Extracts the final answer of each side (the whole text when there is no marker) and
// compares with math_answers_equal.
bool verify_math(std::string_view gold, std::string_view pred);

}  // namespace crucible::eval
