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
    countdown_split(2000, 300, 11, &train, &eval);
    ASSERT_EQ(train.size(), 2000u);
    ASSERT_EQ(eval.size(), 300u);
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
    EXPECT_EQ(n, 2300);
}

// The held-out split is a set of distinct problems (the demo's 200 were 183 distinct prompts
// before, one drawn three times), and it is the task's, not the run's: no run's training, with
// any seed and any held-out size, holds another run's held-out problem (before, SFT with seed 1
// then RL with seed 2 scored RL on 170 of 200 problems SFT had trained on).
TEST(CountdownSplit, HeldOutProblemsAreDistinctAndNeverTrainedOnByAnyRun) {
    auto prompts = [](const std::vector<PromptCompletion>& v) {
        std::set<std::string> out;
        for (const PromptCompletion& pc : v) out.insert(pc.prompt);
        return out;
    };
    std::vector<PromptCompletion> sft_train, sft_eval;
    countdown_split(20000, 200, 1, &sft_train, &sft_eval);  // the demo's SFT split
    EXPECT_EQ(prompts(sft_eval).size(), 200u);
    const std::set<std::string> sft_trained = prompts(sft_train);
    for (uint64_t seed : {1, 2, 3, 7}) {
        for (int n_eval : {50, 200, kCountdownHeldOut}) {
            std::vector<PromptCompletion> train, eval;
            countdown_split(2000, n_eval, seed, &train, &eval);
            const std::set<std::string> held = prompts(eval);
            EXPECT_EQ(held.size(), static_cast<size_t>(n_eval)) << "seed " << seed;
            for (const std::string& p : held)
                ASSERT_EQ(sft_trained.count(p), 0u) << p << " seed " << seed << " n " << n_eval;
            for (const PromptCompletion& pc : train) ASSERT_EQ(held.count(pc.prompt), 0u);
        }
    }
    // Addition: a+b and b+a are one problem.
    auto unordered = [](const std::string& prompt) {
        const size_t plus = prompt.find('+');
        const long a = std::stol(prompt.substr(0, plus)), b = std::stol(prompt.substr(plus + 1));
        return std::to_string(std::min(a, b)) + "+" + std::to_string(std::max(a, b));
    };
    std::vector<PromptCompletion> a_train, a_eval;
    addition_split(5000, 300, 2, 1, &a_train, &a_eval);
    std::set<std::string> held;
    for (const PromptCompletion& pc : a_eval) held.insert(unordered(pc.prompt));
    EXPECT_EQ(held.size(), 300u);
    for (uint64_t seed : {1, 2, 9}) {
        addition_split(5000, 100, 2, seed, &a_train, &a_eval);
        for (const PromptCompletion& pc : a_train)
            ASSERT_EQ(held.count(unordered(pc.prompt)), 0u) << pc.prompt;
    }
    // A held-out size beyond the task's held-out set is an error, not a silent overlap.
    std::vector<PromptCompletion> t, e;
    EXPECT_THROW(countdown_split(10, kCountdownHeldOut + 1, 1, &t, &e), Error);
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
