// The expression tree of a math answer, shared by the numeric probes (math_answer.cpp) and
// the symbolic check (symbolic.cpp). Internal to src/eval.
#pragma once

#include <cmath>
#include <limits>
#include <numbers>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

namespace crucible::eval::detail {

enum class Op {
    kNum,
    kVar,
    kNeg,
    kAdd,
    kSub,
    kMul,
    kDiv,
    kPow,
    kFact,
    kAbs,
    kSqrt,
    kRoot,
    kSin,
    kCos,
    kTan,
    kSec,
    kCsc,
    kCot,
    kAsin,
    kAcos,
    kAtan,
    kLn,
    kLog10,
    kLogBase,
    kExp,
    kBinom,
    kPi,  // the constant pi
    kE    // Euler's number e
};

struct Node {
    Op op;
    double value = 0.0;  // kNum: the number; kVar: the variable id
    int a = -1;
    int b = -1;
};

// x^k over the reals: a negative base takes a rational exponent with an odd denominator
// (x^{1/3} is the real cube root, as \sqrt[3]{x} is); any other non-integer power of a
// negative number is not real (NaN), as std::pow has it.
inline double real_pow(double x, double k) {
    if (!(x < 0) || k == std::floor(k) || !std::isfinite(k)) return std::pow(x, k);
    for (double q = 3; q <= 15; q += 2) {
        const double p = k * q;
        if (std::fabs(p - std::round(p)) < 1e-9) {
            const double r = std::pow(-x, k);
            return std::fmod(std::fabs(std::round(p)), 2.0) == 1.0 ? -r : r;
        }
    }
    return std::numeric_limits<double>::quiet_NaN();
}

struct Expr {
    std::vector<Node> nodes;
    int root = -1;
    std::set<int> vars;
    bool has_decimal = false;   // a decimal point or exponent was written
    bool has_infinity = false;  // \infty was written (a division by zero is not infinity)

    double eval(int i, const std::vector<double>& values) const {
        const Node& n = nodes[static_cast<size_t>(i)];
        auto A = [&] { return eval(n.a, values); };
        auto B = [&] { return eval(n.b, values); };
        switch (n.op) {
            case Op::kNum:
                return n.value;
            case Op::kVar:
                return values[static_cast<size_t>(n.value)];
            case Op::kNeg:
                return -A();
            case Op::kAdd:
                return A() + B();
            case Op::kSub:
                return A() - B();
            case Op::kMul:
                return A() * B();
            case Op::kDiv:
                return A() / B();
            case Op::kPow:
                return real_pow(A(), B());
            case Op::kFact: {
                const double x = A();
                if (x < 0 || x > 170 || x != std::floor(x))
                    return std::numeric_limits<double>::quiet_NaN();
                return std::round(std::tgamma(x + 1.0));
            }
            case Op::kAbs:
                return std::fabs(A());
            case Op::kSqrt:
                return std::sqrt(A());
            case Op::kRoot: {
                const double x = A(), k = B();
                if (x < 0 && k == std::floor(k) && std::fmod(k, 2.0) != 0.0)
                    return -std::pow(-x, 1.0 / k);
                return std::pow(x, 1.0 / k);
            }
            case Op::kSin:
                return std::sin(A());
            case Op::kCos:
                return std::cos(A());
            case Op::kTan:
                return std::tan(A());
            case Op::kSec:
                return 1.0 / std::cos(A());
            case Op::kCsc:
                return 1.0 / std::sin(A());
            case Op::kCot:
                return 1.0 / std::tan(A());
            case Op::kAsin:
                return std::asin(A());
            case Op::kAcos:
                return std::acos(A());
            case Op::kAtan:
                return std::atan(A());
            case Op::kLn:
                return std::log(A());
            case Op::kLog10:
                return std::log10(A());
            case Op::kLogBase:
                return std::log(A()) / std::log(B());
            case Op::kExp:
                return std::exp(A());
            case Op::kPi:
                return std::numbers::pi;
            case Op::kE:
                return std::numbers::e;
            case Op::kBinom: {
                const double x = A(), k = B();
                if (k < 0 || k > x || k != std::floor(k) || x != std::floor(x))
                    return std::numeric_limits<double>::quiet_NaN();
                double r = 1.0;
                for (double i = 1; i <= k; ++i) r = r * (x - k + i) / i;
                return std::round(r);
            }
        }
        return std::numeric_limits<double>::quiet_NaN();
    }
    double eval(const std::vector<double>& values) const { return eval(root, values); }
};

// Parses an answer already normalised by normalize_math (no whitespace); nullopt when it is
// not an expression. Defined in math_answer.cpp.
std::optional<Expr> parse_math_expr(std::string_view normalized);

}  // namespace crucible::eval::detail
