#include "evolve/operators.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "evolve/problem.h"

namespace crucible::evolve {
namespace {

bool ident_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

std::string blank_literals(const std::string& code, const std::vector<NumericLiteral>& lits) {
    std::string out;
    size_t pos = 0;
    for (const auto& l : lits) {
        out += code.substr(pos, l.begin - pos) + "#";
        pos = l.begin + l.size;
    }
    return out + code.substr(pos);
}

std::string format_value(double v, bool is_float) {
    if (!is_float) return std::to_string(static_cast<long long>(std::llround(v)));
    std::string s = fmt::format("{:.8g}", v);
    if (s.find_first_of(".eE") == std::string::npos) s += ".0";
    return s;
}

}  // namespace

std::vector<NumericLiteral> find_literals(const std::string& code) {
    std::string err;
    std::vector<NumericLiteral> out;
    for (const auto& [lo, hi] : evolve_blocks(code, &err)) {
        size_t i = lo;
        while (i < hi) {
            const char c = code[i];
            const bool starts =
                std::isdigit(static_cast<unsigned char>(c)) ||
                (c == '.' && i + 1 < hi && std::isdigit(static_cast<unsigned char>(code[i + 1])));
            if (!starts || (i > lo && ident_char(code[i - 1]))) {
                // Skip the rest of an identifier so its digits are not taken as literals.
                if (ident_char(c)) {
                    while (i < hi && ident_char(code[i])) i++;
                } else {
                    i++;
                }
                continue;
            }
            size_t j = i;
            bool is_float = false;
            while (j < hi && std::isdigit(static_cast<unsigned char>(code[j]))) j++;
            if (j < hi && code[j] == '.') {
                is_float = true;
                j++;
                while (j < hi && std::isdigit(static_cast<unsigned char>(code[j]))) j++;
            }
            if (j < hi && (code[j] == 'e' || code[j] == 'E')) {
                size_t k = j + 1;
                if (k < hi && (code[k] == '+' || code[k] == '-')) k++;
                if (k < hi && std::isdigit(static_cast<unsigned char>(code[k]))) {
                    while (k < hi && std::isdigit(static_cast<unsigned char>(code[k]))) k++;
                    j = k;
                    is_float = true;
                }
            }
            // A literal glued to letters (0x1F, 10f, 3L) is left alone.
            if (j < hi && (std::isalpha(static_cast<unsigned char>(code[j])) || code[j] == '_')) {
                while (j < hi && ident_char(code[j])) j++;
                i = j;
                continue;
            }
            const std::string text = code.substr(i, j - i);
            out.push_back({i, j - i, std::strtod(text.c_str(), nullptr), is_float});
            i = j;
        }
    }
    return out;
}

OperatorResult offline_mutate(const std::string& parent, const std::vector<std::string>& others,
                              double sigma, int max_mutations, double crossover_rate, Rng& rng) {
    OperatorResult r;
    auto lits = find_literals(parent);
    if (lits.empty()) {
        r.description = "no numeric literal inside the EVOLVE-BLOCK to mutate";
        return r;
    }
    std::vector<double> values;
    for (const auto& l : lits) values.push_back(l.value);
    std::vector<std::string> parts;

    if (crossover_rate > 0 && rng.uniform() < crossover_rate) {
        const std::string shape = blank_literals(parent, lits);
        std::vector<size_t> compatible;
        for (size_t k = 0; k < others.size(); k++) {
            const auto ol = find_literals(others[k]);
            if (ol.size() == lits.size() && blank_literals(others[k], ol) == shape &&
                others[k] != parent) {
                compatible.push_back(k);
            }
        }
        if (!compatible.empty()) {
            const auto ol = find_literals(others[compatible[rng.below(compatible.size())]]);
            int taken = 0;
            for (size_t i = 0; i < lits.size(); i++) {
                if (rng.uniform() < 0.5) {
                    values[i] = ol[i].value;
                    taken++;
                }
            }
            r.crossover = true;
            parts.push_back("crossover: " + std::to_string(taken) + " of " +
                            std::to_string(lits.size()) + " literals from the other parent");
        }
    }
    // Mutations can cancel out (2 -> 1 -> 2): mutate again until the code changes.
    std::string code = parent;
    for (int attempt = 0; attempt < 10 && code == parent; attempt++) {
        const int n =
            1 + static_cast<int>(rng.below(static_cast<uint64_t>(std::max(1, max_mutations))));
        for (int m = 0; m < n; m++) {
            const size_t i = rng.below(lits.size());
            const double old = values[i];
            double v;
            if (lits[i].is_float) {
                v = std::fabs(old + sigma * std::max(std::fabs(old), 0.1) * rng.normal());
            } else {
                const double step =
                    std::max(1.0, std::round(std::fabs(sigma * old * rng.normal())));
                v = std::max(0.0, old + (rng.uniform() < 0.5 ? -step : step));
            }
            values[i] = v;
            parts.push_back(fmt::format("mutate literal {}: {} -> {}", i,
                                        format_value(old, lits[i].is_float),
                                        format_value(v, lits[i].is_float)));
        }
        code.clear();
        size_t pos = 0;
        for (size_t i = 0; i < lits.size(); i++) {
            code += parent.substr(pos, lits[i].begin - pos);
            code += values[i] == lits[i].value ? parent.substr(lits[i].begin, lits[i].size)
                                               : format_value(values[i], lits[i].is_float);
            pos = lits[i].begin + lits[i].size;
        }
        code += parent.substr(pos);
    }
    r.code = code;
    r.ok = code != parent;
    for (const auto& p : parts) r.description += (r.description.empty() ? "" : "\n") + p;
    if (!r.ok) r.description += "\n(no change)";
    return r;
}

}  // namespace crucible::evolve
