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
    num,
    var,
    neg,
    add,
    sub,
    mul,
    div,
    pow,
    fact,
    abs,
    sqrt,
    root,
    sin,
    cos,
    tan,
    sec,
    csc,
    cot,
    asin,
    acos,
    atan,
    ln,
    log10,
    log_base,
    exp,
    binom,
    pi,  // the constant pi
    e    // Euler's number e
};

struct Node {
    Op op;
    double value = 0.0;  // num: the number; var: the variable id
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
            case Op::num:
                return n.value;
            case Op::var:
                return values[static_cast<size_t>(n.value)];
            case Op::neg:
                return -A();
            case Op::add:
                return A() + B();
            case Op::sub:
                return A() - B();
            case Op::mul:
                return A() * B();
            case Op::div:
                return A() / B();
            case Op::pow:
                return real_pow(A(), B());
            case Op::fact: {
                const double x = A();
                if (x < 0 || x > 170 || x != std::floor(x))
                    return std::numeric_limits<double>::quiet_NaN();
                return std::round(std::tgamma(x + 1.0));
            }
            case Op::abs:
                return std::fabs(A());
            case Op::sqrt:
                return std::sqrt(A());
            case Op::root: {
                const double x = A(), k = B();
                if (x < 0 && k == std::floor(k) && std::fmod(k, 2.0) != 0.0)
                    return -std::pow(-x, 1.0 / k);
                return std::pow(x, 1.0 / k);
            }
            case Op::sin:
                return std::sin(A());
            case Op::cos:
                return std::cos(A());
            case Op::tan:
                return std::tan(A());
            case Op::sec:
                return 1.0 / std::cos(A());
            case Op::csc:
                return 1.0 / std::sin(A());
            case Op::cot:
                return 1.0 / std::tan(A());
            case Op::asin:
                return std::asin(A());
            case Op::acos:
                return std::acos(A());
            case Op::atan:
                return std::atan(A());
            case Op::ln:
                return std::log(A());
            case Op::log10:
                return std::log10(A());
            case Op::log_base:
                return std::log(A()) / std::log(B());
            case Op::exp:
                return std::exp(A());
            case Op::pi:
                return std::numbers::pi;
            case Op::e:
                return std::numbers::e;
            case Op::binom: {
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
