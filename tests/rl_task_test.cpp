// RL tasks: TinyZero's Countdown rules worked by hand, the generated problems' invariants, and
// JSONL task files (scoring through the eval verifiers; errors name file, line and field).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "env/countdown_tinyzero.h"
#include "reward/verify/verifiers.h"
#include "rl/rl_config.h"
#include "rl/task.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

TEST(CountdownTinyZero, RewardFollowsTinyZerosRules) {
    const CountdownProblem p{{3, 5, 7}, 22};
    EXPECT_EQ(countdown_tinyzero_reward(p, "<think>3*5=15</think> <answer>3*5+7</answer>"), 1.0);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer> (7 + 3 * 5) </answer>"), 1.0);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>(3+5)*7</answer>"), 0.1);     // 56
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7+0</answer>"), 0.1);     // extra number
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>5*5-3</answer>"), 0.1);       // 5 twice, no 7
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7.0</answer>"), 0.1);     // not integers
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7 = 22</answer>"), 0.1);  // '=' not allowed
    EXPECT_EQ(countdown_tinyzero_reward(p, "the answer is 3*5+7"), 0.0);          // no tags
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7"), 0.0);                // unclosed
    // The last <answer> counts.
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>1</answer> no: <answer>7+5*3</answer>"), 1.0);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>7+5*3</answer> no: <answer>1</answer>"), 0.1);
    // Only the last line of the response counts, as in TinyZero's extract_solution (its
    // split('\n')[-1]): an answer followed by another line is not read.
    EXPECT_EQ(countdown_tinyzero_reward(p, "<think>a\nb</think>\n<answer>3*5+7</answer>"), 1.0);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7</answer>\nso that is it"), 0.0);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7</answer>\n<answer>1</answer>"), 0.1);
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5\n+7</answer>"), 0.0);  // spans a line
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>3*5+7</answer>\n"), 0.0);  // last line empty
    // A leading zero is a syntax error in TinyZero's Python eval; zero itself is not.
    EXPECT_EQ(countdown_tinyzero_reward(p, "<answer>07+3*5</answer>"), 0.1);
    EXPECT_EQ(countdown_tinyzero_reward(CountdownProblem{{0, 3, 7}, 21}, "<answer>00+3*7</answer>"),
              1.0);
    const CountdownVerdict v = countdown_tinyzero_verdict(p, "<answer>3*5-7</answer>");
    EXPECT_TRUE(v.answered);
    EXPECT_FALSE(v.correct);
    // Division is real division; division by zero does not evaluate.
    const CountdownProblem q{{6, 3, 4}, 8};
    EXPECT_EQ(countdown_tinyzero_reward(q, "<answer>6/3*4</answer>"), 1.0);
    EXPECT_EQ(countdown_tinyzero_reward(q, "<answer>4/(3-3)*6</answer>"), 0.1);
    const CountdownProblem r{{7, 2, 9}, 1};  // 7/2 = 3.5 -> 9 - 2*3.5 ... (9-7)/2 = 1
    EXPECT_EQ(countdown_tinyzero_reward(r, "<answer>(9-7)/2</answer>"), 1.0);
}

TEST(CountdownTinyZero, ArithmeticParser) {
    std::vector<int> nums;
    EXPECT_DOUBLE_EQ(*evaluate_arithmetic("2+3*4-(6/4)", &nums), 12.5);
    EXPECT_EQ(nums, (std::vector<int>{2, 3, 4, 6, 4}));
    EXPECT_DOUBLE_EQ(*evaluate_arithmetic("-(2-5)*2", &nums), 6.0);
    EXPECT_FALSE(evaluate_arithmetic("2+", &nums).has_value());
    EXPECT_FALSE(evaluate_arithmetic("(2+3", &nums).has_value());
    EXPECT_FALSE(evaluate_arithmetic("2 3", &nums).has_value());
    EXPECT_FALSE(evaluate_arithmetic("2^3", &nums).has_value());
    EXPECT_FALSE(evaluate_arithmetic("", &nums).has_value());
    EXPECT_FALSE(evaluate_arithmetic(std::string(1000, '(') + "1", &nums).has_value());
}

TEST(CountdownTinyZero, SplitIsDisjointDeterministicAndInRange) {
    std::vector<CountdownProblem> train, eval, train2, eval2;
    countdown_tinyzero_split(300, 50, 5, &train, &eval);
    countdown_tinyzero_split(300, 50, 5, &train2, &eval2);
    ASSERT_EQ(train.size(), 300u);
    ASSERT_EQ(eval.size(), 50u);
    auto key = [](const CountdownProblem& p) {
        std::vector<int> n = p.numbers;
        std::sort(n.begin(), n.end());
        std::string k;
        for (int x : n) k += std::to_string(x) + ",";
        return k + std::to_string(p.target);
    };
    std::set<std::string> held;
    for (size_t i = 0; i < eval.size(); i++) {
        held.insert(key(eval[i]));
        EXPECT_EQ(key(eval[i]), key(eval2[i]));
    }
    EXPECT_EQ(held.size(), eval.size());  // distinct
    // The held-out set is the task's: another seed's training never holds it.
    std::vector<CountdownProblem> train3, eval3;
    countdown_tinyzero_split(3000, 50, 6, &train3, &eval3);
    for (size_t i = 0; i < eval.size(); i++) EXPECT_EQ(key(eval3[i]), key(eval[i]));
    for (const auto& p : train3) EXPECT_EQ(held.count(key(p)), 0u);
    for (const auto& p : train) {
        EXPECT_EQ(held.count(key(p)), 0u);
        EXPECT_TRUE(p.numbers.size() == 3 || p.numbers.size() == 4);
        for (int x : p.numbers) EXPECT_TRUE(x >= 1 && x <= 99);
        EXPECT_TRUE(p.target >= 1 && p.target <= 999);
    }
    // The prompt names every number and the target, and asks for <answer> tags.
    const std::string prompt = countdown_base_prompt(eval[0]);
    EXPECT_NE(prompt.find(std::to_string(eval[0].target)), std::string::npos);
    EXPECT_NE(prompt.find("<answer>"), std::string::npos);
}

TEST(RlTask, JsonlItemsAreScoredByTheirVerifiers) {
    testutil::TempDir dir;
    const auto file = dir.write(
        "data.jsonl",
        "{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n"
        "{\"prompt\": \"half of 1\", \"answer\": 0.5, \"verifier\": \"numeric\", \"id\": 7}\n"
        "\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x?\"}], \"answer\": "
        "\"\\\\frac{1}{2}\","
        " \"verifier\": \"math\"}\n");
    Config c(kRlConfigDefaults);
    c.set("task.name=jsonl");
    c.set("task.data=" + file.string());
    const TextTokenizer tok{ByteTokenizer()};
    const rl::Task task = rl::load_task(c, tok);
    ASSERT_EQ(task.train.size(), 3u);
    EXPECT_EQ(task.train[1].id, "7");
    EXPECT_EQ(task.score(task.train[0], "4").correct, 1.0);
    EXPECT_EQ(task.score(task.train[0], "5").correct, 0.0);
    EXPECT_EQ(task.score(task.train[1], "0.50").correct, 1.0);
    EXPECT_EQ(task.score(task.train[2], "so \\boxed{0.5}").correct, 1.0);
    EXPECT_FALSE(task.has_format_credit);
    EXPECT_NE(task.train[2].prompt.find("<|im_start|>user"), std::string::npos);
}

// A rubric-only line has no gold answer, so it has no `correct` at all: the empty completion
// (which `exact` against "" used to call a match) is neither right nor wrong. An explicitly
// empty answer is refused rather than taken as gold.
TEST(RlTask, ARubricOnlyItemHasNoCorrectness) {
    testutil::TempDir dir;
    const std::string rubric =
        "\"rubric\": [{\"criterion\": \"says hi\", \"kind\": \"regex\", \"pattern\": "
        "\"hi\", \"points\": 1}]";
    const auto file =
        dir.write("r.jsonl", "{\"prompt\": \"a\", " + rubric +
                                 "}\n{\"prompt\": \"b\", \"answer\": null, " + rubric +
                                 "}\n{\"prompt\": \"c\", \"answer\": "
                                 "\"x\", " +
                                 rubric + "}\n");
    Config c(kRlConfigDefaults);
    c.set("task.name=jsonl");
    c.set("task.data=" + file.string());
    const TextTokenizer tok{ByteTokenizer()};
    const rl::Task task = rl::load_task(c, tok);
    ASSERT_EQ(task.train.size(), 3u);
    for (int i : {0, 1}) {
        EXPECT_FALSE(task.train[i].has_gold);
        for (const char* text : {"", " ", "anything"})
            EXPECT_FALSE(task.score(task.train[i], text).correct.has_value()) << i << text;
    }
    EXPECT_TRUE(task.train[2].has_gold);
    EXPECT_EQ(task.score(task.train[2], "x").correct, 1.0);
    EXPECT_EQ(task.score(task.train[2], "").correct, 0.0);
    // The exact verifier never matches an empty gold, wherever it is called from.
    EXPECT_FALSE(eval::verify("exact", "", ""));
    EXPECT_FALSE(eval::verify("exact", "  ", " "));
    const auto empty = dir.write("e.jsonl", "{\"prompt\": \"a\", \"answer\": \" \"}\n");
    c.set("task.data=" + empty.string());
    const std::string e = testutil::error_of([&] { rl::load_task(c, tok); });
    EXPECT_NE(e.find("e.jsonl:1"), std::string::npos) << e;
    EXPECT_NE(e.find("answer"), std::string::npos) << e;
}

// Countdown (TinyZero's rules) keeps correctness and its 0.1 format credit apart.
TEST(RlTask, CountdownSeparatesCorrectnessFromFormatCredit) {
    Config c(kRlConfigDefaults);
    c.set("task.name=countdown");
    c.set("task.train_examples=10");
    c.set("task.eval_examples=5");
    const TextTokenizer tok{ByteTokenizer()};
    const rl::Task task = rl::load_task(c, tok);
    EXPECT_TRUE(task.has_format_credit);
    const rl::TaskScore wrong = task.score(task.train[0], "<answer>1+1</answer>");
    EXPECT_EQ(wrong.correct, 0.0);
    EXPECT_EQ(wrong.format, 0.1);
    const rl::TaskScore none = task.score(task.train[0], "no answer");
    EXPECT_EQ(none.correct, 0.0);
    EXPECT_EQ(none.format, 0.0);
}

TEST(RlTask, BadJsonlLinesNameFileLineAndField) {
    testutil::TempDir dir;
    auto error_for = [&](const std::string& text) {
        const auto file = dir.write("bad.jsonl", text);
        Config c(kRlConfigDefaults);
        c.set("task.name=jsonl");
        c.set("task.data=" + file.string());
        const TextTokenizer tok{ByteTokenizer()};
        return testutil::error_of([&] { rl::load_task(c, tok); });
    };
    std::string e = error_for("{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": 3}\n");
    EXPECT_NE(e.find("bad.jsonl:2"), std::string::npos) << e;
    EXPECT_NE(e.find("prompt"), std::string::npos) << e;
    e = error_for("{\"prompt\": \"a\"}\n");
    EXPECT_NE(e.find("bad.jsonl:1"), std::string::npos) << e;
    EXPECT_NE(e.find("answer"), std::string::npos) << e;
    e = error_for("{\"prompt\": \"a\", \"answer\": \"b\", \"verifier\": \"fuzzy\"}\n");
    EXPECT_NE(e.find("verifier"), std::string::npos) << e;
    e = error_for("not json\n");
    EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
}

}  // namespace
}  // namespace crucible
