#include "reward/verify/symbolic.h"

#include <ginac/ginac.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace crucible::eval::detail {

namespace {

// Exponents and factorials above these are left to the probes: normal() expands powers.
constexpr double kMaxExponent = 64;
constexpr double kMaxFactorial = 30;
// e^k and b^k for a positive constant b, |k| above kMaxExponent, are evaluated (not expanded)
// up to this |k|: CLN's floats hold e^{-10^15}, and fail beyond about 10^18.
constexpr double kMaxHugeExponent = 1e15;

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
        case Op::num:
        case Op::pi:
        case Op::e:
        case Op::fact:
        case Op::binom:
            return {0, 0, atoms, inner};
        case Op::var:
            return {1, 0, 0, 0};
        case Op::neg:
            return a;
        case Op::add:
        case Op::sub:
            return {std::max(a.num + b.den, b.num + a.den), a.den + b.den, atoms, inner};
        case Op::mul:
            return {a.num + b.num, a.den + b.den, atoms, inner};
        case Op::div:
            return {a.num + b.den, a.den + b.num, atoms, inner};
        case Op::pow: {
            const Node& x = e.nodes[static_cast<size_t>(n.b)];
            if (x.op == Op::num) {
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
    // As ex, not numeric: GiNaC::pow of two numerics computes a float.
    if (n != 1)
        out = out * GiNaC::pow(GiNaC::ex(GiNaC::numeric(n)), GiNaC::ex(GiNaC::numeric(r, q)));
    return out;
}

// A 17-digit estimate of a real constant; nullopt when it is complex or not evaluable.
std::optional<double> real_value(const GiNaC::ex& x) {
    try {
        const GiNaC::ex v = x.evalf();
        if (!GiNaC::is_a<GiNaC::numeric>(v) || !GiNaC::ex_to<GiNaC::numeric>(v).is_real())
            return std::nullopt;
        return GiNaC::ex_to<GiNaC::numeric>(v).to_double();
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool has_symbol(const GiNaC::ex& x) {
    if (GiNaC::is_a<GiNaC::symbol>(x)) return true;
    for (size_t i = 0; i < x.nops(); ++i)
        if (has_symbol(x.op(i))) return true;
    return false;
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
            case Op::num: {
                // Only integers are exact; a written decimal is an approximation.
                if (!std::isfinite(n.value) || n.value != std::floor(n.value) ||
                    std::fabs(n.value) > 1e15)
                    return std::nullopt;
                return GiNaC::ex(GiNaC::numeric(static_cast<long>(n.value)));
            }
            case Op::var: {
                const int id = static_cast<int>(n.value);
                auto it = symbols_->find(id);
                if (it == symbols_->end()) {
                    std::string name = "v";  // appended: GCC 12 warns falsely on "v" + ...
                    name += std::to_string(id);
                    it = symbols_->emplace(id, GiNaC::symbol(name)).first;
                }
                return GiNaC::ex(it->second);
            }
            case Op::pi:
                return GiNaC::ex(GiNaC::Pi);
            case Op::e:
                return GiNaC::exp(GiNaC::ex(1));
            case Op::neg:
                return -*a;
            case Op::add:
                return *a + *b;
            case Op::sub:
                return *a - *b;
            case Op::mul:
                return *a * *b;
            case Op::div:
                if (b->is_zero()) return std::nullopt;
                return *a / *b;
            case Op::pow: {
                // e^k is exp(k), which normal() leaves alone and evalf evaluates at any size
                // CLN's exponent range holds (e^{-10^9} is 1.2e-434294482).
                if (e.nodes[static_cast<size_t>(n.a)].op == Op::e) {
                    check_exp_argument(*b);
                    return GiNaC::exp(*b);
                }
                if (GiNaC::is_a<GiNaC::numeric>(*b) &&
                    std::fabs(GiNaC::ex_to<GiNaC::numeric>(*b).to_double()) > kMaxExponent) {
                    // A huge power of a positive constant (10^{-10^9}) as exp(k ln b): never
                    // expanded, still evaluated. Other bases are left to the probes.
                    const GiNaC::numeric k = GiNaC::ex_to<GiNaC::numeric>(*b);
                    if (!GiNaC::is_a<GiNaC::numeric>(*a) ||
                        !GiNaC::ex_to<GiNaC::numeric>(*a).is_positive() ||
                        std::fabs(k.to_double()) > kMaxHugeExponent)
                        return std::nullopt;
                    return GiNaC::exp(k * GiNaC::log(*a));
                }
                if (!GiNaC::is_a<GiNaC::numeric>(*b) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*b).is_integer())
                    check_domain(*a, 0, kPlusInf, true);
                if (!GiNaC::is_a<GiNaC::numeric>(*b) && !b->info(GiNaC::info_flags::polynomial))
                    return std::nullopt;
                return rational_power(*a, *b);
            }
            case Op::sqrt:
                check_domain(*a, 0, kPlusInf, false);
                return rational_power(*a, GiNaC::numeric(1, 2));
            case Op::root:
                // A real odd root of a negative number is not GiNaC's principal root.
                if (!GiNaC::is_a<GiNaC::numeric>(*a) || !GiNaC::is_a<GiNaC::numeric>(*b) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    !GiNaC::ex_to<GiNaC::numeric>(*b).is_pos_integer())
                    return std::nullopt;
                return rational_power(*a, GiNaC::numeric(1) / GiNaC::ex_to<GiNaC::numeric>(*b));
            case Op::fact:
                if (!GiNaC::is_a<GiNaC::numeric>(*a) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    GiNaC::ex_to<GiNaC::numeric>(*a).to_double() > kMaxFactorial)
                    return std::nullopt;
                return GiNaC::factorial(*a);
            case Op::binom:
                if (!GiNaC::is_a<GiNaC::numeric>(*a) || !GiNaC::is_a<GiNaC::numeric>(*b) ||
                    !GiNaC::ex_to<GiNaC::numeric>(*a).is_nonneg_integer() ||
                    !GiNaC::ex_to<GiNaC::numeric>(*b).is_nonneg_integer() ||
                    GiNaC::ex_to<GiNaC::numeric>(*a).to_double() > kMaxFactorial)
                    return std::nullopt;
                return GiNaC::binomial(*a, *b);
            case Op::abs:
                return GiNaC::abs(*a);
            case Op::sin:
                return GiNaC::sin(*a);
            case Op::cos:
                return GiNaC::cos(*a);
            case Op::tan:
                return GiNaC::tan(*a);
            case Op::sec:
                return 1 / GiNaC::cos(*a);
            case Op::csc:
                return 1 / GiNaC::sin(*a);
            case Op::cot:
                return GiNaC::cos(*a) / GiNaC::sin(*a);
            case Op::asin:
                check_domain(*a, -1, 1, false);
                return GiNaC::asin(*a);
            case Op::acos:
                check_domain(*a, -1, 1, false);
                return GiNaC::acos(*a);
            case Op::atan:
                return GiNaC::atan(*a);
            case Op::ln:
                check_domain(*a, 0, kPlusInf, true);
                return GiNaC::log(*a);
            case Op::log10:
                check_domain(*a, 0, kPlusInf, true);
                return GiNaC::log(*a) / GiNaC::log(GiNaC::ex(10));
            case Op::log_base:
                check_domain(*a, 0, kPlusInf, true);
                check_domain(*b, 0, kPlusInf, true);
                return GiNaC::log(*a) / GiNaC::log(*b);
            case Op::exp:
                check_exp_argument(*a);
                return GiNaC::exp(*a);
        }
        return std::nullopt;
    }

    // Set when a constant argument leaves the real domain (a negative base under a
    // fractional power, the log of a negative number) or cannot be evaluated: GiNaC then
    // computes a complex principal value where the probes use the real one ((-1)^{1/3} is
    // -1 there), so its numeric value decides nothing.
    bool complex_risk() const { return complex_risk_; }

  private:
    static constexpr double kPlusInf = std::numeric_limits<double>::infinity();

    // A constant `x` must lie in [lo, hi] (lo excluded when `open_low`), else complex_risk.
    void check_domain(const GiNaC::ex& x, double lo, double hi, bool open_low) {
        if (has_symbol(x)) return;
        const std::optional<double> v = real_value(x);
        if (!v || *v < lo || *v > hi || (open_low && *v == lo)) complex_risk_ = true;
    }
    void check_exp_argument(const GiNaC::ex& x) {
        if (!has_symbol(x) && !real_value(x)) complex_risk_ = true;
    }

    std::map<int, GiNaC::symbol>* symbols_;
    bool complex_risk_ = false;
};

// True when the constant `c` is certainly not zero: evaluated at 40 and at 80 digits it is
// real, nonzero, and the same to 20 digits. A true zero that GiNaC did not cancel
// (sqrt(2) sqrt(3) - sqrt(6), sin(1)^2 + cos(1)^2 - 1) evaluates to rounding noise, which
// shrinks with the precision instead of staying put, so it is never called nonzero.
bool certainly_nonzero(const GiNaC::ex& c) {
    const long saved = static_cast<long>(GiNaC::Digits);
    std::optional<GiNaC::numeric> v[2];
    try {
        for (int k = 0; k < 2; ++k) {
            GiNaC::Digits = k == 0 ? 40 : 80;
            const GiNaC::ex x = c.evalf();
            if (!GiNaC::is_a<GiNaC::numeric>(x) || !GiNaC::ex_to<GiNaC::numeric>(x).is_real())
                break;
            v[k] = GiNaC::ex_to<GiNaC::numeric>(x);
        }
    } catch (const std::exception&) {  // CLN's overflow and underflow
    }
    GiNaC::Digits = saved;
    if (!v[0] || !v[1] || v[1]->is_zero()) return false;
    return GiNaC::abs(*v[0] - *v[1]) <=
           GiNaC::abs(*v[1]) * GiNaC::numeric(1, 100000) * GiNaC::numeric(1, 1000000000000000LL);
}

// True when the polynomial `p` (expanded) in `syms` from index `i` on has a coefficient
// that is certainly a nonzero constant, so p is not the zero polynomial. False when a
// coefficient is not constant in the remaining symbols (sin x) or none is certain.
bool certainly_nonzero_polynomial(const GiNaC::ex& p, const std::vector<GiNaC::symbol>& syms,
                                  size_t i) {
    if (i == syms.size()) return !has_symbol(p) && certainly_nonzero(p);
    const int lo = p.ldegree(syms[i]), hi = p.degree(syms[i]);
    for (int k = lo; k <= hi; ++k)
        if (certainly_nonzero_polynomial(p.coeff(syms[i], k), syms, i + 1)) return true;
    return false;
}

}  // namespace

std::optional<bool> symbolic_verdict(const Expr& a, const Expr& b) {
    // GiNaC shares reference-counted globals (and this code sets its Digits): one at a time.
    static std::mutex mutex;
    const std::lock_guard<std::mutex> lock(mutex);
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
        // A difference whose numerator is a polynomial in the variables with a coefficient
        // that is certainly nonzero: different, however small the coefficient (2 + e^{-1000}
        // and 2, x + 1 + 10^{-10} x and x + 1, \cos(10^{-6}) and 1). Not where a constant
        // left the real domain (GiNaC's complex value is not the probes' real one).
        if (conv.complex_risk()) return std::nullopt;
        std::vector<GiNaC::symbol> syms;
        GiNaC::lst syms_list;
        for (const auto& [id, sym] : symbols) {
            syms.push_back(sym);
            syms_list.append(sym);
        }
        const GiNaC::ex num = d.numer().expand();
        if (num.is_polynomial(syms_list) && certainly_nonzero_polynomial(num, syms, 0))
            return false;
        return std::nullopt;
    } catch (const std::exception&) {  // GiNaC's pole_error, domain_error, ...
        return std::nullopt;
    }
}

}  // namespace crucible::eval::detail
