// Math answer checking: extract the final answer of a solution, normalise its LaTeX, and
// decide equivalence by structure (sets, tuples, intervals, matrices, equations) and value
// (numbers, fractions, constant expressions, and expressions in variables evaluated at fixed
// numeric probe points). Two expressions are equal when GiNaC proves their difference zero
// (symbolic.h: exact for rational functions and radicals), else when they agree at every
// numeric probe point where both are defined (at least two; trig/log identities are decided
// here). The probe points include negative and mixed-sign values, and either way two
// expressions differ where one is real and finite and the other is not (|x| is not x,
// sqrt(x)^2 is not x; x/x is 1, as a single removable point is never probed). e is Euler's
// number; "\sin^2 x" is (\sin x)^2. A parse failure is never "equal". The percent policy is the
// one described in verifiers.h. The rules follow Math-Verify's where they can
// (docs/EVALUATION.md lists them and the deliberate differences).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace crucible::eval {

// ---- math -------------------------------------------------------------------------------------

// The final answer in a solution: the content of the last \boxed{...} (nested braces matched;
// also "\boxed 5" and \fbox), joined by commas with the boxes before it that are close (under
// 10 characters apart) or joined by "and", "or", ",", ";" (under 70); else the math
// environment ($..$, $$..$$, \(..\), \[..\], on any line for the display ones) that starts
// within 50 characters after the last "answer"; else the text after the last "answer is" or
// "answer:" up to the end of its line or sentence; else the last math environment. An
// environment is returned with its delimiters, with the environments joined to it by "and",
// "or" or "," and a percent sign after it. nullopt when there is none, or the last \boxed is
// unbalanced.
std::optional<std::string> extract_math_answer(std::string_view text);

// The LaTeX normalisation applied before comparison: strips $ and \( \) delimiters, \boxed,
// \left/\right, spacing commands (\! \, \; \quad), \text{}/\mathrm{}/\mbox{} wrappers, unit
// words ("5 cm", "\text{ inches}"), degrees (^\circ), \$, trailing punctuation, thousands
// separators ("1,000.99", "32,\!349", "1\,000"; "0,375" is a decimal comma; "1,2" and "3,5"
// stay lists) and whitespace (digits apart stay apart: "1 2" keeps its space and is not 12);
// \dfrac/\tfrac become \frac; >=, <=, !=, \geq, \leqslant, \gt ... become \ge, \le, \ne, >;
// the words "and"/"or" between answers become commas; \ldots, \cdots, "..." become \dots; a
// leading "x \in" is dropped; Unicode spaces are spaces (zero-width ones are dropped), and a
// pair of parentheses or braces that only wraps another pair is dropped ("((x))" is "(x)").
// A percent sign is kept as a trailing '%'.
std::string normalize_math(std::string_view answer);

// Compares two already-extracted answers (gold first: some rules hold one way only). Sets
// \{...\} (and bare lists "1, 2") are order-insensitive unless they hold an ellipsis (then they
// are patterns, in order: "1, 3, 5, \dots" is not "1, 3, 5"); tuples (...) and intervals
// compare element-wise and bracket by bracket, so [0,1) differs from [0,1] and (1,2) differs
// from \{1,2\}; a gold "x=3" equals "3"; a predicted equation or chain ("x = 5+5+1 = 11")
// answers a value by its last side when every constant side in it equals that value; two
// equations are equal when lhs - rhs agree up to a constant factor at the probe points.
// Inequalities compare link by link after flipping > and \ge, lhs - rhs up to a positive
// factor ("-x > -1" is "x < 1"); a gold inequality on one variable equals its interval
// ("x \ge 5" and "[5,\infty)"), not the other way round. A plain decimal equals a value when
// it is that value rounded at its own number of places, never fewer than 6 (0.142857 is 1/7;
// 0.3, 0.1429 and 1.414 are not 1/3, 1/7 and sqrt 2); two decimals compare at 6 places. Mixed
// numbers ("2\frac{1}{2}") are sums, as Math-Verify reads them; "\approx" keeps the exact side.
bool math_answers_equal(std::string_view gold, std::string_view pred);

// Extracts the final answer of each side (the whole text when there is no marker) and
// compares with math_answers_equal.
bool verify_math(std::string_view gold, std::string_view pred);

}  // namespace crucible::eval
