// The calculator tool (env/calculator): exact rational values worked by hand, precedence and
// associativity, the output format, and an error (quickly) for every hostile input.
#include "env/calculator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace crucible {
namespace {

std::string value_of(const std::string& expression) {
    const CalcResult r = evaluate_expression(expression);
    EXPECT_TRUE(r.ok) << expression << ": " << r.error;
    return r.value;
}

std::string error_of(const std::string& expression) {
    const auto start = std::chrono::steady_clock::now();
    const CalcResult r = evaluate_expression(expression);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 0.5) << expression.substr(0, 80);
    EXPECT_FALSE(r.ok) << expression.substr(0, 80) << " gave " << r.value.substr(0, 80);
    EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
    return r.error;
}

TEST(Calculator, WorkedValues) {
    EXPECT_EQ(value_of("2^10"), "1024");
    EXPECT_EQ(value_of("1/3+1/6"), "1/2 (0.5)");
    EXPECT_EQ(value_of("-(2-5)*4"), "12");
    EXPECT_EQ(value_of("0.1+0.2"), "3/10 (0.3)");  // exact, not 0.30000000000000004
    EXPECT_EQ(value_of("1/3*3"), "1");
    EXPECT_EQ(value_of("(1/3)*3 - 1"), "0");
    EXPECT_EQ(value_of("1.5*2"), "3");
    EXPECT_EQ(value_of(".5 + 1."), "3/2 (1.5)");
    EXPECT_EQ(value_of("  7 / 2 "), "7/2 (3.5)");
    EXPECT_EQ(value_of("2**10"), "1024");  // Python's spelling of ^
    EXPECT_EQ(value_of("(-1/2)^-3"), "-8");
    EXPECT_EQ(value_of("(1/3)^-2"), "9");
    EXPECT_EQ(value_of("0^0"), "1");
    EXPECT_EQ(value_of("-0"), "0");
    EXPECT_EQ(value_of("123456789*987654321"), "121932631112635269");
    // Beyond 64 and 128 bits, still exact: 2^200 and (2^200+1) - 2^200.
    EXPECT_EQ(value_of("2^200"), "1606938044258990275541962092341162602522202993782792835301376");
    EXPECT_EQ(value_of("(2^200+1)-2^200"), "1");
}

TEST(Calculator, PrecedenceAndAssociativity) {
    EXPECT_EQ(value_of("2^3^2"), "512");  // right-associative: 2^(3^2), not (2^3)^2 = 64
    EXPECT_EQ(value_of("(2^3)^2"), "64");
    EXPECT_EQ(value_of("2+3*4"), "14");
    EXPECT_EQ(value_of("(2+3)*4"), "20");
    EXPECT_EQ(value_of("10-4-3"), "3");  // left-associative: (10-4)-3
    EXPECT_EQ(value_of("64/4/2"), "8");  // (64/4)/2
    EXPECT_EQ(value_of("-2^2"), "-4");   // unary minus binds looser than ^
    EXPECT_EQ(value_of("(-2)^2"), "4");
    EXPECT_EQ(value_of("2^-1"), "1/2 (0.5)");  // an exponent may carry a sign
    EXPECT_EQ(value_of("2*-3"), "-6");
    EXPECT_EQ(value_of("+-+-3"), "3");
    EXPECT_EQ(value_of("3*2^2"), "12");  // ^ before *
}

TEST(Calculator, DecimalsAreExactOrRoundedToSixPlaces) {
    EXPECT_EQ(value_of("1/3"), "1/3 (0.333333)");
    EXPECT_EQ(value_of("2/3"), "2/3 (0.666667)");  // half away from zero
    EXPECT_EQ(value_of("-1/8"), "-1/8 (-0.125)");
    EXPECT_EQ(value_of("1.9999999"), "19999999/10000000 (2.000000)");  // rounded: 6 places
    EXPECT_EQ(value_of("12345678/7"), "12345678/7 (1763668.285714)");
    EXPECT_EQ(value_of("1/3000000000"), "1/3000000000 (3.33333e-10)");
    EXPECT_EQ(value_of("0.00000049"), "49/100000000 (4.9e-7)");
    EXPECT_EQ(value_of("-1/2000000"), "-1/2000000 (-0.000001)");  // -0.0000005 rounded away
}

TEST(Calculator, Errors) {
    EXPECT_EQ(error_of("1/0"), "division by zero");
    EXPECT_EQ(error_of("1/(1/3-1/3)"), "division by zero");
    EXPECT_EQ(error_of("0^-1"), "division by zero (0 to a negative power)");
    EXPECT_NE(error_of("2^0.5").find("exponent must be an integer"), std::string::npos);
    EXPECT_EQ(error_of(""), "empty expression");
    EXPECT_EQ(error_of(" \t"), "empty expression");
    EXPECT_EQ(error_of("((1)"), "unclosed '(' at position 1");
    EXPECT_EQ(error_of("(1))"), "unexpected ')' at position 4");
    EXPECT_EQ(error_of("3 4"), "unexpected '4' at position 3");
    EXPECT_EQ(error_of("(2)(3)"), "unexpected '(' at position 4");  // no implicit product
    EXPECT_EQ(error_of("1e3"), "unexpected 'e' at position 2");     // no exponent notation
    EXPECT_EQ(error_of("2x"), "unexpected 'x' at position 2");
    EXPECT_EQ(error_of("x"), "expected a number or '(' but found 'x' at position 1");
    EXPECT_EQ(error_of("1**"), "unexpected end of expression");
    EXPECT_EQ(error_of("2^^3"), "expected a number or '(' but found '^' at position 3");
    EXPECT_EQ(error_of("1..2"), "second decimal point '.' at position 3");
    EXPECT_EQ(error_of("."), "expected a number but found '.' at position 1");
    EXPECT_EQ(error_of("2\xc3\x97 3"), "unexpected character at position 2");  // U+00D7
    EXPECT_EQ(error_of("sqrt(2)"), "expected a number or '(' but found 's' at position 1");
    EXPECT_EQ(calculator_tool("1/0"), "error: division by zero");
    EXPECT_EQ(calculator_tool("6*7"), "42");
}

TEST(Calculator, HostileInputsFailQuickly) {
    EXPECT_EQ(error_of("9^9^9^9"), "exponent too large (at most 10000 in size)");
    EXPECT_EQ(error_of("999999^999999"), "exponent too large (at most 10000 in size)");
    EXPECT_EQ(error_of("2^10000"), "number too large (more than 500 digits)");
    EXPECT_EQ(error_of("10^500"), "number too large (more than 500 digits)");
    EXPECT_EQ(error_of("1/10^600"), "number too large (more than 500 digits)");
    EXPECT_EQ(value_of("10^499").size(), 500u);  // the bound itself is allowed
    std::string tower;
    for (int i = 0; i < 40; ++i) tower += "2^";
    EXPECT_EQ(error_of(tower + "1"), "exponent too large (at most 10000 in size)");
    const std::string nines(499, '9');
    EXPECT_EQ(error_of(nines + "*" + nines), "number too large (more than 500 digits)");
    EXPECT_NE(error_of(std::string(501, '7')).find("number too long"), std::string::npos);
    EXPECT_NE(error_of("0." + std::string(600, '0') + "1").find("number too long"),
              std::string::npos);
    // Repeated squaring stays under the bound at every step until the last one.
    EXPECT_EQ(error_of("((((((((((2^2)^2)^2)^2)^2)^2)^2)^2)^2)^2)^2"),
              "number too large (more than 500 digits)");
    // 10,000 nested parentheses (past the length bound) and within it 1,000 (past the depth).
    EXPECT_EQ(error_of(std::string(10000, '(') + "1" + std::string(10000, ')')),
              "expression too long (20001 characters, at most 2000)");
    EXPECT_EQ(error_of(std::string(900, '(') + "1" + std::string(900, ')')),
              "expression nested too deeply (more than 64 levels)");
    EXPECT_EQ(error_of(std::string(100, '-') + "1"),
              "expression nested too deeply (more than 64 levels)");
    EXPECT_EQ(value_of(std::string(30, '(') + "1" + std::string(30, ')')), "1");
    EXPECT_EQ(error_of(std::string(1 << 20, '1')),
              "expression too long (1048576 characters, at most 2000)");
    std::string sum;
    for (int i = 0; i < 999; ++i) sum += "1+";
    EXPECT_EQ(value_of(sum + "1"), "1000");
    EXPECT_EQ(error_of(std::string("1+\0"
                                   "2",
                                   4)),
              "expected a number or '(' but found character at position 3");
}

}  // namespace
}  // namespace crucible
