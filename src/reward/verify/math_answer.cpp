// Math answers: extraction, LaTeX normalisation, and equivalence by structure and value.
// Its std::regex patterns are fixed internal ones (a variable name, units, percent words,
// thousands separators) on answers of at most kMaxAnswerChars, never a user's pattern: they
// stay in std::regex (ECMAScript), whose captures and regex_replace they use; user patterns go
// through core/regex (PCRE2) alone.
// GCC 12 reports a false -Wmaybe-uninitialized inside <regex> (std::function in
// regex_automaton.h) when built with -fsanitize=address; the warning is in the library.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "reward/verify/math_answer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <regex>
#include <set>
#include <vector>

#include "core/rng.h"
#include "reward/verify/math_expr.h"
#include "reward/verify/symbolic.h"
#include "reward/verify/text_util.h"

namespace crucible::eval {
namespace {

using namespace text;
using namespace detail;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
// Longer answers are not compared: they are not answers, and the parsers recurse.
constexpr size_t kMaxAnswerChars = 2000;
constexpr int kMaxDepth = 64;

// Replaces the command `\name` (not followed by a letter, so \left does not hit \leftarrow).
std::string replace_command(std::string s, std::string_view name, std::string_view to) {
    size_t pos = 0;
    while ((pos = s.find(name, pos)) != std::string::npos) {
        const size_t end = pos + name.size();
        if (end < s.size() && is_alpha(s[end])) {
            pos = end;
            continue;
        }
        s.replace(pos, name.size(), to);
        pos += to.size();
    }
    return s;
}

// \, \; \: "\ " and ~ become spaces, \! (and the spaces after it) nothing; a "\\" row
// break is left alone.
std::string replace_spacing(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            const char c = s[i + 1];
            if (c == '\\') {
                out += "\\\\";
                ++i;
                continue;
            }
            if (c == '!') {  // a negative thin space joins what it sits between ("32,\!349")
                ++i;
                while (i + 1 < s.size() && is_space(s[i + 1])) ++i;
                continue;
            }
            if (c == ',' || c == ';' || c == ':' || c == ' ') {
                out.push_back(' ');
                ++i;
                continue;
            }
        }
        out.push_back(s[i] == '~' ? ' ' : s[i]);
    }
    return out;
}

bool has_alnum(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return is_alpha(c) || is_digit(c); });
}

// ---- expressions ------------------------------------------------------------------------------
//
// A small parser for the LaTeX of an answer: numbers, single-letter and Greek variables,
// + - * / ^, \cdot \times \div, implicit multiplication, \frac, \sqrt[n]{}, \binom, |x|, n!,
// \pi, \infty, elementary functions. Anything else is a parse failure.

struct FunctionName {
    std::string_view name;
    Op op;
};
constexpr FunctionName kFunctions[] = {
    {"sin", Op::sin},     {"cos", Op::cos}, {"tan", Op::tan},     {"sec", Op::sec},
    {"csc", Op::csc},     {"cot", Op::cot}, {"arcsin", Op::asin}, {"arccos", Op::acos},
    {"arctan", Op::atan}, {"ln", Op::ln},   {"log", Op::log10},   {"exp", Op::exp},
    {"sqrt", Op::sqrt},
};
constexpr std::string_view kGreek[] = {"alpha", "beta",   "gamma", "delta", "epsilon",
                                       "theta", "lambda", "mu",    "rho",   "sigma",
                                       "tau",   "phi",    "psi",   "omega", "varphi"};
constexpr int kNumVars = 52 + static_cast<int>(std::size(kGreek));

// Commands the parser knows; an unknown run of letters that starts with one ("\\sinx", what
// "\\sin x" becomes once whitespace is removed) is read as that command and what follows.
bool known_command(std::string_view name) {
    for (std::string_view k :
         {"frac", "sqrt", "pi", "infty", "binom", "log", "cdot", "times", "div"})
        if (k == name) return true;
    for (const auto& f : kFunctions)
        if (f.name == name) return true;
    for (auto g : kGreek)
        if (g == name) return true;
    return false;
}

int letter_var(char c) {
    return c >= 'a' && c <= 'z' ? c - 'a' : 26 + (c - 'A');
}

class ExprParser {
  public:
    explicit ExprParser(std::string_view s) : s_(s) {}

    std::optional<Expr> parse() {
        if (s_.empty()) return std::nullopt;
        const int r = expr();
        if (failed_ || pos_ != s_.size()) return std::nullopt;
        e_.root = r;
        return std::move(e_);
    }

  private:
    char peek(size_t off = 0) const { return pos_ + off < s_.size() ? s_[pos_ + off] : '\0'; }
    bool eat(char c) {
        if (peek() != c) return false;
        ++pos_;
        return true;
    }
    // The command name at pos_ ("frac" for "\frac"), empty if none.
    std::string_view command_at() const {
        if (peek() != '\\') return {};
        size_t e = pos_ + 1;
        while (e < s_.size() && is_alpha(s_[e])) ++e;
        const std::string_view full = s_.substr(pos_ + 1, e - pos_ - 1);
        if (known_command(full)) return full;
        for (size_t n = full.size() - (full.empty() ? 0 : 1); n >= 2; --n)
            if (known_command(full.substr(0, n))) return full.substr(0, n);
        return full;
    }
    bool eat_command(std::string_view name) {
        if (command_at() != name) return false;
        pos_ += 1 + name.size();
        return true;
    }
    int add(Op op, int a = -1, int b = -1, double v = 0.0) {
        if (failed_) return -1;
        e_.nodes.push_back({op, v, a, b});
        return static_cast<int>(e_.nodes.size() - 1);
    }
    int fail() {
        failed_ = true;
        return -1;
    }
    bool starts_primary() const {
        const char c = peek();
        if (is_digit(c) || c == '.' || c == '(' || c == '{' || is_alpha(c)) return true;
        if (c != '\\') return false;
        const std::string_view cmd = command_at();
        if (cmd == "frac" || cmd == "sqrt" || cmd == "pi" || cmd == "infty" || cmd == "binom")
            return true;
        for (const auto& f : kFunctions)
            if (f.name == cmd) return true;
        for (auto g : kGreek)
            if (g == cmd) return true;
        return false;
    }

    int expr() {
        if (++depth_ > kMaxDepth) return fail();
        int l = term();
        while (!failed_) {
            if (eat('+')) {
                l = add(Op::add, l, term());
            } else if (eat('-')) {
                l = add(Op::sub, l, term());
            } else {
                break;
            }
        }
        --depth_;
        return l;
    }
    int term() {
        int l = unary();
        while (!failed_) {
            if (eat('*') || eat_command("cdot") || eat_command("times")) {
                l = add(Op::mul, l, unary());
            } else if (eat('/') || eat_command("div")) {
                l = add(Op::div, l, unary());
            } else if (mixed_number_follows(l)) {
                // "2\frac{1}{2}" is two and a half (Math-Verify's reading), not a product.
                const bool negative = e_.nodes[static_cast<size_t>(l)].op == Op::neg;
                const int sum = add(Op::add, number_node_, power());
                l = negative ? add(Op::neg, sum) : sum;
            } else if (starts_primary()) {
                l = add(Op::mul, l, power());
            } else {
                break;
            }
        }
        return l;
    }
    int unary() {
        if (++depth_ > kMaxDepth) return fail();
        int r;
        if (eat('-')) {
            r = add(Op::neg, unary());
        } else if (eat('+')) {
            r = unary();
        } else {
            r = power();
        }
        --depth_;
        return r;
    }
    int power() {
        int base = primary();
        while (!failed_ && eat('!')) base = add(Op::fact, base);
        if (failed_) return -1;
        if (eat('^')) return add(Op::pow, base, exponent());
        return base;
    }
    int exponent() {
        if (++depth_ > kMaxDepth) return fail();
        int r;
        if (peek() == '{') {
            r = braced();
        } else if (peek() == '(') {
            r = primary();
        } else if (eat('-')) {
            r = add(Op::neg, exponent());
        } else {
            r = single();
        }
        --depth_;
        return r;
    }
    int braced() {
        if (!eat('{')) return fail();
        const int e = expr();
        if (!eat('}')) return fail();
        return e;
    }
    // A macro argument: {expr} or one character (\frac12, \sqrt3, x^2).
    int group() { return peek() == '{' ? braced() : single(); }
    int single() {
        const char c = peek();
        if (is_digit(c)) {
            ++pos_;
            return add(Op::num, -1, -1, c - '0');
        }
        if (is_alpha(c)) {
            ++pos_;
            return variable(letter_var(c));
        }
        if (c == '\\') return command();
        return fail();
    }
    int variable(int id) {
        if (id == letter_var('e')) return add(Op::e);  // Euler's number, as answers use it
        e_.vars.insert(id);
        return add(Op::var, -1, -1, id);
    }
    // f(x), f x, and f^2 x = (f x)^2. A negative power (\\sin^{-1}: inverse or reciprocal?)
    // is ambiguous, so it does not parse.
    int function_call(Op op) {
        int power = -1;
        if (op != Op::sqrt && eat('^')) {
            power = exponent();
            if (failed_ || e_.nodes[static_cast<size_t>(power)].op == Op::neg) return fail();
        }
        const int r = add(op, function_argument());
        return power >= 0 ? add(Op::pow, r, power) : r;
    }
    int function_argument() {
        if (peek() == '(' || peek() == '{') return primary();
        return power();
    }
    int primary() {
        if (++depth_ > kMaxDepth) return fail();
        int r;
        const char c = peek();
        if (is_digit(c) || (c == '.' && is_digit(peek(1)))) {
            r = number();
        } else if (eat('(')) {
            r = expr();
            if (!eat(')')) r = fail();
        } else if (c == '{') {
            r = braced();
        } else if (eat('|')) {
            r = add(Op::abs, expr());
            if (!eat('|')) r = fail();
        } else if (is_alpha(c)) {
            r = word();
        } else if (c == '\\') {
            r = command();
        } else {
            r = fail();
        }
        --depth_;
        return r;
    }
    // An integer literal that ends at pos_ (alone or negated) followed by \frac of two
    // integer literals ("2\frac{1}{2}", "-3\frac14").
    bool mixed_number_follows(int l) const {
        if (number_node_ < 0 || pos_ != number_end_) return false;
        const Node& n = e_.nodes[static_cast<size_t>(l)];
        if (l != number_node_ && !(n.op == Op::neg && n.a == number_node_)) return false;
        if (s_.substr(pos_, 5) != "\\frac") return false;
        size_t i = pos_ + 5;
        for (int arg = 0; arg < 2; ++arg) {
            if (i < s_.size() && is_digit(s_[i])) {
                ++i;
                continue;
            }
            if (i >= s_.size() || s_[i] != '{') return false;
            const size_t b = ++i;
            while (i < s_.size() && is_digit(s_[i])) ++i;
            if (i == b || i >= s_.size() || s_[i] != '}') return false;
            ++i;
        }
        return i >= s_.size() || s_[i] != '^';
    }
    int number() {
        const size_t b = pos_;
        while (is_digit(peek())) ++pos_;
        if (peek() == '.' && is_digit(peek(1))) {
            ++pos_;
            e_.has_decimal = true;
            while (is_digit(peek())) ++pos_;
        }
        if ((peek() == 'e' || peek() == 'E') &&
            (is_digit(peek(1)) || ((peek(1) == '-' || peek(1) == '+') && is_digit(peek(2))))) {
            pos_ += 2;
            e_.has_decimal = true;
            while (is_digit(peek())) ++pos_;
        }
        const std::string text(s_.substr(b, pos_ - b));
        const int node = add(Op::num, -1, -1, std::strtod(text.c_str(), nullptr));
        const bool integer = text.find_first_of(".eE") == std::string::npos;
        number_node_ = integer ? node : -1;
        number_end_ = pos_;
        return node;
    }
    // A run of plain letters: a function name, pi, inf, or one variable.
    int word() {
        const size_t b = pos_;
        while (is_alpha(peek())) ++pos_;
        const std::string_view w = s_.substr(b, pos_ - b);
        if (w.size() == 1) return variable(letter_var(w[0]));
        if (w == "pi") return add(Op::pi);
        if (w == "inf" || w == "infty" || w == "infinity") {
            e_.has_infinity = true;
            return add(Op::num, -1, -1, kInf);
        }
        for (const auto& f : kFunctions)
            if (f.name == w) return function_call(f.op);
        return fail();  // "xy", "cm", "Monday": words are not expressions
    }
    int command() {
        const std::string_view cmd = command_at();
        if (cmd.empty()) return fail();
        pos_ += 1 + cmd.size();
        if (cmd == "frac") {
            const int a = group();
            return add(Op::div, a, group());
        }
        if (cmd == "binom") {
            const int a = group();
            return add(Op::binom, a, group());
        }
        if (cmd == "sqrt") {
            if (eat('[')) {
                const int k = expr();
                if (!eat(']')) return fail();
                return add(Op::root, group(), k);
            }
            return add(Op::sqrt, group());
        }
        if (cmd == "pi") return add(Op::pi);
        if (cmd == "infty") {
            e_.has_infinity = true;
            return add(Op::num, -1, -1, kInf);
        }
        if (cmd == "log" && eat('_')) {
            const int base = group();
            return add(Op::log_base, function_argument(), base);
        }
        for (const auto& f : kFunctions)
            if (f.name == cmd) return function_call(f.op);
        for (size_t g = 0; g < std::size(kGreek); ++g)
            if (kGreek[g] == cmd) return variable(52 + static_cast<int>(g));
        return fail();
    }

    std::string_view s_;
    size_t pos_ = 0;
    int number_node_ = -1;  // the last integer literal parsed, and where it ended
    size_t number_end_ = 0;
    int depth_ = 0;
    bool failed_ = false;
    Expr e_;
};

std::optional<Expr> parse_expr(std::string_view s) {
    if (s.size() > kMaxAnswerChars) return std::nullopt;
    return ExprParser(s).parse();
}

// Values for the variables at numeric probe point p, distinct and not round. Points 0-4
// are positive, in (0.3, 3); points 5-11 give each variable a random sign, point 5 makes all
// of them negative, and points 10-11 stay inside (-1, 1) (where arcsin and arccos are real),
// so x and |x|, sqrt(x^2) and x, 2 ln x and ln(x^2) are told apart.
constexpr int kProbes = 12;

std::vector<double> probe_values(int p) {
    std::vector<double> v(kNumVars);
    for (int i = 0; i < kNumVars; ++i) {
        Rng rng(Rng::mix(static_cast<uint64_t>(i) + 1, static_cast<uint64_t>(p) + 101));
        double x = 0.3 + 2.7 * rng.uniform();
        if (p >= 10) x = 0.1 + 0.8 * rng.uniform();
        if (p == 5 || (p > 5 && rng.uniform() < 0.5)) x = -x;
        v[static_cast<size_t>(i)] = x;
    }
    return v;
}

bool is_integral(double x) {
    return std::fabs(x) < 9e15 && x == std::floor(x);
}

// Two constants: exact for integers, 1e-6 relative when a decimal was written inside an
// expression (1.5\times10^3), 1e-9 relative otherwise (rounding in sqrt, pi, ...). A plain
// decimal number is compared by decimals_equal instead.
bool values_close(double a, double b, bool decimal) {
    if (std::isnan(a) || std::isnan(b)) return false;
    if (std::isinf(a) || std::isinf(b)) return a == b;
    if (!decimal && is_integral(a) && is_integral(b)) return a == b;
    const double rel = decimal ? 1e-6 : 1e-9;
    return std::fabs(a - b) <= std::max(1e-12, rel * std::max(std::fabs(a), std::fabs(b)));
}

// The number of decimal places of a plain decimal number ("-0.125": 3), or -1 when the
// answer is anything else.
int decimal_places(std::string_view s) {
    size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i >= s.size() || s[i] != '.') return -1;
    const size_t point = i++;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i != s.size() || i == point + 1) return -1;
    return static_cast<int>(i - point - 1);
}

// A plain decimal against another value, at the precision the decimal gives but never
// coarser than 6 places (Math-Verify rounds at 6): the decimal must be the value correctly
// rounded there, so 0.142857 is 1/7 and 0.1429, 0.3 and 1.414 are not 1/7, 1/3 and sqrt 2.
// Two decimals compare rounded to 6 places, as Math-Verify does.
bool decimals_equal(double x, int dx, double y, int dy) {
    if (!std::isfinite(x) || !std::isfinite(y)) return false;
    const double slack =
        4 * std::numeric_limits<double>::epsilon() * std::max({1.0, std::fabs(x), std::fabs(y)});
    if (dx >= 0 && dy >= 0) {
        if (std::max(std::fabs(x), std::fabs(y)) < 1e9)
            return std::round(x * 1e6) == std::round(y * 1e6);
        return std::fabs(x - y) <= slack;
    }
    const int places = std::max({dx, dy, 6});
    return std::fabs(x - y) <= 0.5 * std::pow(10.0, -places) * (1 + 1e-9) + slack;
}

// Equal when GiNaC proves it or the probes agree, and in both cases the two are defined at
// the same probe points: where one side is real and finite and the other is not (a square
// root or log of a negative number, a division by zero, an overflow) they differ, so
// sqrt(x)^2, which GiNaC reduces to x, is not x. A single removable point (x/x against 1)
// is never a probe point, so it does not count.
bool expressions_equal(const Expr& a, const Expr& b) {
    const std::optional<bool> proved = symbolic_verdict(a, b);
    if (proved == false) return false;
    // Variables may differ (sin^2 x + cos^2 x against 1): the probes set all of them.
    const bool decimal = a.has_decimal || b.has_decimal;
    if (a.vars.empty() && b.vars.empty()) {
        const double x = a.eval({}), y = b.eval({});
        if (!std::isfinite(x) || !std::isfinite(y)) {
            if (proved) return !std::isfinite(x) && !std::isfinite(y);
            return std::isinf(x) && x == y && a.has_infinity && b.has_infinity;
        }
        return proved || values_close(x, y, decimal);
    }
    int agree = 0;
    for (int p = 0; p < kProbes; ++p) {
        const std::vector<double> v = probe_values(p);
        const double x = a.eval(v), y = b.eval(v);
        if (!std::isfinite(x) && !std::isfinite(y)) continue;  // outside both domains
        // Finite on one side only: different here. (Without this an overflow, x^{1000} at
        // x > 1, would scale the tolerance to infinity and "agree" with any constant.)
        if (!std::isfinite(x) || !std::isfinite(y)) return false;
        const double scale = std::max({1.0, std::fabs(x), std::fabs(y)});
        if (!proved && !(std::fabs(x - y) <= (decimal ? 1e-6 : 1e-9) * scale)) return false;
        ++agree;
    }
    return proved || agree >= 2;
}

// f and g proportional with a positive factor (relations: 2x - 6 < 0 is x - 3 < 0, and
// 3 - x < 0 is not) or any nonzero factor (positive_only false), and defined at the same
// probe points.
bool proportional(const Expr& f, const Expr& g, bool positive_only) {
    if (f.vars.empty() || g.vars.empty()) return false;
    double ratio = kNaN;
    int agree = 0;
    for (int p = 0; p < kProbes; ++p) {
        const std::vector<double> v = probe_values(p);
        const double x = f.eval(v), y = g.eval(v);
        if (!std::isfinite(x) && !std::isfinite(y)) continue;
        if (!std::isfinite(x) || !std::isfinite(y)) return false;
        if (x == 0.0 || y == 0.0) {
            if (std::fabs(x - y) > 1e-12) return false;
            continue;
        }
        const double r = x / y;
        if (std::isnan(ratio)) {
            ratio = r;
            if (positive_only && !(ratio > 0)) return false;
        } else if (!(std::fabs(r - ratio) <= 1e-9 * std::max(1.0, std::fabs(ratio)))) {
            return false;
        }
        ++agree;
    }
    return agree >= 2;
}

// lhs1 - rhs1 and lhs2 - rhs2 proportional (same ratio at every probe point).
bool equations_equal(const Expr& f, const Expr& g) {
    if (f.vars != g.vars || f.vars.empty()) return false;
    double ratio = kNaN;
    int agree = 0;
    for (int p = 0; p < kProbes; ++p) {
        const std::vector<double> v = probe_values(p);
        const double x = f.eval(v), y = g.eval(v);
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        if (x == 0.0 || y == 0.0) {
            if (x != y) return false;
            continue;
        }
        const double r = x / y;
        if (std::isnan(ratio)) {
            ratio = r;
        } else if (!(std::fabs(r - ratio) <= 1e-9 * std::max(1.0, std::fabs(ratio)))) {
            return false;
        }
        ++agree;
    }
    return agree >= 2;
}

// ---- structure --------------------------------------------------------------------------------

bool is_open(char c) {
    return c == '(' || c == '[' || c == '{';
}
bool is_close(char c) {
    return c == ')' || c == ']' || c == '}';
}

// Splits at `sep` where no bracket is open ([0,1) counts as balanced).
std::vector<std::string> split_top(std::string_view s, std::string_view sep) {
    std::vector<std::string> parts;
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (is_open(c)) {
            ++depth;
        } else if (is_close(c)) {
            --depth;
        } else if (depth == 0 && s.substr(i, sep.size()) == sep) {
            parts.emplace_back(s.substr(start, i - start));
            start = i + sep.size();
            i = start - 1;
        }
    }
    parts.emplace_back(s.substr(start));
    return parts;
}

// True if the bracket opened at `open` closes exactly at the last character.
bool wraps_whole(std::string_view s, size_t open) {
    int depth = 0;
    for (size_t i = open; i < s.size(); ++i) {
        if (is_open(s[i])) ++depth;
        if (is_close(s[i]) && --depth == 0) return i == s.size() - 1;
    }
    return false;
}

enum class Kind { scalar, set, seq, matrix, set_union, equation, relation };

struct Structure {
    Kind kind = Kind::scalar;
    char open = 0, close = 0;        // seq: the brackets
    bool bare = false;               // set written without braces ("1, 2")
    std::vector<std::string> parts;  // elements; matrix: row-major cells; relation: sides
    std::vector<std::string> ops;    // relation: "<", "\\le", "\\ne", "=" between the sides
    size_t rows = 0;                 // matrix
};

// The relation operator at s[i] ("<", ">", "\le", "\ge", "\ne", "="), empty if none. "\le"
// is also read where whitespace removal glued a variable to it ("x\ley"), unless the letters
// spell another command (\leftarrow, \neg, \gets, ...).
std::string_view relation_at(std::string_view s, size_t i) {
    const char c = s[i];
    if (c == '<' || c == '>' || c == '=') return s.substr(i, 1);
    if (c != '\\' || i + 3 > s.size()) return {};
    const std::string_view op = s.substr(i, 3);
    if (op != "\\le" && op != "\\ge" && op != "\\ne") return {};
    for (std::string_view longer : {"\\leftarrow", "\\leftrightarrow", "\\lesssim", "\\neg",
                                    "\\nearrow", "\\nexists", "\\gets", "\\geqq", "\\leqq"})
        if (s.substr(i, longer.size()) == longer) return {};
    return op;
}

// Splits a relation "a < b \le c" at its top-level operators; false when it has no "<",
// ">", "\le", "\ge" or "\ne" (an equation or no relation at all).
bool split_relation(std::string_view s, std::vector<std::string>* parts,
                    std::vector<std::string>* ops) {
    int depth = 0;
    size_t start = 0;
    bool inequality = false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (is_open(c)) {
            ++depth;
            continue;
        }
        if (is_close(c)) {
            --depth;
            continue;
        }
        if (depth != 0) continue;
        const std::string_view op = relation_at(s, i);
        if (op.empty()) continue;
        inequality = inequality || op != "=";
        parts->emplace_back(s.substr(start, i - start));
        ops->emplace_back(op);
        start = i + op.size();
        i = start - 1;
    }
    parts->emplace_back(s.substr(start));
    for (const auto& p : *parts)
        if (p.empty()) return false;
    return inequality;
}

// The cells of a matrix body "1&2\\3&4" into `st`; false when ragged.
bool fill_matrix(std::string_view body, Structure* st) {
    std::vector<std::string> rows = split_top(body, "\\\\");
    if (!rows.empty() && rows.back().empty()) rows.pop_back();
    size_t cols = 0;
    for (const auto& r : rows) {
        std::vector<std::string> cells = split_top(r, "&");
        if (cols != 0 && cells.size() != cols) return false;
        cols = cells.size();
        for (auto& c : cells) st->parts.push_back(std::move(c));
    }
    st->rows = rows.size();
    st->kind = Kind::matrix;
    return true;
}

Structure classify(const std::string& s) {
    Structure st;
    if (auto u = split_top(s, "\\cup"); u.size() > 1) {
        st.kind = Kind::set_union;
        st.parts = std::move(u);
        return st;
    }
    for (std::string_view env : {"pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix"}) {
        const std::string b = "\\begin{" + std::string(env) + "}";
        const std::string e = "\\end{" + std::string(env) + "}";
        if (!starts_with(s, b) || !ends_with(s, e) || s.size() < b.size() + e.size()) continue;
        st.open = env[0];  // vmatrix (a determinant) differs from the others
        if (env == "bmatrix" || env == "matrix" || env == "Bmatrix") st.open = 'p';
        if (!fill_matrix(std::string_view(s).substr(b.size(), s.size() - b.size() - e.size()), &st))
            return Structure{};  // ragged: scalar, fails
        return st;
    }
    // An array in brackets, "[\begin{array}{cc}1&2\\3&4\end{array}]", is a matrix too.
    if (s.size() > 2 && (s[0] == '[' || s[0] == '(') && (s.back() == ']' || s.back() == ')')) {
        const std::string_view inner = std::string_view(s).substr(1, s.size() - 2);
        const std::string_view b = "\\begin{array}{", e = "\\end{array}";
        if (starts_with(inner, b) && ends_with(inner, e)) {
            const size_t spec_end = inner.find('}', b.size());
            if (spec_end != std::string_view::npos && spec_end + 1 <= inner.size() - e.size()) {
                st.open = 'p';
                if (!fill_matrix(inner.substr(spec_end + 1, inner.size() - e.size() - spec_end - 1),
                                 &st))
                    return Structure{};
                return st;
            }
        }
    }
    if (s.size() >= 4 && starts_with(s, "\\{") && ends_with(s, "\\}") && wraps_whole(s, 1)) {
        st.kind = Kind::set;
        const std::string body = s.substr(2, s.size() - 4);
        if (!body.empty()) st.parts = split_top(body, ",");
        return st;
    }
    if (s.size() >= 2 && s[0] == '{' && wraps_whole(s, 0)) {
        auto parts = split_top(s.substr(1, s.size() - 2), ",");
        if (parts.size() > 1) {
            st.kind = Kind::set;
            st.parts = std::move(parts);
            return st;
        }
    }
    if (s.size() >= 2 && (s[0] == '(' || s[0] == '[') && (s.back() == ')' || s.back() == ']') &&
        wraps_whole(s, 0)) {
        auto parts = split_top(s.substr(1, s.size() - 2), ",");
        if (parts.size() > 1) {
            st.kind = Kind::seq;
            st.open = s[0];
            st.close = s.back();
            st.parts = std::move(parts);
            return st;
        }
    }
    if (auto parts = split_top(s, ","); parts.size() > 1) {
        st.kind = Kind::set;
        st.bare = true;
        st.parts = std::move(parts);
        return st;
    }
    if (split_relation(s, &st.parts, &st.ops)) {
        st.kind = Kind::relation;
        return st;
    }
    st.parts.clear();
    st.ops.clear();
    if (auto parts = split_top(s, "="); parts.size() > 1) {
        st.kind = Kind::equation;
        st.parts = std::move(parts);
    }
    return st;
}

bool equal_strings(std::string_view a, std::string_view b, int depth);

bool elements_equal_ordered(const std::vector<std::string>& a, const std::vector<std::string>& b,
                            int depth) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (!equal_strings(a[i], b[i], depth + 1)) return false;
    return true;
}

// Set equality: each element of one has an equal element in the other.
bool elements_equal_unordered(const std::vector<std::string>& a, const std::vector<std::string>& b,
                              int depth) {
    auto covered = [depth](const std::vector<std::string>& x, const std::vector<std::string>& y) {
        for (const auto& e : x) {
            bool found = false;
            for (const auto& f : y) {
                if (equal_strings(e, f, depth + 1)) {
                    found = true;
                    break;
                }
            }
            if (!found) return false;
        }
        return true;
    };
    return covered(a, b) && covered(b, a);
}

// "x", "y_1", "\theta": a left-hand side that names the answer rather than constrains it.
bool is_variable_name(std::string_view s) {
    static const std::regex re(R"(^([a-zA-Z]|\\[a-zA-Z]+)(_\{?[a-zA-Z0-9]+\}?)?$)");
    return s.size() <= 32 && std::regex_match(s.begin(), s.end(), re);
}

bool equal_core(const std::string& a, const std::string& b, int depth);

bool is_constant(const std::string& s) {
    const auto e = parse_expr(s);
    return e && e->vars.empty() && !e->has_infinity;
}

// The value a chain "x = 5+5+1 = 11" states: its last side, from side `first` on, when every
// side that is a constant equals it. "12 = 11" and "x = 3+4 = 8" state nothing (a false
// step is not an answer, though Math-Verify reads only the last side). nullopt then.
std::optional<std::string> chain_value(const Structure& st, size_t first, int depth) {
    const std::string& last = st.parts.back();
    for (size_t i = first; i + 1 < st.parts.size(); ++i)
        if (is_constant(st.parts[i]) && !equal_core(st.parts[i], last, depth + 1))
            return std::nullopt;
    return last;
}

bool equations_compare(const Structure& ea, const Structure& eb, int depth) {
    std::vector<std::string> pa = ea.parts, pb = eb.parts;
    // Two assignments compare their first and last sides ("x = 8/2 = 4" is "x = 4").
    if (pa.size() > 2 && is_variable_name(pa[0])) {
        const auto v = chain_value(ea, 1, depth);
        if (!v) return false;
        pa = {pa[0], *v};
    }
    if (pb.size() > 2 && is_variable_name(pb[0])) {
        const auto v = chain_value(eb, 1, depth);
        if (!v) return false;
        pb = {pb[0], *v};
    }
    if (pa.size() == 2 && pb.size() == 2) {
        if (pa[0] == pb[0] && is_variable_name(pa[0])) return equal_core(pa[1], pb[1], depth + 1);
        auto fa = parse_expr("(" + pa[0] + ")-(" + pa[1] + ")");
        auto fb = parse_expr("(" + pb[0] + ")-(" + pb[1] + ")");
        return fa && fb && equations_equal(*fa, *fb);
    }
    return false;
}

// One relation "l op r" in the form "f op 0" with op one of <, \le, \ne, = (a > b is
// b < a); false when a side does not parse.
struct Relation {
    std::string op;
    std::optional<Expr> f;
};
Relation canonical_relation(const std::string& l, std::string op, const std::string& r) {
    std::string lhs = l, rhs = r;
    if (op == ">" || op == "\\ge") {
        std::swap(lhs, rhs);
        op = op == ">" ? "<" : "\\le";
    }
    return {op, parse_expr("(" + lhs + ")-(" + rhs + ")")};
}

// Two relations, link by link in the order written (a chain "-3 < x < 3" has two links):
// the same operator after flipping > and \ge, and lhs - rhs proportional, by a positive
// factor for < and \le (so -x > -1 is x < 1, and 2x < 6 is x < 3).
bool relations_equal(const Structure& ra, const Structure& rb) {
    if (ra.ops.size() != rb.ops.size()) return false;
    for (size_t i = 0; i < ra.ops.size(); ++i) {
        const Relation x = canonical_relation(ra.parts[i], ra.ops[i], ra.parts[i + 1]);
        const Relation y = canonical_relation(rb.parts[i], rb.ops[i], rb.parts[i + 1]);
        if (x.op != y.op || !x.f || !y.f) return false;
        if (!proportional(*x.f, *y.f, x.op == "<" || x.op == "\\le")) return false;
    }
    return true;
}

// A relation on one variable with constant bounds as the interval it describes: "x \ge 5"
// is [5,\infty), "1 < x \le 4" is (1,4], "x \ne 2" is (-\infty,2)\cup(2,\infty). nullopt
// for anything else.
std::optional<std::string> relation_as_interval(const Structure& r) {
    auto lower = [](const std::string& op) { return op == "<" || op == "\\le"; };
    auto strict = [](const std::string& op) { return op == "<" || op == ">"; };
    if (r.ops.size() == 1) {
        std::string op = r.ops[0], c;
        if (is_variable_name(r.parts[0]) && is_constant(r.parts[1])) {
            c = r.parts[1];
        } else if (is_variable_name(r.parts[1]) && is_constant(r.parts[0])) {
            c = r.parts[0];
            if (op != "\\ne")
                op = lower(op) ? (strict(op) ? ">" : "\\ge") : (strict(op) ? "<" : "\\le");
        } else {
            return std::nullopt;
        }
        if (op == "\\ne") return "(-\\infty," + c + ")\\cup(" + c + ",\\infty)";
        if (lower(op)) return "(-\\infty," + c + (strict(op) ? ")" : "]");
        return (strict(op) ? "(" : "[") + c + ",\\infty)";
    }
    if (r.ops.size() == 2 && is_variable_name(r.parts[1]) && is_constant(r.parts[0]) &&
        is_constant(r.parts[2])) {
        const std::string &o1 = r.ops[0], &o2 = r.ops[1];
        if (o1 == "\\ne" || o2 == "\\ne" || o1 == "=" || o2 == "=" || lower(o1) != lower(o2))
            return std::nullopt;
        const bool up = lower(o1);
        const std::string& lo = up ? r.parts[0] : r.parts[2];
        const std::string& hi = up ? r.parts[2] : r.parts[0];
        const bool lo_open = strict(up ? o1 : o2), hi_open = strict(up ? o2 : o1);
        return (lo_open ? "(" : "[") + lo + "," + hi + (hi_open ? ")" : "]");
    }
    return std::nullopt;
}

// "x \approx 11" is 11 named x; "p = 1/3 \approx 0.33" keeps the exact side.
std::string drop_approximation(const std::string& s) {
    const auto parts = split_top(s, "\\approx");
    if (parts.size() < 2 || parts[0].empty() || parts.back().empty()) return s;
    if (is_variable_name(parts[0])) return parts[0] + "=" + parts.back();
    return parts[0];
}

bool has_ellipsis(const std::vector<std::string>& parts) {
    return std::find(parts.begin(), parts.end(), "\\dots") != parts.end();
}

bool equal_core(const std::string& a_in, const std::string& b_in, int depth) {
    if (depth > kMaxDepth || a_in.empty() || b_in.empty()) return false;
    // Identical answers are equal, unless they hold nothing to compare ("???", "()").
    if (a_in == b_in && (a_in == "\\{\\}" || has_alnum(a_in))) return true;
    const std::string a = drop_approximation(a_in), b = drop_approximation(b_in);
    const Structure sa = classify(a), sb = classify(b);
    // A gold assignment "x = 3" (or a chain "x = 1+2 = 3") against a value: the value.
    if (sa.kind == Kind::equation && sb.kind != Kind::equation) {
        if (!is_variable_name(sa.parts[0])) return false;
        const auto v = chain_value(sa, 1, depth);
        return v && equal_core(*v, b, depth + 1);
    }
    // A predicted equation against a value: its last side ("x = 5+5+1 = 11" answers 11).
    if (sb.kind == Kind::equation && sa.kind != Kind::equation) {
        const auto v = chain_value(sb, 0, depth);
        return v && equal_core(a, *v, depth + 1);
    }
    // Relations: link by link; a gold relation on one variable also equals the interval it
    // describes, but a gold interval is not answered by restating it as a relation
    // (Math-Verify's asymmetry: solving an inequality must not be paid for copying it).
    if (sa.kind == Kind::relation || sb.kind == Kind::relation) {
        if (sa.kind == sb.kind) return relations_equal(sa, sb);
        if (sa.kind == Kind::relation && (sb.kind == Kind::seq || sb.kind == Kind::set_union)) {
            const auto interval = relation_as_interval(sa);
            return interval && equal_core(*interval, b, depth + 1);
        }
        return false;
    }
    // A bare list against a tuple: "3, 4" answers "(3,4)" in order.
    if (sa.kind == Kind::set && sa.bare && sb.kind == Kind::seq && sb.open == '(' &&
        sb.close == ')')
        return elements_equal_ordered(sa.parts, sb.parts, depth);
    if (sb.kind == Kind::set && sb.bare && sa.kind == Kind::seq && sa.open == '(' &&
        sa.close == ')')
        return elements_equal_ordered(sa.parts, sb.parts, depth);
    if (sa.kind != sb.kind) return false;
    switch (sa.kind) {
        case Kind::set_union:
        case Kind::set:
            // A list with an ellipsis is a pattern, read in order: "1, 3, 5, \dots" is not
            // "1, 3, 5" and not "\dots, 5, 3, 1".
            if (has_ellipsis(sa.parts) || has_ellipsis(sb.parts))
                return elements_equal_ordered(sa.parts, sb.parts, depth);
            return elements_equal_unordered(sa.parts, sb.parts, depth);
        case Kind::seq:
            return sa.open == sb.open && sa.close == sb.close &&
                   elements_equal_ordered(sa.parts, sb.parts, depth);
        case Kind::matrix:
            return sa.open == sb.open && sa.rows == sb.rows &&
                   elements_equal_ordered(sa.parts, sb.parts, depth);
        case Kind::equation:
            return equations_compare(sa, sb, depth);
        case Kind::relation:
        case Kind::scalar:
            break;
    }
    const auto ea = parse_expr(a), eb = parse_expr(b);
    if (ea && eb) {
        // A plain decimal is compared at the precision it gives (decimals_equal).
        const int da = decimal_places(a), db = decimal_places(b);
        if ((da >= 0 || db >= 0) && ea->vars.empty() && eb->vars.empty() && !ea->has_infinity &&
            !eb->has_infinity)
            return decimals_equal(ea->eval({}), da, eb->eval({}), db);
        return expressions_equal(*ea, *eb);
    }
    // Neither is an expression: text answers ("Monday", "\text{yes}") compare case-folded.
    if (!ea && !eb) return has_alnum(a) && to_lower(a) == to_lower(b);
    return false;
}

struct Normalized {
    std::string text;
    bool percent = false;
};

std::string strip_units(std::string s) {
    static const std::regex units(
        R"(^(.*[0-9}).\]])\s*(?:(?:sq\.?|square|cubic)\s*)?)"
        R"((?:units?|cm|centimeters?|mm|millimeters?|km|kilometers?|meters?|inch(?:es)?|)"
        R"(feet|foot|ft|yards?|miles?|mph|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|)"
        R"(weeks?|months?|years?|degrees?|dollars?|cents?|pounds?|lbs?|ounces?|oz|grams?|kg|)"
        R"(kilograms?|liters?|litres?|ml|gallons?|calories|people|students|ways))"
        R"((?:\^\{?[23]\}?|\xC2\xB2|\xC2\xB3)?$)",
        std::regex::icase);
    std::smatch m;
    while (std::regex_match(s, m, units)) s = trim(m[1].str());
    return s;
}

std::string strip_trailing_punctuation(std::string s) {
    while (!s.empty()) {
        const char c = s.back();
        // '!' stays: "5!" is a factorial.
        if (c == '.' || c == ',' || c == ';' || c == ':' || is_space(c)) {
            // Keep an escaped character such as "\;".
            if (s.size() >= 2 && s[s.size() - 2] == '\\') break;
            s.pop_back();
        } else {
            break;
        }
    }
    return s;
}

// "5 and 6", "1, 2, or 3", "7\text{ or }8": the words "and" and "or" between answers are
// list commas (as Math-Verify reads them).
std::string words_to_commas(const std::string& s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        size_t w = 0;
        if (s.compare(i, 3, "and") == 0) w = 3;
        if (s.compare(i, 2, "or") == 0) w = 2;
        const bool word = w > 0 && (i == 0 || (!is_alpha(s[i - 1]) && s[i - 1] != '\\')) &&
                          (i + w >= s.size() || !is_alpha(s[i + w]));
        if (!word) {
            out.push_back(s[i++]);
            continue;
        }
        while (!out.empty() && (is_space(out.back()) || out.back() == ',')) out.pop_back();
        out.push_back(',');
        i += w;
        while (i < s.size() && is_space(s[i])) ++i;
    }
    return out;
}

// Removes whitespace. Digits apart stay apart ("1 2" is not 12: one space is kept, and the
// answer no longer parses as a number), unless they are thousands groups ("1 000 000", and
// "3\,000" once \, is a space).
std::string remove_spaces(const std::string& s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        if (!is_digit(s[i])) {
            if (!is_space(s[i])) out.push_back(s[i]);
            ++i;
            continue;
        }
        const bool decimals = i > 0 && s[i - 1] == '.';
        std::vector<std::string_view> groups;
        for (size_t j = i;;) {
            size_t k = j;
            while (k < s.size() && is_digit(s[k])) ++k;
            groups.push_back(std::string_view(s).substr(j, k - j));
            size_t m = k;
            while (m < s.size() && is_space(s[m])) ++m;
            if (m > k && m < s.size() && is_digit(s[m])) {
                j = m;
                continue;
            }
            i = k;
            break;
        }
        bool thousands = !decimals && groups[0].size() <= 3;
        for (size_t g = 1; g < groups.size(); ++g) thousands = thousands && groups[g].size() == 3;
        for (size_t g = 0; g < groups.size(); ++g) {
            if (g > 0 && !thousands) out.push_back(' ');
            out += groups[g];
        }
    }
    return out;
}

// Unicode spaces (no-break U+00A0, the U+2000-U+200A widths, narrow no-break U+202F,
// medium mathematical U+205F, ideographic U+3000) become ' '; zero-width ones (U+200B,
// the word joiner U+2060, the byte-order mark U+FEFF) go. "x\u00A0+\u00A01" is "x + 1".
std::string replace_unicode_spaces(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const auto byte = [&](size_t k) {
            return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u;
        };
        const unsigned b0 = byte(0), b1 = byte(1), b2 = byte(2);
        if (b0 == 0xC2 && b1 == 0xA0) {
            out.push_back(' ');
            i += 1;
        } else if (b0 == 0xE2 && b1 == 0x80 && b2 >= 0x80 && b2 <= 0x8B) {
            if (b2 != 0x8B) out.push_back(' ');
            i += 2;
        } else if ((b0 == 0xE2 && b1 == 0x80 && b2 == 0xAF) ||
                   (b0 == 0xE2 && b1 == 0x81 && b2 == 0x9F) ||
                   (b0 == 0xE3 && b1 == 0x80 && b2 == 0x80)) {
            out.push_back(' ');
            i += 2;
        } else if ((b0 == 0xE2 && b1 == 0x81 && b2 == 0xA0) ||
                   (b0 == 0xEF && b1 == 0xBB && b2 == 0xBF)) {
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// Removes a pair of parentheses or braces that only wraps another pair of the same kind,
// "((x+1))" -> "(x+1)", "{{2}}" -> "{2}", in linear time, so that redundant nesting does
// not count against the parser's depth guard. Escaped braces (\{ \}) are not touched.
std::string flatten_redundant_nesting(const std::string& s) {
    std::vector<size_t> match(s.size(), std::string::npos), open_paren, open_brace;
    for (size_t i = 0; i < s.size(); ++i) {
        const bool escaped = i > 0 && s[i - 1] == '\\';
        if (s[i] == '(') open_paren.push_back(i);
        if (s[i] == '{' && !escaped) open_brace.push_back(i);
        std::vector<size_t>* stack = s[i] == ')'               ? &open_paren
                                     : s[i] == '}' && !escaped ? &open_brace
                                                               : nullptr;
        if (stack && !stack->empty()) {
            match[stack->back()] = i;
            match[i] = stack->back();
            stack->pop_back();
        }
    }
    std::vector<bool> drop(s.size(), false);
    for (size_t i = 0; i + 1 < s.size(); ++i) {
        const size_t j = match[i];
        if ((s[i] == '(' || s[i] == '{') && j != std::string::npos && j > i && s[i + 1] == s[i] &&
            match[i + 1] == j - 1 && (s[i] == '(' || i == 0 || s[i - 1] != '\\')) {
            drop[i] = true;
            drop[j] = true;
        }
    }
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i)
        if (!drop[i]) out.push_back(s[i]);
    return out;
}

Normalized normalize(std::string_view in) {
    Normalized out;
    std::string s = trim(replace_unicode_spaces(in));
    if (s.size() > kMaxAnswerChars) return out;
    while (s.size() >= 4 && starts_with(s, "**") && ends_with(s, "**"))
        s = trim(s.substr(2, s.size() - 4));
    s = replace_all(s, "\\$", "");
    s = replace_all(s, "$", "");
    // Ellipses, before trailing punctuation is stripped: "1, 3, 5, ..." keeps its "...".
    s = replace_all(s, "...", "\\dots");
    s = replace_all(s, "\xE2\x80\xA6", "\\dots");
    for (std::string_view d : {"\\ldots", "\\cdots", "\\dotsc", "\\dotsb", "\\dotso"})
        s = replace_command(s, d, "\\dots");
    s = strip_trailing_punctuation(trim(s));
    if ((starts_with(s, "\\(") && ends_with(s, "\\)")) ||
        (starts_with(s, "\\[") && ends_with(s, "\\]")))
        s = trim(s.substr(2, s.size() - 4));
    s = unwrap_command(s, "\\boxed");
    s = unwrap_command(s, "\\fbox");
    s = replace_spacing(s);
    for (std::string_view sp : {"\\qquad", "\\quad"}) s = replace_command(s, sp, " ");
    s = replace_all(s, "\\left.", "");
    s = replace_all(s, "\\right.", "");
    for (std::string_view c : {"\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\big",
                               "\\Big", "\\displaystyle"})
        s = replace_command(s, c, "");
    s = replace_command(s, "\\dfrac", "\\frac");
    s = replace_command(s, "\\tfrac", "\\frac");
    s = replace_command(s, "\\dbinom", "\\binom");
    s = replace_command(s, "\\tbinom", "\\binom");
    for (std::string_view d :
         {"^{\\circ}", "^\\circ", "^{\\degree}", "\\circ", "\\degree", "\xC2\xB0"})
        s = replace_all(s, d, "");
    s = replace_all(s, "\\%", "%");
    for (std::string_view c :
         {"\\text", "\\textbf", "\\textit", "\\textrm", "\\texttt", "\\textnormal", "\\mathrm",
          "\\mathbf", "\\mathit", "\\mathsf", "\\mbox", "\\hbox", "\\operatorname"})
        s = unwrap_command(s, c);
    s = replace_all(s, "\\mathbb{R}", "(-\\infty,\\infty)");
    s = replace_command(s, "\\emptyset", "\\{\\}");
    s = replace_command(s, "\\varnothing", "\\{\\}");
    s = replace_command(s, "\\neq", "\\ne");
    s = replace_command(s, "\\leq", "\\le");
    s = replace_command(s, "\\geq", "\\ge");
    s = replace_command(s, "\\leqslant", "\\le");
    s = replace_command(s, "\\geqslant", "\\ge");
    s = replace_command(s, "\\lt", "<");
    s = replace_command(s, "\\gt", ">");
    for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"<=", "\\le"},
                            {">=", "\\ge"},
                            {"!=", "\\ne"},
                            {"\xE2\x89\xA4", "\\le"},
                            {"\xE2\x89\xA5", "\\ge"},
                            {"\xE2\x89\xA0", "\\ne"}})
        s = replace_all(s, from, to);
    s = replace_all(s, "{,}", ",");
    s = words_to_commas(s);
    // Units, percent and punctuation until nothing changes ("50 percent.", "5 cm.").
    for (std::string prev; prev != s;) {
        prev = s;
        s = strip_trailing_punctuation(trim(s));
        s = strip_units(s);
        if (ends_with(s, "%")) {
            s.pop_back();
            out.percent = true;
        }
        static const std::regex percent_word(R"(^(.*[0-9}])\s*percent$)", std::regex::icase);
        std::smatch m;
        if (std::regex_match(s, m, percent_word)) {
            s = m[1].str();
            out.percent = true;
        }
        s = trim(s);
    }
    // "1,000.99" is one number (groups of three); "0,375" too, as a decimal comma (a grouped
    // number never starts with 0). Any other comma separates elements: "3,5" is a list.
    static const std::regex thousands(R"(^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$)");
    static const std::regex decimal_comma(R"(^[+-]?0,\d+$)");
    if (std::regex_match(s, decimal_comma)) {
        s = replace_all(s, ",", ".");
    } else if (std::regex_match(s, thousands)) {
        s = replace_all(s, ",", "");
    }
    s = flatten_redundant_nesting(remove_spaces(s));
    static const std::regex member(R"(^[a-zA-Z]\\in(?![a-zA-Z]))");
    s = std::regex_replace(s, member, "", std::regex_constants::format_first_only);
    out.text = s;
    return out;
}

bool equal_normalized(const Normalized& a, const Normalized& b, int depth) {
    if (a.text.empty() || b.text.empty()) return false;
    if (a.percent == b.percent) return equal_core(a.text, b.text, depth);
    // One side has a percent sign: it may be read as written or as a fraction.
    const Normalized& pct = a.percent ? a : b;
    const Normalized& other = a.percent ? b : a;
    if (equal_core(pct.text, other.text, depth)) return true;
    const auto ep = parse_expr(pct.text), eo = parse_expr(other.text);
    if (!ep || !eo || !ep->vars.empty() || !eo->vars.empty()) return false;
    return values_close(ep->eval({}) / 100.0, eo->eval({}), true);
}

bool equal_strings(std::string_view a, std::string_view b, int depth) {
    if (depth > kMaxDepth) return false;
    return equal_normalized(normalize(a), normalize(b), depth);
}

}  // namespace

// ---- math -------------------------------------------------------------------------------------

namespace detail {
std::optional<Expr> parse_math_expr(std::string_view normalized) {
    return parse_expr(normalized);
}
}  // namespace detail

namespace {

constexpr size_t kNone = std::string_view::npos;

// Math-Verify's separators between boxed answers that form one list: "and", "or", ",", ";".
bool has_separator(std::string_view s) {
    if (s.find(',') != kNone || s.find(';') != kNone) return true;
    for (std::string_view w : {"and", "or"}) {
        for (size_t p = s.find(w); p != kNone; p = s.find(w, p + 1)) {
            const bool left = p == 0 || !(is_alpha(s[p - 1]) || is_digit(s[p - 1]));
            const size_t e = p + w.size();
            if (left && (e >= s.size() || !(is_alpha(s[e]) || is_digit(s[e])))) return true;
        }
    }
    return false;
}

// The last \boxed{} / \fbox{} and, joined by commas, the boxes before it that belong to the
// same answer: under 10 characters between them, or under 70 with a separator and another
// content ("\boxed{2} and \boxed{5}" is the list 2, 5; a repeated box counts once).
// nullopt when there is no box, or the last one is unbalanced (then `broken` is set).
std::optional<std::string> boxed_answers(std::string_view text, bool* broken) {
    std::vector<std::string> found;  // right to left
    size_t limit = text.size(), taken_at = kNone;
    // The last \\boxed and \\fbox before `limit`; limit only falls, so a position found
    // before it stays the last one (each name is searched for once per occurrence).
    constexpr std::string_view kNames[2] = {"\\boxed", "\\fbox"};
    size_t last[2] = {text.rfind(kNames[0]), text.rfind(kNames[1])};
    while (limit > 0) {
        size_t best = kNone, name_len = 0;
        for (int k = 0; k < 2; ++k) {
            if (last[k] != kNone && last[k] >= limit)
                last[k] = limit == 0 ? kNone : text.substr(0, limit).rfind(kNames[k]);
            if (last[k] != kNone && (best == kNone || last[k] > best)) {
                best = last[k];
                name_len = kNames[k].size();
            }
        }
        if (best == kNone) break;
        const std::string_view before = text.substr(0, limit);
        size_t b = best + name_len;
        while (b < before.size() && before[b] == ' ') ++b;
        std::string content;
        size_t close = kNone;
        if (b < before.size() && before[b] == '{') {
            close = match_brace(before, b);
            if (close == kNone) {
                if (found.empty()) *broken = true;
                break;
            }
            content = trim(before.substr(b + 1, close - b - 1));
        } else if (found.empty() && best + name_len < b) {  // "\boxed 5": up to a space or '$'
            size_t e = b;
            while (e < before.size() && !is_space(before[e]) && before[e] != '$') ++e;
            if (e == b) break;
            content = std::string(before.substr(b, e - b));
            close = e - 1;
        } else {
            if (found.empty()) *broken = true;
            break;
        }
        if (!found.empty()) {
            const std::string_view between = text.substr(close + 1, taken_at - close - 1);
            const bool near = between.size() < 10;
            const bool joined =
                between.size() < 70 && content != found.back() && has_separator(between);
            if (!near && !joined) break;
        }
        if (found.empty() || found.back() != content) found.push_back(content);
        taken_at = best;
        limit = best;
    }
    if (found.empty()) return std::nullopt;
    std::string out;
    for (size_t i = found.size(); i-- > 0;) {
        out += found[i];
        if (i > 0) out += ",";
    }
    return out;
}

// The end (one past the closing delimiter) of the math environment that opens at `b` --
// $...$ and \(...\) on one line, $$...$$ and \[...\] on any -- or kNone.
size_t environment_end(std::string_view t, size_t b) {
    auto closing = [&](size_t from, std::string_view close, bool one_line) {
        for (size_t i = from; i + close.size() <= t.size(); ++i) {
            if (one_line && t[i] == '\n') return kNone;
            if (t[i] == '\\' && close[0] != '\\') {
                ++i;  // an escaped character ("\$") does not close $...$
                continue;
            }
            if (t.substr(i, close.size()) == close) return i + close.size();
        }
        return kNone;
    };
    if (t.substr(b, 2) == "$$") return closing(b + 2, "$$", false);
    if (t.substr(b, 2) == "\\[") return closing(b + 2, "\\]", false);
    if (t.substr(b, 2) == "\\(") return closing(b + 2, "\\)", true);
    if (t[b] == '$' && (b == 0 || t[b - 1] != '\\')) {
        const size_t e = closing(b + 1, "$", true);
        return e == b + 2 ? kNone : e;  // "$$" is not an empty environment
    }
    return kNone;
}

// A percent sign or word right after an environment ("$12.5$ percent") belongs to it.
size_t percent_suffix_end(std::string_view t, size_t e) {
    size_t i = e;
    while (i < t.size() && t[i] == ' ') ++i;
    for (std::string_view p : {"\\%", "%", "percentage", "percent", "pct"})
        if (t.substr(i, p.size()) == p) return i + p.size();
    return e;
}

// Math environments in reading order, as [begin, end) spans. An opener that finds no closer
// is remembered, so that the next openers of its kind before the end of its search are not
// searched again ("\\(\\(\\(..." stays linear).
std::vector<std::pair<size_t, size_t>> environments(std::string_view t) {
    std::vector<std::pair<size_t, size_t>> out;
    size_t hopeless[4] = {0, 0, 0, 0};  // per kind ($, $$, \(, \[): no closer before this
    for (size_t i = 0; i < t.size();) {
        const char c = t[i];
        int kind = -1;
        if (c == '$') kind = t.substr(i, 2) == "$$" ? 1 : 0;
        if (c == '\\' && i + 1 < t.size() && (t[i + 1] == '(' || t[i + 1] == '['))
            kind = t[i + 1] == '(' ? 2 : 3;
        if (kind >= 0 && i >= hopeless[kind]) {
            const size_t e = environment_end(t, i);
            if (e != kNone) {
                out.emplace_back(i, percent_suffix_end(t, e));
                i = out.back().second;
                continue;
            }
            const size_t eol = t.find('\n', i);
            hopeless[kind] = (kind == 0 || kind == 2) && eol != kNone ? eol : t.size();
        }
        i += c == '\\' ? 2 : 1;  // "\$" is a dollar sign, not a delimiter
    }
    return out;
}

// Environments written as one answer: "$5$ and $6$", "$1$, $2$, or $3$" (at most 6).
bool connected(std::string_view gap) {
    const std::string g = trim(gap);
    return g.empty() || g == "," || g == "and" || g == "or" || g == ",and" || g == ", and" ||
           g == ",or" || g == ", or";
}

}  // namespace

std::optional<std::string> extract_math_answer(std::string_view text) {
    // The last \boxed (with the boxes that belong with it).
    bool broken = false;
    if (auto boxed = boxed_answers(text, &broken)) return boxed;
    if (broken) return std::nullopt;
    const auto envs = environments(text);
    // "Answer" and, within 50 characters, a math environment (any lines): that environment
    // and the ones connected to it.
    const std::string lower_text = to_lower(text);
    const size_t anchor = lower_text.rfind("answer");
    if (anchor != std::string::npos) {
        for (size_t k = 0; k < envs.size(); ++k) {
            if (envs[k].first < anchor + 6) continue;
            if (envs[k].first > anchor + 6 + 50) break;
            size_t last = k;
            while (
                last + 1 < envs.size() && last - k < 5 &&
                connected(text.substr(envs[last].second, envs[last + 1].first - envs[last].second)))
                ++last;
            return std::string(text.substr(envs[k].first, envs[last].second - envs[k].first));
        }
    }
    // "The answer is ..." / "Final Answer: ...": the last one.
    size_t at = std::string::npos;
    for (std::string_view marker : {"answer is", "answer:"}) {
        const size_t p = lower_text.rfind(marker);
        if (p != std::string::npos && (at == std::string::npos || p + marker.size() > at))
            at = p + marker.size();
    }
    if (at != std::string::npos) {
        std::string_view rest = text.substr(at);
        rest = rest.substr(0, rest.find('\n'));
        // End of the sentence: a period followed by a space ("$\frac12$. I hope it is correct.").
        if (size_t stop = rest.find(". "); stop != std::string_view::npos)
            rest = rest.substr(0, stop);
        std::string answer = trim(rest);
        while (!answer.empty() && (answer[0] == ':' || answer[0] == '*'))
            answer = trim(answer.substr(1));
        if (!answer.empty()) return answer;
    }
    // No marker: the last math environment, with the ones connected to it.
    if (envs.empty()) return std::nullopt;
    size_t first = envs.size() - 1;
    while (
        first > 0 && envs.size() - first < 6 &&
        connected(text.substr(envs[first - 1].second, envs[first].first - envs[first - 1].second)))
        --first;
    return std::string(text.substr(envs[first].first, envs.back().second - envs[first].first));
}

std::string normalize_math(std::string_view answer) {
    Normalized n = normalize(answer);
    if (n.percent && !n.text.empty()) n.text.push_back('%');
    return n.text;
}

bool math_answers_equal(std::string_view gold, std::string_view pred) {
    return equal_strings(gold, pred, 0);
}

bool verify_math(std::string_view gold, std::string_view pred) {
    const std::string g = extract_math_answer(gold).value_or(std::string(gold));
    std::optional<std::string> p = extract_math_answer(pred);
    if (!p) {
        // An unbalanced \boxed is a failed answer, not the whole text.
        if (pred.find("\\boxed") != std::string_view::npos) return false;
        p = std::string(pred);
    }
    return math_answers_equal(g, *p);
}

}  // namespace crucible::eval
