// Verifiers: does a model's answer match the gold answer? One function per kind plus
// `verify(kind, gold, pred)`. Pure functions, no I/O; a parse failure is never "equal".
//
// Kinds:
//   exact    normalised string equality: trim, collapse whitespace runs, ASCII case-fold.
//   regex    gold is a PCRE2 pattern (core/regex.h: Perl syntax, UTF-8, ASCII \d \w \s) that
//            must match the whole (trimmed) prediction, anchored at both ends; an invalid
//            pattern, or a match stopped at the shared match limits (catastrophic
//            backtracking), throws crucible::Error.
//   numeric  both sides parse as numbers (ints, decimals, scientific notation, fractions a/b,
//            thousands separators "1,234", a trailing percent sign) and agree within
//            |g - p| <= max(abs, rel * max(|g|, |p|)). A prediction that is not a bare number
//            is tried again on its extracted final answer (see extract_math_answer).
//   mc       multiple choice: the letter A-J extracted from each side is the same.
//   math     extract the final answer (last \boxed{...}, else "the answer is ..." / "answer:"),
//            normalise the LaTeX, compare structure (sets, tuples, intervals, matrices,
//            equations) and values (numbers, fractions, decimals, constant expressions and
//            expressions in variables checked at fixed numeric probe points).
//
// Percent policy (numeric and math): "10%" and "10\%" mean the number as written, 10. When
// exactly one side carries a percent sign it also matches its fraction, so gold "10\%" equals
// both "10" and "0.1"; without a percent sign on either side 10 and 0.1 differ.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "reward/verify/math_answer.h"

namespace crucible::eval {

// ---- exact ------------------------------------------------------------------------------------

// Trims, collapses each run of ASCII whitespace to one space, lower-cases ASCII letters.
std::string normalize_text(std::string_view s);
// Equal after normalize_text. An empty (or all-whitespace) gold never matches: it is no answer.
bool verify_exact(std::string_view gold, std::string_view pred);

// ---- regex ------------------------------------------------------------------------------------

// True if `pattern` (PCRE2) matches the whole of `pred` after trimming whitespace (as if it
// were \A(?:pattern)\z). Throws crucible::Error naming the pattern when it does not compile
// or when the match hits the limits of core/regex.h (the rubric `regex` criterion shares them).
bool verify_regex(const std::string& pattern, const std::string& pred);

// ---- numeric ----------------------------------------------------------------------------------

struct NumericTolerance {
    double abs = 1e-9;
    double rel = 1e-9;
};

struct ParsedNumber {
    double value = 0.0;    // as written: "10%" gives 10
    bool percent = false;  // a trailing % (or \%) was present
};

// Parses a bare number: optional sign (+, -, U+2212), optional leading '$', digits with
// optional comma thousands groups, optional decimals, optional exponent (1.5e-3), optional
// trailing '%'; or a fraction "a/b" of two such numbers. Surrounding whitespace and a trailing
// '.' are ignored. Returns nullopt for anything else (and for b = 0).
std::optional<ParsedNumber> parse_number(std::string_view s);
bool numbers_close(double a, double b, NumericTolerance tol = {});
bool verify_numeric(std::string_view gold, std::string_view pred, NumericTolerance tol = {});

// ---- multiple choice --------------------------------------------------------------------------

// The chosen letter (upper-case, A-J) in answers like "B", "(B)", "B)", "B.", "**B**",
// "\boxed{B}", "The answer is B", "Answer: (B)"; the last such statement wins. nullopt when
// none is found.
std::optional<char> extract_choice(std::string_view text);
bool verify_choice(std::string_view gold, std::string_view pred);

// ---- dispatch ---------------------------------------------------------------------------------

// kind in {"exact", "regex", "numeric", "mc" (alias "choice"), "math"}; any other kind throws
// crucible::Error.
bool verify(const std::string& kind, const std::string& gold, const std::string& pred);

}  // namespace crucible::eval
