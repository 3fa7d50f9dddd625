// The built-in tasks: countdown_reward worked out by hand, and the generated countdown and
// addition splits checked against an evaluator written here (independent of the library's).
#include "env/countdown.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace crucible {
namespace {

// ---- countdown_reward -----------------------------------------------------------------------

TEST(CountdownReward, CorrectAnswers) {
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7"), 1.0);
    // * binds tighter than +: 7 + (5*2) = 17, not (7+5)*2 = 24.
    EXPECT_EQ(countdown_reward("2 5 7>17:", "7+5*2"), 1.0);
    EXPECT_EQ(countdown_reward("2 5 7>24:", "7+5*2"), 0.0);
    // Numbers may be used in any order.
    EXPECT_EQ(countdown_reward("2 5 7>17:", "7+2*5"), 1.0);
    EXPECT_EQ(countdown_reward("2 5 7>70:", "2*5*7"), 1.0);
    EXPECT_EQ(countdown_reward("2 5 7>14:", "2+5+7"), 1.0);
    EXPECT_EQ(countdown_reward("3 4 9>3:", "3*4-9"), 1.0);
    EXPECT_EQ(countdown_reward("3 4 9>3:", "4*3-9"), 1.0);
    // Repeated numbers in the prompt must each be used.
    EXPECT_EQ(countdown_reward("2 2 7>28:", "2*7*2"), 1.0);
    // A zero target.
    EXPECT_EQ(countdown_reward("1 2 3>0:", "1+2-3"), 1.0);
    // Multi-digit numbers.
    EXPECT_EQ(countdown_reward("2 3 10>23:", "10*2+3"), 1.0);
}

TEST(CountdownReward, PrecedenceAndAssociativity) {
    // 8 - 3*2 = 2 with precedence; left to right would give 10.
    EXPECT_EQ(countdown_reward("2 3 8>2:", "8-3*2"), 1.0);
    EXPECT_EQ(countdown_reward("2 3 8>10:", "8-3*2"), 0.0);
    // 8 - 3 - 2 = 3 (left associative); 8 - (3 - 2) would be 7.
    EXPECT_EQ(countdown_reward("2 3 8>3:", "8-3-2"), 1.0);
    EXPECT_EQ(countdown_reward("2 3 8>7:", "8-3-2"), 0.0);
    // 2*3 - 8 = -2, a negative value is never a 0..99 target.
    EXPECT_EQ(countdown_reward("2 3 8>2:", "2*3-8"), 0.0);
}

TEST(CountdownReward, StopsAtTheFirstNewline) {
    EXPECT_EQ(countdown_reward("2 5 7>17:", "2*5+7\nextra"), 1.0);
    EXPECT_EQ(countdown_reward("2 5 7>17:", "2*5+7\n2*5+8"), 1.0);
    EXPECT_EQ(countdown_reward("2 5 7>17:", "2*5+7\n"), 1.0);
    // The answer must be on the first line.
    EXPECT_EQ(countdown_reward("2 5 7>17:", "\n2*5+7"), 0.0);
}

TEST(CountdownReward, WrongAnswers) {
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+8"), 0.0);      // wrong value and number
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5+2+7"), 0.0);      // value 14
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*5+7"), 0.0);      // 5 twice, 2 missing
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7+0"), 0.0);    // extra number
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7*1"), 0.0);    // extra number, value 17
    EXPECT_EQ(countdown_reward("2 5 7>10:", "5*2"), 0.0);        // 7 missing
    EXPECT_EQ(countdown_reward("2 5 7>17:", "abc"), 0.0);        // garbage
    EXPECT_EQ(countdown_reward("2 5 7>17:", ""), 0.0);           // empty
    EXPECT_EQ(countdown_reward("2 5 7>17:", "17"), 0.0);         // just the target
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7 "), 0.0);     // trailing space
    EXPECT_EQ(countdown_reward("2 5 7>17:", " 5*2+7"), 0.0);     // leading space
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5 * 2 + 7"), 0.0);  // spaces
    EXPECT_EQ(countdown_reward("2 5 7>17:", "(5*2)+7"), 0.0);    // parentheses
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7="), 0.0);     // dangling operator
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2++7"), 0.0);     // two operators
    EXPECT_EQ(countdown_reward("2 5 7>17:", "-5*2+7"), 0.0);     // leading sign
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5*2+7/1"), 0.0);    // division
    EXPECT_EQ(countdown_reward("2 5 7>17:", "5x2+7"), 0.0);      // unknown operator
}

TEST(CountdownReward, MalformedPrompts) {
    EXPECT_EQ(countdown_reward("2 5 7 17:", "5*2+7"), 0.0);  // no '>'
    EXPECT_EQ(countdown_reward("2 5 7>17", "5*2+7"), 0.0);   // no ':'
    EXPECT_EQ(countdown_reward("", "5*2+7"), 0.0);
}

// A prompt whose target is not a number scores 0 (it does not throw).
TEST(CountdownReward, NonNumericTargetGivesZero) {
    EXPECT_EQ(countdown_reward("2 5 7>x:", "5*2+7"), 0.0);
    EXPECT_EQ(countdown_reward("2 5 7>:", "5*2+7"), 0.0);
}

// Huge products are rejected before they can overflow (checked under the sanitizer build).
TEST(CountdownReward, HugeProductDoesNotOverflow) {
    EXPECT_EQ(countdown_reward("1 2 3>6:", "999999*999999*999999*999999"), 0.0);
}

// ---- generated splits -----------------------------------------------------------------------

// A countdown prompt "a b c>T:" parsed by hand.
struct ParsedPrompt {
    std::vector<int> numbers;
    int target = -1;
};

bool parse_prompt(const std::string& p, ParsedPrompt* out) {
    // Exactly: digit ' ' digit ' ' digit '>' 1-2 digits ':'.
    if (p.size() < 8 || p.size() > 9) return false;
    for (int k = 0; k < 3; k++) {
        if (!std::isdigit(static_cast<unsigned char>(p[2 * k]))) return false;
        out->numbers.push_back(p[2 * k] - '0');
    }
    if (p[1] != ' ' || p[3] != ' ' || p[5] != '>' || p.back() != ':') return false;
    const std::string t = p.substr(6, p.size() - 7);
    if (t.empty() || (t.size() > 1 && t[0] == '0')) return false;
    for (char ch : t) {
        if (!std::isdigit(static_cast<unsigned char>(ch))) return false;
    }
    out->target = std::stoi(t);
    return true;
}

// Evaluates "d o d o d" (single digits, o in + - *) with * first, independently of the
// library: returns false if the completion has another shape.
bool eval_completion(const std::string& c, int* value, std::vector<int>* digits) {
    if (c.size() != 5) return false;
    int d[3];
    char op[2];
    for (int k = 0; k < 3; k++) {
        if (c[2 * k] < '1' || c[2 * k] > '9') return false;
        d[k] = c[2 * k] - '0';
        digits->push_back(d[k]);
    }
    for (int k = 0; k < 2; k++) {
        op[k] = c[2 * k + 1];
        if (op[k] != '+' && op[k] != '-' && op[k] != '*') return false;
    }
    auto apply = [](int a, char o, int b) { return o == '+' ? a + b : o == '-' ? a - b : a * b; };
    if (op[1] == '*' && op[0] != '*') {
        *value = apply(d[0], op[0], d[1] * d[2]);
    } else {
        *value = apply(apply(d[0], op[0], d[1]), op[1], d[2]);
    }
    return true;
}

TEST(CountdownSplit, EveryExampleIsSolvedByItsCompletion) {
    std::vector<PromptCompletion> train, eval;
    countdown_split(2000, 500, 11, &train, &eval);
    ASSERT_EQ(train.size(), 2000u);
    ASSERT_EQ(eval.size(), 500u);
    std::set<std::string> eval_prompts;
    for (const PromptCompletion& pc : eval) eval_prompts.insert(pc.prompt);
    int n = 0;
    for (const auto* split : {&train, &eval}) {
        for (const PromptCompletion& pc : *split) {
            SCOPED_TRACE(pc.prompt + " " + pc.completion);
            ParsedPrompt pp;
            ASSERT_TRUE(parse_prompt(pc.prompt, &pp));
            EXPECT_TRUE(std::is_sorted(pp.numbers.begin(), pp.numbers.end()));
            for (int x : pp.numbers) {
                EXPECT_GE(x, 1);
                EXPECT_LE(x, 9);
            }
            EXPECT_GE(pp.target, 0);
            EXPECT_LE(pp.target, 99);
            int value = 0;
            std::vector<int> digits;
            ASSERT_TRUE(eval_completion(pc.completion, &value, &digits));
            EXPECT_EQ(value, pp.target);
            std::sort(digits.begin(), digits.end());
            EXPECT_EQ(digits, pp.numbers);
            EXPECT_EQ(countdown_reward(pc.prompt, pc.completion), 1.0);
            if (split == &train) {
                EXPECT_EQ(eval_prompts.count(pc.prompt), 0u);
            }
            n++;
        }
    }
    EXPECT_EQ(n, 2500);
}

// The held-out split is a set of distinct problems: the demo's 200 held-out problems were 183
// distinct prompts before (one drawn three times), which weighs some problems twice in avg@K.
TEST(CountdownSplit, HeldOutPromptsAreDistinctAndDisjointFromTraining) {
    for (uint64_t seed : {1, 2, 3}) {
        std::vector<PromptCompletion> train, eval;
        countdown_split(20000, 200, seed, &train, &eval);  // the demo's sizes
        std::set<std::string> held_out;
        for (const PromptCompletion& pc : eval) held_out.insert(pc.prompt);
        EXPECT_EQ(held_out.size(), 200u) << "seed " << seed;
        for (const PromptCompletion& pc : train) ASSERT_EQ(held_out.count(pc.prompt), 0u);
        train.clear();
        eval.clear();
        addition_split(2000, 300, 2, seed, &train, &eval);
        held_out.clear();
        for (const PromptCompletion& pc : eval) held_out.insert(pc.prompt);
        EXPECT_EQ(held_out.size(), 300u) << "seed " << seed;
        for (const PromptCompletion& pc : train) ASSERT_EQ(held_out.count(pc.prompt), 0u);
    }
}

TEST(CountdownSplit, DeterministicInTheSeed) {
    auto prompts = [](uint64_t seed) {
        std::vector<PromptCompletion> train, eval;
        countdown_split(200, 50, seed, &train, &eval);
        std::vector<std::string> out;
        for (const auto* split : {&eval, &train}) {
            for (const PromptCompletion& pc : *split) out.push_back(pc.prompt + pc.completion);
        }
        return out;
    };
    EXPECT_EQ(prompts(5), prompts(5));
    EXPECT_NE(prompts(5), prompts(6));
}

TEST(CountdownSplit, ZeroSizedSplits) {
    std::vector<PromptCompletion> train, eval;
    countdown_split(0, 0, 1, &train, &eval);
    EXPECT_TRUE(train.empty());
    EXPECT_TRUE(eval.empty());
    countdown_split(3, 0, 1, &train, &eval);
    EXPECT_EQ(train.size(), 3u);
    EXPECT_TRUE(eval.empty());
}

TEST(CountdownAddition, CompletionsAreTheSums) {
    std::vector<PromptCompletion> train, eval;
    addition_split(1000, 200, 3, 2, &train, &eval);
    ASSERT_EQ(train.size(), 1000u);
    ASSERT_EQ(eval.size(), 200u);
    std::set<std::string> eval_prompts;
    for (const PromptCompletion& pc : eval) eval_prompts.insert(pc.prompt);
    bool saw_three_digits = false, saw_one_digit = false;
    for (const auto* split : {&train, &eval}) {
        for (const PromptCompletion& pc : *split) {
            SCOPED_TRACE(pc.prompt + pc.completion);
            // "A+B=" with A and B of 1..3 digits, no leading zeros (except "0").
            const size_t plus = pc.prompt.find('+');
            ASSERT_NE(plus, std::string::npos);
            ASSERT_EQ(pc.prompt.back(), '=');
            const std::string a = pc.prompt.substr(0, plus);
            const std::string b = pc.prompt.substr(plus + 1, pc.prompt.size() - plus - 2);
            long av = 0, bv = 0;
            for (const auto& [s, v] : {std::pair{&a, &av}, std::pair{&b, &bv}}) {
                ASSERT_GE(s->size(), 1u);
                ASSERT_LE(s->size(), 3u);
                ASSERT_TRUE(s->size() == 1 || (*s)[0] != '0');
                for (char ch : *s) {
                    ASSERT_TRUE(ch >= '0' && ch <= '9');
                    *v = *v * 10 + (ch - '0');
                }
                saw_three_digits |= s->size() == 3;
                saw_one_digit |= s->size() == 1;
            }
            // The completion, parsed by hand, is the sum.
            long cv = 0;
            ASSERT_FALSE(pc.completion.empty());
            for (char ch : pc.completion) {
                ASSERT_TRUE(ch >= '0' && ch <= '9');
                cv = cv * 10 + (ch - '0');
            }
            EXPECT_EQ(cv, av + bv);
            EXPECT_TRUE(pc.completion.size() == 1 || pc.completion[0] != '0');
            if (split == &train) {
                EXPECT_EQ(eval_prompts.count(pc.prompt), 0u);
            }
        }
    }
    EXPECT_TRUE(saw_three_digits);
    EXPECT_TRUE(saw_one_digit);
}

TEST(CountdownAddition, HandCheckedSums) {
    // Check the completion against the prompt with arithmetic done here for a few examples.
    std::vector<PromptCompletion> train, eval;
    addition_split(5, 5, 2, 9, &train, &eval);
    for (const PromptCompletion& pc : train) {
        const size_t plus = pc.prompt.find('+');
        const int a = std::stoi(pc.prompt.substr(0, plus));
        const int b = std::stoi(pc.prompt.substr(plus + 1));
        EXPECT_LE(a, 99);
        EXPECT_LE(b, 99);
        EXPECT_EQ(std::stoi(pc.completion), a + b) << pc.prompt;
    }
}

}  // namespace
}  // namespace crucible

namespace crucible {
namespace {

// Countdown-lite has a finite number of distinct prompts; a held-out split larger than that,
// or one that covers them all, must be an error, not an endless loop.
TEST(CountdownSplit, EvalSplitCoveringEveryProblemIsAnError) {
    std::vector<PromptCompletion> train, eval;
    EXPECT_THROW(countdown_split(10, 100000, 1, &train, &eval), Error);
}

}  // namespace
}  // namespace crucible
