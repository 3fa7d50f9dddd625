// The `calculator` tool: arithmetic expressions evaluated exactly, in rational arithmetic.
//
// Grammar (whitespace between tokens is ignored):
//   expr    := term (('+' | '-') term)*          left-associative
//   term    := unary (('*' | '/') unary)*        left-associative
//   unary   := ('-' | '+') unary | power
//   power   := primary (('^' | '**') unary)?     right-associative: 2^3^2 = 2^9 = 512
//   primary := number | '(' expr ')'
//   number  := digits ['.' digits] | '.' digits   (no exponent notation: "1e3" is an error)
// So unary minus binds looser than '^' (-2^2 = -4, as in mathematics and Python) and an
// exponent may carry its own sign (2^-1 = 1/2). An exponent must be an integer; 0^0 = 1.
//
// Numbers are exact rationals (CLN's cl_RA, the library under GiNaC): 0.1 + 0.2 = 3/10 and
// 1/3*3 = 1. The result prints as an integer when it is one ("1024", "-7"), otherwise as the
// reduced fraction and its decimal rounded to 6 places, half away from zero, trailing zeros
// dropped: "1/3 (0.333333)", "3/10 (0.3)", "-1/8 (-0.125)"; a value under 0.0000005 in size
// shows 6 significant digits instead: "1/3000000000 (3.33333e-10)".
//
// Every input is bounded, so a hostile expression gets an error message quickly instead of
// hanging or exhausting memory: its length (kCalcMaxChars), nesting of parentheses and signs
// (kCalcMaxDepth), the size of every number met along the way (numerator and denominator up
// to kCalcMaxDigits decimal digits, checked before a power is computed) and an exponent's
// size (kCalcMaxExponent). Division by zero is an error.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace crucible {

inline constexpr size_t kCalcMaxChars = 2000;
inline constexpr int kCalcMaxDepth = 64;
inline constexpr int kCalcMaxDigits = 500;
inline constexpr long kCalcMaxExponent = 10000;

struct CalcResult {
    bool ok = false;
    std::string value;  // when ok: "1024" or "1/3 (0.333333)"
    std::string error;  // when not ok: one line, e.g. "division by zero"
};

// Evaluates `expression`. Never throws on any input (std::bad_alloc aside). Thread-safe
// (evaluations are serialized: CLN is not).
CalcResult evaluate_expression(std::string_view expression);

// The tool's observation text: the value, or "error: " followed by the message.
std::string calculator_tool(std::string_view expression);

}  // namespace crucible
