#include "eval/symbolic.h"

#include <ginac/ginac.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace crucible::eval::detail {

namespace {

// Exponents and factorials above these are left to the probes: normal() expands powers.
constexpr double kMaxExponent = 64;
constexpr double kMaxFactorial = 30;

// Above this many monomials in the worst case normal() is not tried, and the probes decide.
// normal() expands powers, and its time grows about with the square of the terms: by hand,
// s^6 + 1 against s^5 (s + 1) with s = a+b+...+k (8 variables, 3,003 monomials) took 0.13 s,
// s^11 + 1 against s^10 (s + 1) (75,582) 81 s, and s^64 - (s - 1)^64 never finished.
constexpr double kMaxMonomials = 5000;

// What normal() may have to expand in `e`, which it brings to one fraction of polynomials:
// upper bounds of the numerator's and the denominator's total degrees (sums take a common
// denominator, powers with a numeric exponent multiply), and the number of opaque atoms (a
// function application or a non-numeric power counts as a new variable of degree 1; the
// largest degree met inside one is kept in `inner`, as normal() works on arguments too).
struct Size {
    double num = 0, den = 0;
    int atoms = 0;
    double inner = 0;
};

Size expansion_size(const Expr& e, int i) {
    const Node& n = e.nodes[static_cast<size_t>(i)];
    const Size a = n.a >= 0 ? expansion_size(e, n.a) : Size{};
    const Size b = n.b >= 0 ? expansion_size(e, n.b) : Size{};
    const int atoms = a.atoms + b.atoms;
    const double inner = std::max(a.inner, b.inner);
    switch (n.op) {
        case Op::kNum:
        case Op::kPi:
        case Op::kE:
        case Op::kFact:
        case Op::kBinom:
            return {0, 0, atoms, inner};
        case Op::kVar:
            return {1, 0, 0, 0};
        case Op::kNeg:
            return a;
        case Op::kAdd:
        case Op::kSub:
            return {std::max(a.num + b.den, b.num + a.den), a.den + b.den, atoms, inner};
        case Op::kMul:
            return {a.num + b.num, a.den + b.den, atoms, inner};
        case Op::kDiv:
            return {a.num + b.den, a.den + b.num, atoms, inner};
        case Op::kPow: {
            const Node& x = e.nodes[static_cast<size_t>(n.b)];
            if (x.op == Op::kNum) {
                const double k = std::ceil(std::fabs(x.value));
                return x.value >= 0 ? Size{k * a.num, k * a.den, atoms, inner}
                                    : Size{k * a.den, k * a.num, atoms, inner};
            }
            break;
        }
        default:
            break;
    }
    // Roots, |.|, trigonometric functions, logarithms, exp, symbolic powers: opaque.
    return {1, 0, atoms + 1, std::max({inner, a.num, a.den, b.num, b.den})};
}

// C(degree + vars, vars), the monomials of a polynomial of that degree in that many
// variables; stops counting past kMaxMonomials.
double monomial_bound(double degree, int vars) {
    double c = 1;
    for (int k = 1; k <= vars && c <= kMaxMonomials; ++k) c = c * (degree + k) / k;
    return c;
}

// d^q, or 0 when it exceeds `limit`.
long power_up_to(long d, long q, long limit) {
    long r = 1;
    for (long i = 0; i < q; ++i) {
        if (r > limit / d) return 0;
        r *= d;
    }
    return r;
}

// base^(p/q) for a positive integer base with the largest q-th power factor taken out, so that
// sqrt(8) becomes 2 sqrt(2) and 2 sqrt(2) - sqrt(8) normalises to 0 (GiNaC leaves sqrt(8)
// alone). Other bases and exponents go to GiNaC as they are.
GiNaC::ex rational_power(const GiNaC::ex& base, const GiNaC::ex& exponent) {
    if (!GiNaC::is_a<GiNaC::numeric>(base) || !GiNaC::is_a<GiNaC::numeric>(exponent))
        return GiNaC::pow(base, exponent);
    const GiNaC::numeric b = GiNaC::ex_to<GiNaC::numeric>(base);
    const GiNaC::numeric e = GiNaC::ex_to<GiNaC::numeric>(exponent);
    if (!b.is_pos_integer() || !e.is_rational() || e.is_integer() || b.to_double() > 1e15 ||
        e.denom().to_double() > 12)
        return GiNaC::pow(base, exponent);
    const long q = e.denom().to_long();
    const GiNaC::numeric k = (e.numer() - GiNaC::mod(e.numer(), e.denom())) / e.denom();
    const long r = GiNaC::mod(e.numer(), e.denom()).to_long();  // 0 < r < q
    long n = b.to_long(), m = 1;
    for (long d = 2; d <= 100000; ++d) {
        const long dq = power_up_to(d, q, n);
        if (dq == 0) break;
        while (n % dq == 0) {
            n /= dq;
            m *= d;
        }
    }
    GiNaC::ex out = GiNaC::pow(b, k) * GiNaC::pow(GiNaC::numeric(m), r);
    if (n != 1) out = out * GiNaC::pow(GiNaC::numeric(n), GiNaC::numeric(r, q));
    return out;
}

class ToGinac {
  public:
    explicit ToGinac(std::map<int, GiNaC::symbol>* symbols) : symbols_(symbols) {}

    std::optional<GiNaC::ex> convert(const Expr& e, int i) {
        const Node& n = e.nodes[static_cast<size_t>(i)];
        auto A = [&] { return convert(e, n.a); };
        auto B = [&] { return convert(e, n.b); };
        std::optional<GiNaC::ex> a, b;
        if (n.a >= 0 && !(a = A())) return std::nullopt;
        if (n.b >= 0 && !(b = B())) return std::nullopt;
        switch (n.op) {
            case Op::kNum: {
                // Only integers are exact; a written decimal is an approximation.
                if (!std::isfinite(n.value) || n.value != std::floor(n.value) ||
                    std::fabs(n.value) > 1e15)
                    return std::nullopt;
                return GiNaC::ex(GiNaC::numeric(static_cast<long>(n.value)));
            }
            case Op::kVar: {
                const int id = static_cast<int>(n.value);
                auto it = symbols_->find(id);
                if (it == symbols_->end()) {
                    std::string name = "v";  // appended: GCC 12 warns falsely on "v" + ...
                    name += std::to_string(id);
                    it = symbols_->emplace(id, GiNaC::symbol(name)).first;
                }
                return GiNaC::ex(it->second);
            }
            case Op::kPi:
                return GiNaC::ex(GiNaC::Pi);
            case Op::kE:
                return GiNaC::exp(GiNaC::ex(1));
            case Op::kNeg:
                return -*a;
            case Op::kAdd:
                return *a + *b;
            case Op::kSub:
                return *a - *b;
            case Op::kMul:
                return *a * *b;
            case Op::kDiv:
                if (b->is_zero()) return std::nullopt;
                return *a / *b;
            case Op::kPow: {
                if (GiNaC::is_a<GiNaC::numeric>(*b) &&
                    std::fabs(GiNaC::ex_to<GiNaC::numeric>(*b).to_double()) > kMaxExponent)
                    return std::nullopt;
                if (!GiNaC::is_a<GiNaC::numeric>(*b) && !b->info(GiNaC::info_flags::polynomial))
                    return std::nullopt;
                return rational_power(*a, *b);
            }
            case Op::kSqrt:
                return rational_power(*a, GiNaC::numeric(1, 2));
            case Op::kRoot:
                // A real odd root of a negative number is not GiNaC's principal root.
                if (!GiNaC::is_a<GiNaC::numeric>(*a) || !GiNaC::is_a<GiNaC::numeric>(*b) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    !GiNaC::ex_to<GiNaC::numeric>(*b).is_pos_integer())
                    return std::nullopt;
                return rational_power(*a, GiNaC::numeric(1) / GiNaC::ex_to<GiNaC::numeric>(*b));
            case Op::kFact:
                if (!GiNaC::is_a<GiNaC::numeric>(*a) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    GiNaC::ex_to<GiNaC::numeric>(*a).to_double() > kMaxFactorial)
                    return std::nullopt;
                return GiNaC::factorial(*a);
            case Op::kBinom:
                if (!GiNaC::is_a<GiNaC::numeric>(*a) || !GiNaC::is_a<GiNaC::numeric>(*b) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    !GiNaC::ex_to<GiNaC::numeric>(*b).is_nonneg_integer() ||
                    GiNaC::ex_to<GiNaC::numeric>(*a).to_double() > kMaxFactorial)
                    return std::nullopt;
                return GiNaC::binomial(*a, *b);
            case Op::kAbs:
                return GiNaC::abs(*a);
            case Op::kSin:
                return GiNaC::sin(*a);
            case Op::kCos:
                return GiNaC::cos(*a);
            case Op::kTan:
                return GiNaC::tan(*a);
            case Op::kSec:
                return 1 / GiNaC::cos(*a);
            case Op::kCsc:
                return 1 / GiNaC::sin(*a);
            case Op::kCot:
                return GiNaC::cos(*a) / GiNaC::sin(*a);
            case Op::kAsin:
                return GiNaC::asin(*a);
            case Op::kAcos:
                return GiNaC::acos(*a);
            case Op::kAtan:
                return GiNaC::atan(*a);
            case Op::kLn:
                return GiNaC::log(*a);
            case Op::kLog10:
                return GiNaC::log(*a) / GiNaC::log(GiNaC::ex(10));
            case Op::kLogBase:
                return GiNaC::log(*a) / GiNaC::log(*b);
            case Op::kExp:
                return GiNaC::exp(*a);
        }
        return std::nullopt;
    }

  private:
    std::map<int, GiNaC::symbol>* symbols_;
};

}  // namespace

std::optional<bool> symbolic_verdict(const Expr& a, const Expr& b) {
    if (a.has_decimal || b.has_decimal || a.has_infinity || b.has_infinity) return std::nullopt;
    // The difference a - b, as normal() sees it.
    const Size sa = expansion_size(a, a.root), sb = expansion_size(b, b.root);
    std::set<int> vars = a.vars;
    vars.insert(b.vars.begin(), b.vars.end());
    const double degree =
        std::max({sa.num + sb.den, sb.num + sa.den, sa.den + sb.den, sa.inner, sb.inner});
    if (monomial_bound(degree, static_cast<int>(vars.size()) + sa.atoms + sb.atoms) > kMaxMonomials)
        return std::nullopt;
    try {
        std::map<int, GiNaC::symbol> symbols;  // shared, so x in a is x in b
        ToGinac conv(&symbols);
        const auto ga = conv.convert(a, a.root), gb = conv.convert(b, b.root);
        if (!ga || !gb) return std::nullopt;
        const GiNaC::ex d = (*ga - *gb).normal();
        if (d.is_zero()) return true;
        // An exact nonzero rational difference (two different constants): proved different,
        // where the probes' relative tolerance could not tell 1 + 10^-12 from 1.
        if (GiNaC::is_a<GiNaC::numeric>(d) && GiNaC::ex_to<GiNaC::numeric>(d).is_rational())
            return false;
        return std::nullopt;
    } catch (const std::exception&) {  // GiNaC's pole_error, domain_error, ...
        return std::nullopt;
    }
}

}  // namespace crucible::eval::detail
