// entropy_forward (the policy's per-token entropy the RL trainer logs) against values worked by
// hand on small rows and against a naive double-precision softmax on random rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace crucible::kernels {
namespace {

// -sum_v p_v log p_v with p = softmax(row), every step in double, terms with p = 0 left out.
double naive_entropy(const float* row, int V) {
    double mx = row[0];
    for (int v = 1; v < V; v++) mx = std::max(mx, double(row[v]));
    std::vector<double> p(V);
    double z = 0.0;
    for (int v = 0; v < V; v++) z += p[v] = std::exp(double(row[v]) - mx);
    double h = 0.0;
    for (int v = 0; v < V; v++) {
        const double q = p[v] / z;
        if (q > 0.0) h -= q * std::log(q);
    }
    return h;
}

TEST(EntropyKernel, UniformLogitsGiveLogVExactly) {
    // Every shifted logit is 0, every exp 1: Z = V and the second term is 0, so H = log V with
    // no rounding at all, whatever the common value.
    for (const float c : {0.0f, 2.5f, -37.0f, 1e4f}) {
        const std::vector<float> logits(7, c);
        double h = -1.0;
        entropy_forward(&h, logits.data(), 1, 7);
        EXPECT_EQ(h, std::log(7.0)) << c;
        EXPECT_NEAR(h, 1.945910149055313305, 1e-15) << c;  // ln 7
    }
}

TEST(EntropyKernel, TwoLogitsMatchTheClosedForm) {
    // logits (0, 1): p = (1, e) / (1 + e), H = log(1 + e) - e / (1 + e) = 0.58220310888821795...
    // (1, 0, 1, 1): the same with three e's, H = log(1 + 3e) - 3e / (1 + 3e) = 1.32351507293...
    const std::vector<float> logits = {0.0f, 1.0f, 1.0f, 0.0f, 1.0f, 1.0f};
    double h[2];
    entropy_forward(h, logits.data(), 1, 2);
    EXPECT_NEAR(h[0], 0.582203108888217955, 1e-15);
    entropy_forward(h, logits.data() + 2, 1, 4);
    EXPECT_NEAR(h[0], 1.323515072935796296, 1e-15);
}

TEST(EntropyKernel, ANearlyOneHotRowHasNearlyZeroEntropy) {
    // logits (100, 0, 0, 0): H = log(1 + 3e^-100) + 300 e^-100 / (1 + 3e^-100) ~ 303 e^-100,
    // about 1.1e-41; in double 1 + 3e^-100 rounds to 1, which drops the 3 e^-100, so the kernel
    // gives 300 e^-100. Either way: non-negative, and zero far below any use of it.
    const std::vector<float> logits = {100.0f, 0.0f, 0.0f, 0.0f};
    double h = -1.0;
    entropy_forward(&h, logits.data(), 1, 4);
    EXPECT_GE(h, 0.0);
    EXPECT_LT(h, 1e-40);
    EXPECT_NEAR(h, 300.0 * std::exp(-100.0), 1e-45);
}

TEST(EntropyKernel, RandomRowsMatchANaiveDoubleSoftmax) {
    const int N = 9, V = 1000;
    Rng rng(17);
    std::vector<float> logits((size_t)N * V);
    for (int n = 0; n < N; n++) {
        // Rows of different spread (nearly uniform to peaked) and offset (the max is shifted out).
        const double scale = 0.1 * (1 << n % 5), offset = n % 3 == 0 ? 500.0 : -3.0 * n;
        for (int v = 0; v < V; v++) {
            logits[(size_t)n * V + v] = static_cast<float>(offset + scale * rng.normal());
        }
    }
    std::vector<double> h(N, -1.0);
    entropy_forward(h.data(), logits.data(), N, V);
    for (int n = 0; n < N; n++) {
        const double want = naive_entropy(logits.data() + (size_t)n * V, V);
        EXPECT_NEAR(h[n], want, 1e-12 * std::max(1.0, want)) << "row " << n;
        EXPECT_GT(h[n], 0.0);
        EXPECT_LE(h[n], std::log(double(V)) + 1e-12);
        // Rows are independent: one row alone gives the same bits as in the batch.
        double alone = -1.0;
        entropy_forward(&alone, logits.data() + (size_t)n * V, 1, V);
        EXPECT_EQ(alone, h[n]) << "row " << n;
    }
}

}  // namespace
}  // namespace crucible::kernels
