// Symbolic equivalence of two parsed math answers with GiNaC: a - b is brought to a normal
// form (GiNaC's normal(): rational functions over a common denominator, radicals of integers
// in canonical form) and tested for zero. This proves identities such as
// (x^2 - 1)/(x - 1) = x + 1 or 2 sqrt(2) = sqrt(8) exactly, and differences too small for
// the probes' doubles (e^{-1000}); it proves nothing about trig or log identities, which the
// numeric probes of math_answer.cpp decide.
#pragma once

#include <optional>

#include "reward/verify/math_expr.h"

namespace crucible::eval::detail {

// true when GiNaC proves a - b == 0; false when a - b normalises to a nonzero rational
// number (two different exact constants), or to a fraction whose numerator is a polynomial
// in the variables with a constant coefficient that is certainly nonzero (evaluated at 40
// and 80 digits: 2 + e^{-1000} against 2, x + 10^{-10} x against x); nullopt otherwise (not
// decided: the caller goes on to the numeric probes). Expressions with decimals (not exact),
// infinity, huge powers of variables or factorials, or anything GiNaC throws on, are not
// decided; nor is "different" said when a constant leaves the real domain ((-8)^{1/3}).
// Calls are serialised by a mutex (GiNaC's globals are not thread-safe).
std::optional<bool> symbolic_verdict(const Expr& a, const Expr& b);

}  // namespace crucible::eval::detail
