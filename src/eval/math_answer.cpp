// Math answers: extraction, LaTeX normalisation, and equivalence by structure and value.
// GCC 12 reports a false -Wmaybe-uninitialized inside <regex> (std::function in
// regex_automaton.h) when built with -fsanitize=address; the warning is in the library.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "eval/math_answer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <regex>
#include <set>
#include <vector>

#include "core/rng.h"
#include "eval/math_expr.h"
#include "eval/symbolic.h"
#include "eval/text_util.h"

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

// \! \, \; \: "\ " and ~ become spaces; a "\\" row break is left alone.
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
            if (c == '!' || c == ',' || c == ';' || c == ':' || c == ' ') {
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
    {"sin", Op::kSin},     {"cos", Op::kCos}, {"tan", Op::kTan},     {"sec", Op::kSec},
    {"csc", Op::kCsc},     {"cot", Op::kCot}, {"arcsin", Op::kAsin}, {"arccos", Op::kAcos},
    {"arctan", Op::kAtan}, {"ln", Op::kLn},   {"log", Op::kLog10},   {"exp", Op::kExp},
    {"sqrt", Op::kSqrt},
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
                l = add(Op::kAdd, l, term());
            } else if (eat('-')) {
                l = add(Op::kSub, l, term());
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
                l = add(Op::kMul, l, unary());
            } else if (eat('/') || eat_command("div")) {
                l = add(Op::kDiv, l, unary());
            } else if (starts_primary()) {
                l = add(Op::kMul, l, power());
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
            r = add(Op::kNeg, unary());
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
        while (!failed_ && eat('!')) base = add(Op::kFact, base);
        if (failed_) return -1;
        if (eat('^')) return add(Op::kPow, base, exponent());
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
            r = add(Op::kNeg, exponent());
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
            return add(Op::kNum, -1, -1, c - '0');
        }
        if (is_alpha(c)) {
            ++pos_;
            return variable(letter_var(c));
        }
        if (c == '\\') return command();
        return fail();
    }
    int variable(int id) {
        if (id == letter_var('e')) return add(Op::kE);  // Euler's number, as answers use it
        e_.vars.insert(id);
        return add(Op::kVar, -1, -1, id);
    }
    // f(x), f x, and f^2 x = (f x)^2. A negative power (\\sin^{-1}: inverse or reciprocal?)
    // is ambiguous, so it does not parse.
    int function_call(Op op) {
        int power = -1;
        if (op != Op::kSqrt && eat('^')) {
            power = exponent();
            if (failed_ || e_.nodes[static_cast<size_t>(power)].op == Op::kNeg) return fail();
        }
        const int r = add(op, function_argument());
        return power >= 0 ? add(Op::kPow, r, power) : r;
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
            r = add(Op::kAbs, expr());
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
        return add(Op::kNum, -1, -1, std::strtod(text.c_str(), nullptr));
    }
    // A run of plain letters: a function name, pi, inf, or one variable.
    int word() {
        const size_t b = pos_;
        while (is_alpha(peek())) ++pos_;
        const std::string_view w = s_.substr(b, pos_ - b);
        if (w.size() == 1) return variable(letter_var(w[0]));
        if (w == "pi") return add(Op::kPi);
        if (w == "inf" || w == "infty" || w == "infinity") {
            e_.has_infinity = true;
            return add(Op::kNum, -1, -1, kInf);
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
            return add(Op::kDiv, a, group());
        }
        if (cmd == "binom") {
            const int a = group();
            return add(Op::kBinom, a, group());
        }
        if (cmd == "sqrt") {
            if (eat('[')) {
                const int k = expr();
                if (!eat(']')) return fail();
                return add(Op::kRoot, group(), k);
            }
            return add(Op::kSqrt, group());
        }
        if (cmd == "pi") return add(Op::kPi);
        if (cmd == "infty") {
            e_.has_infinity = true;
            return add(Op::kNum, -1, -1, kInf);
        }
        if (cmd == "log" && eat('_')) {
            const int base = group();
            return add(Op::kLogBase, function_argument(), base);
        }
        for (const auto& f : kFunctions)
            if (f.name == cmd) return function_call(f.op);
        for (size_t g = 0; g < std::size(kGreek); ++g)
            if (kGreek[g] == cmd) return variable(52 + static_cast<int>(g));
        return fail();
    }

    std::string_view s_;
    size_t pos_ = 0;
    int depth_ = 0;
    bool failed_ = false;
    Expr e_;
};

std::optional<Expr> parse_expr(std::string_view s) {
    if (s.size() > kMaxAnswerChars) return std::nullopt;
    return ExprParser(s).parse();
}

// Values for the variables at numeric probe point p: distinct, positive, not round.
std::vector<double> probe_values(int p) {
    std::vector<double> v(kNumVars);
    for (int i = 0; i < kNumVars; ++i) {
        Rng rng(Rng::mix(static_cast<uint64_t>(i) + 1, static_cast<uint64_t>(p) + 101));
        v[static_cast<size_t>(i)] = 0.3 + 2.7 * rng.uniform();
    }
    return v;
}

bool is_integral(double x) {
    return std::fabs(x) < 9e15 && x == std::floor(x);
}

// Two constants: exact for integers, 1e-6 relative when a decimal was written (so 0.333333
// equals 1/3 and 0.333 does not), 1e-9 relative otherwise (rounding in sqrt, pi, ...).
bool values_close(double a, double b, bool decimal) {
    if (std::isnan(a) || std::isnan(b)) return false;
    if (std::isinf(a) || std::isinf(b)) return a == b;
    if (!decimal && is_integral(a) && is_integral(b)) return a == b;
    const double rel = decimal ? 1e-6 : 1e-9;
    return std::fabs(a - b) <= std::max(1e-12, rel * std::max(std::fabs(a), std::fabs(b)));
}

constexpr int kProbes = 5;

bool expressions_equal(const Expr& a, const Expr& b) {
    // What GiNaC decides is final; anything else goes to the probes.
    if (const auto v = symbolic_verdict(a, b)) return *v;
    // Variables may differ (sin^2 x + cos^2 x against 1): the probes set all of them.
    const bool decimal = a.has_decimal || b.has_decimal;
    if (a.vars.empty() && b.vars.empty()) {
        const double x = a.eval({}), y = b.eval({});
        if (!std::isfinite(x) || !std::isfinite(y))
            return std::isinf(x) && x == y && a.has_infinity && b.has_infinity;
        return values_close(x, y, decimal);
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
        if (!(std::fabs(x - y) <= (decimal ? 1e-6 : 1e-9) * scale)) return false;
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

enum class Kind { kScalar, kSet, kSeq, kMatrix, kUnion, kEquation };

struct Structure {
    Kind kind = Kind::kScalar;
    char open = 0, close = 0;        // kSeq: the brackets
    bool bare = false;               // kSet written without braces ("1, 2")
    std::vector<std::string> parts;  // elements; kMatrix: row-major cells
    size_t rows = 0;                 // kMatrix
};

bool is_inequality(std::string_view s) {
    return s.find('<') != std::string_view::npos || s.find('>') != std::string_view::npos ||
           s.find("\\le") != std::string_view::npos || s.find("\\ge") != std::string_view::npos ||
           s.find("\\ne") != std::string_view::npos;
}

Structure classify(const std::string& s) {
    Structure st;
    if (auto u = split_top(s, "\\cup"); u.size() > 1) {
        st.kind = Kind::kUnion;
        st.parts = std::move(u);
        return st;
    }
    for (std::string_view env : {"pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix"}) {
        const std::string b = "\\begin{" + std::string(env) + "}";
        const std::string e = "\\end{" + std::string(env) + "}";
        if (!starts_with(s, b) || !ends_with(s, e) || s.size() < b.size() + e.size()) continue;
        std::string body = s.substr(b.size(), s.size() - b.size() - e.size());
        std::vector<std::string> rows = split_top(body, "\\\\");
        if (!rows.empty() && rows.back().empty()) rows.pop_back();
        st.kind = Kind::kMatrix;
        st.open = env[0];  // vmatrix (a determinant) differs from the others
        if (env == "bmatrix" || env == "matrix" || env == "Bmatrix") st.open = 'p';
        size_t cols = 0;
        for (const auto& r : rows) {
            std::vector<std::string> cells = split_top(r, "&");
            if (cols != 0 && cells.size() != cols) return Structure{};  // ragged: scalar, fails
            cols = cells.size();
            for (auto& c : cells) st.parts.push_back(std::move(c));
        }
        st.rows = rows.size();
        return st;
    }
    if (s.size() >= 4 && starts_with(s, "\\{") && ends_with(s, "\\}") && wraps_whole(s, 1)) {
        st.kind = Kind::kSet;
        const std::string body = s.substr(2, s.size() - 4);
        if (!body.empty()) st.parts = split_top(body, ",");
        return st;
    }
    if (s.size() >= 2 && s[0] == '{' && wraps_whole(s, 0)) {
        auto parts = split_top(s.substr(1, s.size() - 2), ",");
        if (parts.size() > 1) {
            st.kind = Kind::kSet;
            st.parts = std::move(parts);
            return st;
        }
    }
    if (s.size() >= 2 && (s[0] == '(' || s[0] == '[') && (s.back() == ')' || s.back() == ']') &&
        wraps_whole(s, 0)) {
        auto parts = split_top(s.substr(1, s.size() - 2), ",");
        if (parts.size() > 1) {
            st.kind = Kind::kSeq;
            st.open = s[0];
            st.close = s.back();
            st.parts = std::move(parts);
            return st;
        }
    }
    if (auto parts = split_top(s, ","); parts.size() > 1) {
        st.kind = Kind::kSet;
        st.bare = true;
        st.parts = std::move(parts);
        return st;
    }
    if (!is_inequality(s)) {
        if (auto parts = split_top(s, "="); parts.size() > 1) {
            st.kind = Kind::kEquation;
            st.parts = std::move(parts);
            return st;
        }
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

bool equations_compare(const Structure& ea, const Structure& eb, int depth) {
    if (ea.parts.size() == 2 && eb.parts.size() == 2) {
        if (ea.parts[0] == eb.parts[0] && is_variable_name(ea.parts[0]))
            return equal_core(ea.parts[1], eb.parts[1], depth + 1);
        auto fa = parse_expr("(" + ea.parts[0] + ")-(" + ea.parts[1] + ")");
        auto fb = parse_expr("(" + eb.parts[0] + ")-(" + eb.parts[1] + ")");
        return fa && fb && equations_equal(*fa, *fb);
    }
    return false;
}

bool equal_core(const std::string& a, const std::string& b, int depth) {
    if (depth > kMaxDepth || a.empty() || b.empty()) return false;
    // Identical answers are equal, unless they hold nothing to compare ("???", "()").
    if (a == b && (a == "\\{\\}" || has_alnum(a))) return true;
    const Structure sa = classify(a), sb = classify(b);
    // An assignment "x = 3" against a value: compare the value (the last side of a chain).
    if (sa.kind == Kind::kEquation && sb.kind != Kind::kEquation) {
        for (size_t i = 0; i + 1 < sa.parts.size(); ++i)
            if (!is_variable_name(sa.parts[i])) return false;
        return equal_core(sa.parts.back(), b, depth + 1);
    }
    if (sb.kind == Kind::kEquation && sa.kind != Kind::kEquation) {
        for (size_t i = 0; i + 1 < sb.parts.size(); ++i)
            if (!is_variable_name(sb.parts[i])) return false;
        return equal_core(a, sb.parts.back(), depth + 1);
    }
    // A bare list against a tuple: "3, 4" answers "(3,4)" in order.
    if (sa.kind == Kind::kSet && sa.bare && sb.kind == Kind::kSeq && sb.open == '(' &&
        sb.close == ')')
        return elements_equal_ordered(sa.parts, sb.parts, depth);
    if (sb.kind == Kind::kSet && sb.bare && sa.kind == Kind::kSeq && sa.open == '(' &&
        sa.close == ')')
        return elements_equal_ordered(sa.parts, sb.parts, depth);
    if (sa.kind != sb.kind) return false;
    switch (sa.kind) {
        case Kind::kUnion:
        case Kind::kSet:
            return elements_equal_unordered(sa.parts, sb.parts, depth);
        case Kind::kSeq:
            return sa.open == sb.open && sa.close == sb.close &&
                   elements_equal_ordered(sa.parts, sb.parts, depth);
        case Kind::kMatrix:
            return sa.open == sb.open && sa.rows == sb.rows &&
                   elements_equal_ordered(sa.parts, sb.parts, depth);
        case Kind::kEquation:
            return equations_compare(sa, sb, depth);
        case Kind::kScalar:
            break;
    }
    const auto ea = parse_expr(a), eb = parse_expr(b);
    if (ea && eb) return expressions_equal(*ea, *eb);
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

Normalized normalize(std::string_view in) {
    Normalized out;
    std::string s = trim(in);
    if (s.size() > kMaxAnswerChars) return out;
    while (s.size() >= 4 && starts_with(s, "**") && ends_with(s, "**"))
        s = trim(s.substr(2, s.size() - 4));
    s = replace_all(s, "\\$", "");
    s = replace_all(s, "$", "");
    s = trim(s);
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
    s = replace_all(s, "{,}", ",");
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
    static const std::regex thousands(R"(^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$)");
    if (std::regex_match(s, thousands)) s = replace_all(s, ",", "");
    s.erase(std::remove_if(s.begin(), s.end(), is_space), s.end());
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

std::optional<std::string> extract_math_answer(std::string_view text) {
    // The last \boxed / \fbox.
    size_t best = std::string_view::npos, name_len = 0;
    for (std::string_view name : {"\\boxed", "\\fbox"}) {
        const size_t p = text.rfind(name);
        if (p != std::string_view::npos && (best == std::string_view::npos || p > best)) {
            best = p;
            name_len = name.size();
        }
    }
    if (best != std::string_view::npos) {
        size_t b = best + name_len;
        while (b < text.size() && text[b] == ' ') ++b;
        if (b < text.size() && text[b] == '{') {
            const size_t e = match_brace(text, b);
            if (e == std::string_view::npos) return std::nullopt;
            return trim(text.substr(b + 1, e - b - 1));
        }
        if (best + name_len < b) {  // "\boxed 5": up to whitespace or '$'
            size_t e = b;
            while (e < text.size() && !is_space(text[e]) && text[e] != '$') ++e;
            if (e > b) return std::string(text.substr(b, e - b));
        }
        return std::nullopt;
    }
    // "The answer is ..." / "Final Answer: ...": the last one.
    const std::string lower_text = to_lower(text);
    size_t at = std::string::npos;
    for (std::string_view marker : {"answer is", "answer:"}) {
        const size_t p = lower_text.rfind(marker);
        if (p != std::string::npos && (at == std::string::npos || p + marker.size() > at))
            at = p + marker.size();
    }
    if (at == std::string::npos) return std::nullopt;
    std::string_view rest = text.substr(at);
    rest = rest.substr(0, rest.find('\n'));
    // End of the sentence: a period followed by a space ("$\frac12$. I hope it is correct.").
    if (size_t stop = rest.find(". "); stop != std::string_view::npos) rest = rest.substr(0, stop);
    std::string answer = trim(rest);
    while (!answer.empty() && (answer[0] == ':' || answer[0] == '*'))
        answer = trim(answer.substr(1));
    if (answer.empty()) return std::nullopt;
    return answer;
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
