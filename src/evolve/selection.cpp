#include "evolve/selection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace crucible::evolve {
namespace {

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

std::vector<double> selection_probabilities(const EvolveOptions& o,
                                            const std::vector<double>& scores,
                                            const std::vector<int64_t>& children) {
    const size_t n = scores.size();
    std::vector<double> w(n, 1.0);
    if (o.selection == "funsearch") {
        const double period = o.funsearch_period;
        const double t =
            o.funsearch_t0 * (1.0 - std::fmod(static_cast<double>(n), period) / period);
        const double top = *std::max_element(scores.begin(), scores.end());
        for (size_t i = 0; i < n; i++) w[i] = std::exp((scores[i] - top) / t);
    } else if (o.selection == "weighted") {
        const double med = median_of(scores);
        std::vector<double> dev(n);
        for (size_t i = 0; i < n; i++) dev[i] = std::fabs(scores[i] - med);
        double mad = median_of(dev);
        if (!(mad > 0)) mad = 1e-12;  // all equal: every normalised score is 0
        for (size_t i = 0; i < n; i++) {
            const double z = o.weighted_lambda * (scores[i] - med) / mad;
            const double sig = 1.0 / (1.0 + std::exp(-z));
            const double kids = i < children.size() ? static_cast<double>(children[i]) : 0.0;
            w[i] = sig / (1.0 + kids);
        }
    } else if (o.selection == "power_law") {
        std::vector<size_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return scores[a] > scores[b]; });
        for (size_t r = 0; r < n; r++) {
            w[order[r]] = std::pow(static_cast<double>(r + 1), -o.power_law_alpha);
        }
    }
    double sum = 0;
    for (double x : w) sum += x;
    if (!(sum > 0) || !std::isfinite(sum)) {
        std::fill(w.begin(), w.end(), 1.0 / static_cast<double>(n));
        return w;
    }
    for (double& x : w) x /= sum;
    return w;
}

size_t sample_index(const std::vector<double>& p, Rng& rng) {
    const double u = rng.uniform();
    double acc = 0;
    for (size_t i = 0; i < p.size(); i++) {
        acc += p[i];
        if (u < acc) return i;
    }
    return p.size() - 1;
}

std::string normalise_code(const std::string& code) {
    std::string out, line;
    const auto flush = [&]() {
        while (!line.empty() && line.back() == ' ') line.pop_back();
        if (!line.empty()) out += line + "\n";
        line.clear();
    };
    bool space = false;
    for (char c : code) {
        if (c == '\n') {
            flush();
            space = false;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            space = true;
        } else {
            if (space && !line.empty()) line += ' ';
            space = false;
            line += c;
        }
    }
    flush();
    return out;
}

std::string code_hash(const std::string& code) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : normalise_code(code)) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return fmt::format("{:016x}", h);
}

double code_similarity(const std::string& a, const std::string& b) {
    const std::string na = normalise_code(a), nb = normalise_code(b);
    if (na == nb) return 1.0;
    const auto grams = [](const std::string& s) {
        std::unordered_set<std::string_view> g;
        for (size_t i = 0; i + 4 <= s.size(); i++) g.insert(std::string_view(s).substr(i, 4));
        return g;
    };
    const auto ga = grams(na), gb = grams(nb);
    if (ga.empty() && gb.empty()) return na == nb ? 1.0 : 0.0;
    size_t inter = 0;
    for (const auto& g : ga) inter += gb.count(g);
    const size_t uni = ga.size() + gb.size() - inter;
    return uni == 0 ? 1.0 : static_cast<double>(inter) / static_cast<double>(uni);
}

}  // namespace crucible::evolve
