#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace crucible {

std::vector<double> sampling_distribution(const float* logits, int vocab, const SamplingParams& p) {
    std::vector<double> prob(vocab);
    double mx = -INFINITY;
    for (int i = 0; i < vocab; i++) mx = std::max(mx, (double)logits[i] / p.temperature);
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) {
        prob[i] = std::exp((double)logits[i] / p.temperature - mx);
        sum += prob[i];
    }
    for (double& x : prob) x /= sum;
    const bool filter = (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1.0f || p.min_p > 0.0f;
    if (!filter) return prob;
    // Candidates by decreasing probability (ties by id, so the order is deterministic).
    std::vector<int> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
    int keep = vocab;
    if (p.top_k > 0) keep = std::min(keep, p.top_k);
    if (p.top_p < 1.0f) {
        // The smallest prefix whose mass reaches top_p, renormalised after top-k as HF does.
        double kept_mass = 0.0;
        for (int i = 0; i < keep; i++) kept_mass += prob[order[i]];
        double cum = 0.0;
        int n = 0;
        while (n < keep) {
            cum += prob[order[n]] / kept_mass;
            n++;
            if (cum >= p.top_p) break;
        }
        keep = std::max(n, 1);
    }
    if (p.min_p > 0.0f) {
        const double threshold = p.min_p * prob[order[0]];
        int n = 0;
        while (n < keep && prob[order[n]] >= threshold) n++;
        keep = std::max(n, 1);
    }
    std::vector<double> out(vocab, 0.0);
    double kept = 0.0;
    for (int i = 0; i < keep; i++) kept += prob[order[i]];
    for (int i = 0; i < keep; i++) out[order[i]] = prob[order[i]] / kept;
    return out;
}

int32_t sample_token(const float* logits, int vocab, const SamplingParams& p, Rng& rng) {
    if (p.temperature <= 0.0f) {
        return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
    }
    return draw_token(sampling_distribution(logits, vocab, p), rng.uniform());
}

int32_t draw_token(const std::vector<double>& prob, double u) {
    double cum = 0.0;
    int32_t last = 0;
    for (size_t i = 0; i < prob.size(); i++) {
        if (prob[i] <= 0.0) continue;
        cum += prob[i];
        last = static_cast<int32_t>(i);
        if (u < cum) return last;
    }
    return last;  // rounding left u above the total
}

}  // namespace crucible
