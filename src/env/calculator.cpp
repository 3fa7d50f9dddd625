#include "env/calculator.h"

#include <cln/integer.h>
#include <cln/integer_io.h>
#include <cln/rational.h>

#include <cctype>
#include <exception>
#include <mutex>
#include <sstream>

namespace crucible {

namespace {

using cln::cl_I;
using cln::cl_RA;

// Thrown inside the parser only; evaluate_expression turns it into CalcResult::error.
struct CalcError {
    std::string message;
};

const cl_I& digit_limit() {
    static const cl_I limit = cln::expt_pos(cl_I(10), kCalcMaxDigits);  // 10^500
    return limit;
}

bool is_integer(const cl_RA& x) {
    return cln::denominator(x) == 1;
}

std::string to_text(const cl_I& n) {
    std::ostringstream out;
    out << n;
    return out.str();
}

// Refuses a value whose numerator or denominator has more than kCalcMaxDigits digits.
const cl_RA& bounded(const cl_RA& x) {
    if (cln::abs(cln::numerator(x)) >= digit_limit() || cln::denominator(x) >= digit_limit())
        throw CalcError{"number too large (more than " + std::to_string(kCalcMaxDigits) +
                        " digits)"};
    return x;
}

class Parser {
  public:
    explicit Parser(std::string_view text) : s_(text) {}

    cl_RA parse() {
        cl_RA value = expr();
        skip_space();
        if (pos_ < s_.size()) fail_here("unexpected");
        return value;
    }

  private:
    void skip_space() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }

    // Looks at the next token's first character (0 at the end).
    char peek() {
        skip_space();
        return pos_ < s_.size() ? s_[pos_] : '\0';
    }

    bool at_power() {
        const char c = peek();
        return c == '^' || (c == '*' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '*');
    }

    [[noreturn]] void fail_here(const std::string& what) {
        if (pos_ >= s_.size()) throw CalcError{"unexpected end of expression"};
        const unsigned char c = static_cast<unsigned char>(s_[pos_]);
        std::string shown =
            c >= 0x20 && c < 0x7f ? "'" + std::string(1, static_cast<char>(c)) + "'" : "character";
        throw CalcError{what + " " + shown + " at position " + std::to_string(pos_ + 1)};
    }

    cl_RA expr() {
        cl_RA value = term();
        for (;;) {
            const char c = peek();
            if (c != '+' && c != '-') return value;
            ++pos_;
            const cl_RA rhs = term();
            value = bounded(c == '+' ? value + rhs : value - rhs);
        }
    }

    cl_RA term() {
        cl_RA value = unary();
        for (;;) {
            const char c = peek();
            if ((c != '*' && c != '/') || at_power()) return value;
            ++pos_;
            const cl_RA rhs = unary();
            if (c == '*') {
                value = bounded(value * rhs);
            } else {
                if (cln::zerop(rhs)) throw CalcError{"division by zero"};
                value = bounded(value / rhs);
            }
        }
    }

    // Every recursion (parentheses, signs, exponents) passes through here: the depth bound.
    cl_RA unary() {
        if (++depth_ > kCalcMaxDepth)
            throw CalcError{"expression nested too deeply (more than " +
                            std::to_string(kCalcMaxDepth) + " levels)"};
        cl_RA value;
        const char c = peek();
        if (c == '-' || c == '+') {
            ++pos_;
            value = unary();
            if (c == '-') value = -value;
        } else {
            value = power();
        }
        --depth_;
        return value;
    }

    cl_RA power() {
        const cl_RA base = primary();
        if (!at_power()) return base;
        pos_ += s_[pos_] == '^' ? 1 : 2;
        const cl_RA exponent = unary();  // right-associative: 2^3^2 = 2^(3^2)
        return raise(base, exponent);
    }

    static cl_RA raise(const cl_RA& base, const cl_RA& exponent) {
        if (!is_integer(exponent))
            throw CalcError{"exponent must be an integer (exact arithmetic has no roots)"};
        const cl_I e = cln::numerator(exponent);  // an integer: its denominator is 1
        if (cln::abs(e) > cl_I(kCalcMaxExponent))
            throw CalcError{"exponent too large (at most " + std::to_string(kCalcMaxExponent) +
                            " in size)"};
        const long n = cln::cl_I_to_long(e);
        if (cln::zerop(base)) {
            if (n < 0) throw CalcError{"division by zero (0 to a negative power)"};
            return n == 0 ? cl_RA(1) : cl_RA(0);
        }
        if (n == 0) return 1;
        // The result's numerator and denominator have about bits(x) * |n| bits each: refuse
        // before computing anything that large (the check after is exact).
        const long limit_bits = static_cast<long>(kCalcMaxDigits * 3.33) + 8;
        const long magnitude = n < 0 ? -n : n;
        const auto too_big = [&](const cl_I& x) {
            const long bits = static_cast<long>(cln::integer_length(cln::abs(x)));
            return bits > 1 && (bits - 1) * magnitude > limit_bits;
        };
        if (too_big(cln::numerator(base)) || too_big(cln::denominator(base)))
            throw CalcError{"number too large (more than " + std::to_string(kCalcMaxDigits) +
                            " digits)"};
        return bounded(cln::expt(base, cl_I(n)));
    }

    cl_RA primary() {
        const char c = peek();
        if (c == '(') {
            const size_t open = pos_;
            ++pos_;
            const cl_RA value = expr();
            if (peek() != ')') {
                if (pos_ >= s_.size())
                    throw CalcError{"unclosed '(' at position " + std::to_string(open + 1)};
                fail_here("expected ')' but found");
            }
            ++pos_;
            return value;
        }
        if ((c >= '0' && c <= '9') || c == '.') return number();
        fail_here("expected a number or '(' but found");
    }

    cl_RA number() {
        const size_t start = pos_;
        cl_I digits = 0;
        int count = 0;
        int decimals = 0;
        bool seen_point = false;
        bool any_digit = false;
        for (; pos_ < s_.size(); ++pos_) {
            const char c = s_[pos_];
            if (c == '.') {
                if (seen_point) fail_here("second decimal point");
                seen_point = true;
                continue;
            }
            if (c < '0' || c > '9') break;
            any_digit = true;
            if (++count > kCalcMaxDigits)
                throw CalcError{"number too long (more than " + std::to_string(kCalcMaxDigits) +
                                " digits) at position " + std::to_string(start + 1)};
            digits = digits * 10 + (c - '0');
            if (seen_point) ++decimals;
        }
        if (!any_digit) {
            pos_ = start;
            fail_here("expected a number but found");
        }
        if (pos_ < s_.size() && (std::isalpha(static_cast<unsigned char>(s_[pos_])) != 0))
            fail_here("unexpected");  // "1e3", "2x": no exponent notation, no variables
        if (decimals == 0) return bounded(cl_RA(digits));  // (CLN's expt_pos needs y > 0)
        return bounded(cl_RA(digits) / cln::expt_pos(cl_I(10), decimals));
    }

    std::string_view s_;
    size_t pos_ = 0;
    int depth_ = 0;
};

// |x| rounded to `places` decimals, half away from zero, as an integer count of 10^-places.
cl_I scaled_round(const cl_RA& magnitude, int places) {
    const cl_RA scaled = magnitude * cln::expt_pos(cl_I(10), places);
    const cl_I n = cln::numerator(scaled);
    const cl_I d = cln::denominator(scaled);
    return cln::floor1(2 * n + d, 2 * d);
}

std::string decimal_of(const cl_RA& x) {
    const bool negative = cln::minusp(x);
    const cl_RA magnitude = cln::abs(x);
    std::string out = negative ? "-" : "";
    const cl_I q = scaled_round(magnitude, 6);
    if (!cln::zerop(q)) {
        std::string digits = to_text(q);
        if (digits.size() < 7) digits.insert(0, 7 - digits.size(), '0');
        std::string whole = digits.substr(0, digits.size() - 6);
        std::string frac = digits.substr(digits.size() - 6);
        // Exact (terminates within 6 places): no trailing zeros. Rounded: all 6 places, so
        // 19999999/10000000 shows 2.000000, never a bare "2".
        if (is_integer(magnitude * cln::expt_pos(cl_I(10), 6)))
            while (!frac.empty() && frac.back() == '0') frac.pop_back();
        return out + whole + (frac.empty() ? "" : "." + frac);
    }
    // Under 0.0000005: six significant digits, d.ddddde-k.
    int k = 7;
    while (magnitude * cln::expt_pos(cl_I(10), k) < 1) ++k;
    cl_I m = scaled_round(magnitude, k + 5);  // in [100000, 1000000]
    if (m == cl_I(1000000)) {
        m = 100000;
        --k;
    }
    std::string digits = to_text(m);
    std::string frac = digits.substr(1);
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    return out + digits.substr(0, 1) + (frac.empty() ? "" : "." + frac) + "e-" + std::to_string(k);
}

std::string format_value(const cl_RA& x) {
    if (is_integer(x)) return to_text(cln::numerator(x));
    return to_text(cln::numerator(x)) + "/" + to_text(cln::denominator(x)) + " (" + decimal_of(x) +
           ")";
}

}  // namespace

CalcResult evaluate_expression(std::string_view expression) {
    // CLN's numbers share reference-counted storage without atomic counts: one evaluation at
    // a time (environment steps may run on several threads, rl/episodes.h's tool_workers).
    static std::mutex cln_mutex;
    std::lock_guard<std::mutex> lock(cln_mutex);
    CalcResult result;
    if (expression.size() > kCalcMaxChars) {
        result.error = "expression too long (" + std::to_string(expression.size()) +
                       " characters, at most " + std::to_string(kCalcMaxChars) + ")";
        return result;
    }
    if (expression.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        result.error = "empty expression";
        return result;
    }
    try {
        const cl_RA value = Parser(expression).parse();
        result.value = format_value(value);
        result.ok = true;
    } catch (const CalcError& e) {
        result.error = e.message;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {  // CLN reports its own failures as exceptions
        result.error = std::string("cannot evaluate: ") + e.what();
    }
    return result;
}

std::string calculator_tool(std::string_view expression) {
    const CalcResult r = evaluate_expression(expression);
    return r.ok ? r.value : "error: " + r.error;
}

}  // namespace crucible
