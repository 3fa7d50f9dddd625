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

// The seed of every built-in task's held-out stream: fixed, so that the held-out set is a
// property of the task, not of a run.
constexpr uint64_t kHeldOutSeed = 0x4E1D0u;

// A built-in split. The held-out pool is the first `pool_size` distinct problems (by `key`) of
// a stream with a fixed seed, the same for every run; the held-out split is its first
// `n_eval`. Training problems come from a stream seeded by `seed` and never fall in the pool,
// so no run's training (any seed, any held-out size up to the pool) holds another run's
// held-out problem: SFT then RL with other seeds or sizes still scores on unseen problems.
// Training prompts may repeat (it is a stream). A split the task cannot fill is an error
// rather than an endless loop.
template <typename Draw, typename Key>
void fill_split(int n_train, int n_eval, int pool_size, uint64_t seed, Draw draw, Key key,
                std::vector<PromptCompletion>* train, std::vector<PromptCompletion>* eval) {
    train->clear();
    eval->clear();
    if (n_eval > pool_size) {
        throw Error("built-in task: " + std::to_string(n_eval) +
                    " held-out problems asked for, but the task's fixed held-out set has " +
                    std::to_string(pool_size) + "; lower the number of held-out examples");
    }
    std::set<std::string> held_out;
    int rejected_in_a_row = 0;
    auto give_up = [&](const char* what) {
        if (++rejected_in_a_row > 100000) {
            throw Error(std::string("built-in task: ") + what + " (" +
                        std::to_string(held_out.size()) + " distinct held-out problems)");
        }
    };
    Rng held_rng(kHeldOutSeed);
    while (static_cast<int>(held_out.size()) < pool_size) {
        PromptCompletion pc = draw(held_rng);
        if (!held_out.insert(key(pc)).second) {
            give_up("the task has fewer distinct problems than its held-out set");
            continue;
        }
        rejected_in_a_row = 0;
        if (static_cast<int>(eval->size()) < n_eval) eval->push_back(std::move(pc));
    }
    rejected_in_a_row = 0;
    Rng rng(seed);
    while (static_cast<int>(train->size()) < n_train) {
        PromptCompletion pc = draw(rng);
        if (held_out.count(key(pc))) {
            give_up("the held-out set leaves no problems to train on");
            continue;
        }
        rejected_in_a_row = 0;
        train->push_back(std::move(pc));
    }
}

}  // namespace

void countdown_split(int n_train, int n_eval, uint64_t seed, std::vector<PromptCompletion>* train,
                     std::vector<PromptCompletion>* eval) {
    const char ops[] = {'+', '-', '*'};
    auto draw = [&](Rng& rng) {
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
    // 300 of Countdown-lite's 1,345 distinct prompts are held out.
    fill_split(
        n_train, n_eval, kCountdownHeldOut, seed, draw,
        [](const PromptCompletion& pc) { return pc.prompt; }, train, eval);
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
    auto draw = [max_digits](Rng& rng) {
        auto operand = [&]() {
            const int digits = 1 + static_cast<int>(rng.below(max_digits));
            long lo = 1;
            for (int d = 1; d < digits; d++) lo *= 10;
            return static_cast<long>(digits == 1 ? rng.below(10) : lo + rng.below(9 * lo));
        };
        const long a = operand(), b = operand();
        return PromptCompletion{std::to_string(a) + "+" + std::to_string(b) + "=",
                                std::to_string(a + b)};
    };
    // A problem and its commuted twin are one problem: holding out a+b holds out b+a.
    auto key = [](const PromptCompletion& pc) {
        const size_t plus = pc.prompt.find('+');
        const long a = std::stol(pc.prompt.substr(0, plus));
        const long b = std::stol(pc.prompt.substr(plus + 1));
        return std::to_string(std::min(a, b)) + "+" + std::to_string(std::max(a, b));
    };
    // At most a quarter of the unordered pairs (and 1,000) are held out.
    double operands = 1;
    for (int d = 0; d < max_digits && operands < 1e6; d++) operands *= 10;
    const int pool = static_cast<int>(std::min(1000.0, operands * (operands + 1) / 8));
    fill_split(n_train, n_eval, pool, seed, draw, key, train, eval);
}

}  // namespace crucible
