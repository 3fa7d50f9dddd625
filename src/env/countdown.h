// Built-in synthetic reasoning tasks, generated from a seed so they need nothing from outside.
//
// Countdown-lite (after TinyZero's Countdown, sized for a small byte-level model): three
// numbers 1-9 shown sorted and a target 0-99 that some expression "a o b o c" with
// o in {+, -, *} (usual precedence) produces. Prompt "2 5 7>17:", answer e.g. "5*2+7".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crucible {

struct PromptCompletion {
    std::string prompt;
    std::string completion;
};

// The built-in tasks' splits. The held-out problems are the first `n_eval` of the task's fixed
// held-out set (distinct, drawn with a fixed seed: the same for every run); the `n_train`
// training problems are drawn with `seed` and never come from that set, so no run trains on
// another run's held-out problems whatever the seeds and held-out sizes. Throws when
// `n_eval` exceeds the held-out set. Replaces the contents of `train` and `eval`.
inline constexpr int kCountdownHeldOut = 300;  // of Countdown-lite's 1,345 distinct prompts
void countdown_split(int n_train, int n_eval, uint64_t seed, std::vector<PromptCompletion>* train,
                     std::vector<PromptCompletion>* eval);

// 1 if `answer` (up to the first newline) is an expression over + - * and parentheses-free
// integers that uses each prompt number exactly once and evaluates to the target; else 0.
double countdown_reward(const std::string& prompt, const std::string& answer);

// Multi-digit addition "123+45=" -> "168", operands with 1..max_digits digits; the split
// follows countdown_split's rules, a+b and b+a counting as one problem. The held-out set
// (min(1,000, a quarter of the pairs)) depends on max_digits: runs that share it share it.
void addition_split(int n_train, int n_eval, int max_digits, uint64_t seed,
                    std::vector<PromptCompletion>* train, std::vector<PromptCompletion>* eval);

}  // namespace crucible
