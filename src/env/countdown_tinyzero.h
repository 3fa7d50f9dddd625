// Countdown with TinyZero's rules (Jiayi Pan et al., TinyZero, 2025): reach a target with
// + - * / and parentheses, using each given number exactly once; the model shows its work in
// <think> tags and gives the equation in <answer> tags. Reward (TinyZero's compute_score):
// 1 for a correct equation, 0.1 for an answer that is there but wrong (bad characters, wrong
// numbers, does not evaluate, misses the target), 0 for no answer. TinyZero looks for the
// answer only on the last line of the response, in the last <answer>...</answer> there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

struct CountdownProblem {
    std::vector<int> numbers;  // 3 or 4 numbers, 1..99
    int target = 0;            // reachable: some expression over the numbers produces it
};

// The user-facing question and the base-model prompt that opens the <think> block.
std::string countdown_question(const CountdownProblem& p);
std::string countdown_base_prompt(const CountdownProblem& p);

// The first `n_eval` problems of the task's fixed held-out set (distinct, the same for every
// run), then `n_train` training problems drawn with `seed`, never from that set. Throws when
// `n_eval` exceeds the held-out set.
inline constexpr int kCountdownTinyZeroHeldOut = 1000;
void countdown_tinyzero_split(int n_train, int n_eval, uint64_t seed,
                              std::vector<CountdownProblem>* train,
                              std::vector<CountdownProblem>* eval);

// The text inside the last <answer>...</answer> of `text`, if any.
std::optional<std::string> last_answer_tag(std::string_view text);

// Evaluates an arithmetic expression over + - * / and parentheses (doubles); nullopt when it
// does not parse, has other characters, divides by zero or writes a number with a leading
// zero ("07", which Python's eval refuses). Unlike TinyZero's Python eval it has no `**`
// (power) or `//` (floor division): those answers get the format credit only.
// `numbers` receives its integers.
std::optional<double> evaluate_arithmetic(std::string_view expr, std::vector<int>* numbers);

// TinyZero's verdict on a completion: whether its last line holds an <answer> (the format
// credit) and whether that answer is correct.
struct CountdownVerdict {
    bool answered = false;
    bool correct = false;
};
CountdownVerdict countdown_tinyzero_verdict(const CountdownProblem& p, std::string_view completion);

inline constexpr double kCountdownFormatCredit = 0.1;  // TinyZero's format_score

// TinyZero's score: 1 when correct, kCountdownFormatCredit when answered but wrong, else 0.
double countdown_tinyzero_reward(const CountdownProblem& p, std::string_view completion);

}  // namespace crucible
