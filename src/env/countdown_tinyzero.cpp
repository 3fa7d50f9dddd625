#include "env/countdown_tinyzero.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/rng.h"

namespace crucible {

std::string countdown_question(const CountdownProblem& p) {
    std::string nums;
    for (size_t i = 0; i < p.numbers.size(); i++) {
        nums += (i ? ", " : "") + std::to_string(p.numbers[i]);
    }
    return "Using the numbers [" + nums + "], create an equation that equals " +
           std::to_string(p.target) +
           ". You can use basic arithmetic operations (+, -, *, /) and each number can only be "
           "used once. Show your work in <think> </think> tags. And return the final answer in "
           "<answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.";
}

std::string countdown_base_prompt(const CountdownProblem& p) {
    return "A conversation between User and Assistant. The user asks a question, and the "
           "Assistant solves it. The Assistant first thinks about the reasoning process and "
           "then gives the answer.\nUser: " +
           countdown_question(p) + "\nAssistant: Let me solve this step by step.\n<think>";
}

namespace {

// A random expression tree over the numbers; nullopt when a division is not exact or an
// intermediate leaves 1..9999.
std::optional<long> random_value(std::vector<long> values, Rng& rng) {
    while (values.size() > 1) {
        const size_t i = rng.below(values.size());
        size_t j = rng.below(values.size() - 1);
        if (j >= i) j++;
        const long a = values[i], b = values[j];
        long r = 0;
        switch (rng.below(4)) {
            case 0:
                r = a + b;
                break;
            case 1:
                r = a - b;
                break;
            case 2:
                r = a * b;
                break;
            default:
                if (b == 0 || a % b != 0) return std::nullopt;
                r = a / b;
        }
        if (r < 1 || r > 9999) return std::nullopt;
        values.erase(values.begin() + std::max(i, j));
        values.erase(values.begin() + std::min(i, j));
        values.push_back(r);
    }
    return values[0];
}

CountdownProblem draw_problem(Rng& rng) {
    for (;;) {
        CountdownProblem p;
        const int n = 3 + static_cast<int>(rng.below(2));
        std::vector<long> values;
        for (int k = 0; k < n; k++) {
            p.numbers.push_back(1 + static_cast<int>(rng.below(99)));
            values.push_back(p.numbers.back());
        }
        const auto v = random_value(values, rng);
        if (!v || *v > 999) continue;
        p.target = static_cast<int>(*v);
        return p;
    }
}

std::string key_of(const CountdownProblem& p) {
    std::vector<int> sorted = p.numbers;
    std::sort(sorted.begin(), sorted.end());
    std::string k;
    for (int x : sorted) k += std::to_string(x) + ",";
    return k + ">" + std::to_string(p.target);
}

// Recursive descent: expr = term (('+'|'-') term)*, term = factor (('*'|'/') factor)*,
// factor = number | '(' expr ')' | '-' factor.
struct Parser {
    std::string_view s;
    size_t i = 0;
    std::vector<int>* numbers;
    bool ok = true;
    int depth = 0;

    void skip() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) i++;
    }
    double factor() {
        skip();
        if (i >= s.size() || ++depth > 200) return ok = false, 0.0;
        double v = 0.0;
        if (s[i] == '(') {
            i++;
            v = expr();
            skip();
            if (i >= s.size() || s[i] != ')') return ok = false, 0.0;
            i++;
        } else if (s[i] == '-') {
            i++;
            v = -factor();
        } else if (std::isdigit(static_cast<unsigned char>(s[i]))) {
            // Python's eval (TinyZero's) rejects a leading zero ("07"), except in zero ("00").
            if (s[i] == '0') {
                size_t j = i;
                while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) j++;
                if (s.substr(i, j - i).find_first_not_of('0') != std::string_view::npos)
                    return ok = false, 0.0;
            }
            long n = 0;
            while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
                n = std::min<long>(n * 10 + (s[i] - '0'), 1000000000L);
                i++;
            }
            if (i < s.size() && s[i] == '.') return ok = false, 0.0;  // integers only
            numbers->push_back(static_cast<int>(n));
            v = static_cast<double>(n);
        } else {
            return ok = false, 0.0;
        }
        depth--;
        return v;
    }
    double term() {
        double v = factor();
        for (;;) {
            skip();
            if (!ok || i >= s.size() || (s[i] != '*' && s[i] != '/')) return v;
            const char op = s[i++];
            const double r = factor();
            if (op == '/' && r == 0.0) return ok = false, 0.0;
            v = op == '*' ? v * r : v / r;
        }
    }
    double expr() {
        double v = term();
        for (;;) {
            skip();
            if (!ok || i >= s.size() || (s[i] != '+' && s[i] != '-')) return v;
            const char op = s[i++];
            const double r = term();
            v = op == '+' ? v + r : v - r;
        }
    }
};

}  // namespace

void countdown_tinyzero_split(int n_train, int n_eval, uint64_t seed,
                              std::vector<CountdownProblem>* train,
                              std::vector<CountdownProblem>* eval) {
    eval->clear();
    train->clear();
    if (n_eval > kCountdownTinyZeroHeldOut) {
        throw Error("countdown: " + std::to_string(n_eval) +
                    " held-out problems asked for, but the task's fixed held-out set has " +
                    std::to_string(kCountdownTinyZeroHeldOut));
    }
    // The held-out set is fixed (its own seed, the same for every run); training problems
    // come from the run's seed and never from that set (as countdown_split, src/env/countdown.h).
    Rng held_rng(Rng::mix(0x4E1D0u, 0xC0DE7));
    std::set<std::string> held_out;
    while ((int)held_out.size() < kCountdownTinyZeroHeldOut) {
        CountdownProblem p = draw_problem(held_rng);
        if (held_out.insert(key_of(p)).second && (int)eval->size() < n_eval) eval->push_back(p);
    }
    Rng rng(Rng::mix(seed, 0xC0DE7));
    while ((int)train->size() < n_train) {
        CountdownProblem p = draw_problem(rng);
        if (!held_out.count(key_of(p))) train->push_back(p);
    }
}

std::optional<std::string> last_answer_tag(std::string_view text) {
    const std::string_view open = "<answer>", close = "</answer>";
    std::optional<std::string> last;
    size_t from = 0;
    for (;;) {
        const size_t a = text.find(open, from);
        if (a == std::string_view::npos) break;
        const size_t b = text.find(close, a + open.size());
        if (b == std::string_view::npos) break;
        last = std::string(text.substr(a + open.size(), b - a - open.size()));
        from = b + close.size();
    }
    return last;
}

std::optional<double> evaluate_arithmetic(std::string_view expr, std::vector<int>* numbers) {
    for (char c : expr) {
        if (!std::isdigit(static_cast<unsigned char>(c)) && !std::strchr("+-*/(). \t\n", c)) {
            return std::nullopt;
        }
    }
    Parser p{expr, 0, numbers};
    const double v = p.expr();
    p.skip();
    if (!p.ok || p.i != expr.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

CountdownVerdict countdown_tinyzero_verdict(const CountdownProblem& p,
                                            std::string_view completion) {
    // TinyZero's extract_solution keeps only the last line of the response, then takes the
    // last <answer> on it: an answer given earlier and followed by more text does not count.
    const size_t nl = completion.rfind('\n');
    const std::string_view last_line =
        nl == std::string_view::npos ? completion : completion.substr(nl + 1);
    const auto answer = last_answer_tag(last_line);
    CountdownVerdict v;
    if (!answer) return v;
    v.answered = true;
    std::vector<int> used;
    const auto value = evaluate_arithmetic(*answer, &used);
    if (!value) return v;
    std::vector<int> given = p.numbers;
    std::sort(used.begin(), used.end());
    std::sort(given.begin(), given.end());
    v.correct = used == given && std::abs(*value - p.target) < 1e-5;
    return v;
}

double countdown_tinyzero_reward(const CountdownProblem& p, std::string_view completion) {
    const CountdownVerdict v = countdown_tinyzero_verdict(p, completion);
    return v.correct ? 1.0 : v.answered ? kCountdownFormatCredit : 0.0;
}

}  // namespace crucible
