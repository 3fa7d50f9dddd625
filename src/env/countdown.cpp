#include "env/countdown.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/rng.h"

namespace crucible {

namespace {

// Evaluates "a o b o c ..." with * binding tighter than + and -. Returns false on any
// character outside digits and the three operators, or on a malformed expression.
bool evaluate(const std::string& expr, long* value, std::vector<long>* numbers) {
    std::vector<long> terms;  // signed products, summed at the end
    long product = 0;
    int sign = 1;
    bool have_product = false;
    size_t i = 0;
    auto read_number = [&](long* out) {
        if (i >= expr.size() || !isdigit(static_cast<unsigned char>(expr[i]))) return false;
        long v = 0;
        while (i < expr.size() && isdigit(static_cast<unsigned char>(expr[i]))) {
            v = v * 10 + (expr[i] - '0');
            if (v > 1000000) return false;
            i++;
        }
        numbers->push_back(v);
        *out = v;
        return true;
    };
    long v;
    if (!read_number(&v)) return false;
    product = v;
    have_product = true;
    while (i < expr.size()) {
        const char op = expr[i++];
        if (!read_number(&v)) return false;
        if (op == '*') {
            product *= v;
            if (product > 1000000000000L) return false;  // no valid answer is this large
        } else if (op == '+' || op == '-') {
            terms.push_back(sign * product);
            sign = op == '+' ? 1 : -1;
            product = v;
        } else {
            return false;
        }
    }
    if (have_product) terms.push_back(sign * product);
    long sum = 0;
    for (long t : terms) sum += t;
    *value = sum;
    return true;
}

// Draws `n_eval` distinct held-out problems, then `n_train` training problems whose prompts
// are not held out (training prompts may repeat: it is a stream). The problem space is finite
// (Countdown-lite has ~1,300 distinct prompts), so a split that exhausts it is an error rather
// than an endless loop.
template <typename Draw>
void fill_split(int n_train, int n_eval, Draw& draw, std::vector<PromptCompletion>* train,
                std::vector<PromptCompletion>* eval) {
    std::set<std::string> held_out;
    int rejected_in_a_row = 0;
    auto give_up = [&](const char* what) {
        if (++rejected_in_a_row > 100000) {
            throw Error(std::string("built-in task: ") + what + " (" +
                        std::to_string(held_out.size()) +
                        " distinct held-out prompts); lower the number of held-out examples");
        }
    };
    while (static_cast<int>(eval->size()) < n_eval) {
        PromptCompletion pc = draw();
        if (!held_out.insert(pc.prompt).second) {
            give_up("the task has fewer distinct problems than the held-out split asks for");
            continue;
        }
        rejected_in_a_row = 0;
        eval->push_back(std::move(pc));
    }
    rejected_in_a_row = 0;
    while (static_cast<int>(train->size()) < n_train) {
        PromptCompletion pc = draw();
        if (held_out.count(pc.prompt)) {
            give_up("the held-out split leaves no problems to train on");
            continue;
        }
        rejected_in_a_row = 0;
        train->push_back(std::move(pc));
    }
}

}  // namespace

void countdown_split(int n_train, int n_eval, uint64_t seed, std::vector<PromptCompletion>* train,
                     std::vector<PromptCompletion>* eval) {
    Rng rng(seed);
    const char ops[] = {'+', '-', '*'};
    auto draw = [&]() {
        for (;;) {
            int n[3];
            for (int& x : n) x = 1 + static_cast<int>(rng.below(9));
            std::string expr = std::to_string(n[0]);
            for (int k = 1; k < 3; k++) {
                expr += ops[rng.below(3)];
                expr += std::to_string(n[k]);
            }
            long value;
            std::vector<long> used;
            evaluate(expr, &value, &used);
            if (value < 0 || value > 99) continue;
            std::sort(n, n + 3);
            const std::string prompt = std::to_string(n[0]) + " " + std::to_string(n[1]) + " " +
                                       std::to_string(n[2]) + ">" + std::to_string(value) + ":";
            return PromptCompletion{prompt, expr};
        }
    };
    fill_split(n_train, n_eval, draw, train, eval);
}

double countdown_reward(const std::string& prompt, const std::string& answer) {
    const size_t gt = prompt.find('>');
    const size_t colon = prompt.find(':', gt == std::string::npos ? 0 : gt);
    if (gt == std::string::npos || colon == std::string::npos) return 0.0;
    std::vector<long> given;
    long x = 0;
    bool in_number = false;
    for (size_t i = 0; i < gt; i++) {
        if (isdigit(static_cast<unsigned char>(prompt[i]))) {
            x = x * 10 + (prompt[i] - '0');
            in_number = true;
        } else if (in_number) {
            given.push_back(x);
            x = 0;
            in_number = false;
        }
    }
    if (in_number) given.push_back(x);
    const std::string target_text = prompt.substr(gt + 1, colon - gt - 1);
    if (target_text.empty() || target_text.size() > 9 ||
        target_text.find_first_not_of("0123456789") != std::string::npos) {
        return 0.0;
    }
    const long target = std::stol(target_text);
    std::string expr = answer.substr(0, answer.find('\n'));
    long value;
    std::vector<long> used;
    if (!evaluate(expr, &value, &used)) return 0.0;
    std::sort(given.begin(), given.end());
    std::sort(used.begin(), used.end());
    return used == given && value == target ? 1.0 : 0.0;
}

void addition_split(int n_train, int n_eval, int max_digits, uint64_t seed,
                    std::vector<PromptCompletion>* train, std::vector<PromptCompletion>* eval) {
    Rng rng(seed);
    auto operand = [&]() {
        const int digits = 1 + static_cast<int>(rng.below(max_digits));
        long lo = 1;
        for (int d = 1; d < digits; d++) lo *= 10;
        return static_cast<long>(digits == 1 ? rng.below(10) : lo + rng.below(9 * lo));
    };
    auto draw = [&]() {
        const long a = operand(), b = operand();
        return PromptCompletion{std::to_string(a) + "+" + std::to_string(b) + "=",
                                std::to_string(a + b)};
    };
    fill_split(n_train, n_eval, draw, train, eval);
}

}  // namespace crucible
