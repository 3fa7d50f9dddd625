// The small-batch linear kernel (batched decode): every output must be exactly the in-order
// fused multiply-add chain over the inputs (plus the bias last), whatever the instruction set,
// the number of rows or threads, and shapes with tails of rows, inputs and outputs.
#include "kernels/small_batch_linear.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace {

using crucible::kernels::SimdPath;
using Vec = std::vector<float>;

Vec randn(size_t n, uint64_t seed) {
    crucible::Rng rng(seed);
    Vec v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
}

// The definition, one scalar std::fma at a time.
Vec fma_chain(const Vec& inp, const Vec& weight, const float* bias, int N, int C, int OC) {
    Vec out((size_t)N * OC);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < OC; j++) {
            float acc = 0.0f;
            for (int c = 0; c < C; c++)
                acc = std::fma(inp[(size_t)n * C + c], weight[(size_t)j * C + c], acc);
            out[(size_t)n * OC + j] = bias ? acc + bias[j] : acc;
        }
    }
    return out;
}

std::vector<SimdPath> paths() {
    std::vector<SimdPath> p{SimdPath::avx2};
    if (crucible::kernels::cpu_has_avx512()) p.push_back(SimdPath::avx512);
    return p;
}

bool same_bits(const Vec& a, const Vec& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

Vec run(SimdPath path, const Vec& inp, const Vec& weight, const float* bias, int N, int C, int OC) {
    Vec out((size_t)N * OC, std::numeric_limits<float>::quiet_NaN());
    crucible::kernels::small_batch_linear(out.data(), inp.data(), weight.data(), bias, N, C, OC,
                                          path);
    return out;
}

}  // namespace

// Rows around the vector widths (8 and 16 lanes, chunks of 16 and 32), outputs around the tile
// heights (6 and 12), inputs from 1 up.
TEST(SmallBatchLinear, EveryOutputIsTheInOrderFmaChain) {
    for (SimdPath path : paths()) {
        for (int N : {2, 3, 8, 9, 16, 17, 31, 32, 33, 48, 64, 100, 128}) {
            for (const auto& [C, OC] : {std::pair{1, 1}, {7, 5}, {37, 13}, {130, 25}}) {
                const Vec inp = randn((size_t)N * C, 100 + N), weight = randn((size_t)OC * C, 7),
                          bias = randn(OC, 8);
                for (const float* b : {(const float*)nullptr, bias.data()}) {
                    EXPECT_TRUE(same_bits(run(path, inp, weight, b, N, C, OC),
                                          fma_chain(inp, weight, b, N, C, OC)))
                        << "path " << (path == SimdPath::avx512 ? "avx512" : "avx2") << " N " << N
                        << " C " << C << " OC " << OC << " bias " << (b != nullptr);
                }
            }
        }
    }
}

// The rounding does not depend on how the outputs are split between threads.
TEST(SmallBatchLinear, SameBitsOnEveryThreadCount) {
    const int N = 32, C = 300, OC = 97;
    const Vec inp = randn((size_t)N * C, 1), weight = randn((size_t)OC * C, 2);
    const int threads = omp_get_max_threads();
    for (SimdPath path : paths()) {
        omp_set_num_threads(1);
        const Vec one = run(path, inp, weight, nullptr, N, C, OC);
        omp_set_num_threads(3);
        const Vec three = run(path, inp, weight, nullptr, N, C, OC);
        omp_set_num_threads(threads);
        EXPECT_TRUE(same_bits(one, three));
    }
}

// linear_forward takes this kernel from kSmallBatchMinRows to kSmallBatchMaxRows rows; the
// weight-stream kernel below and BLAS above agree with the chain to float rounding, not bit for
// bit.
TEST(SmallBatchLinear, LinearForwardUsesItForSmallBatches) {
    using crucible::kernels::kSmallBatchMaxRows;
    using crucible::kernels::kSmallBatchMinRows;
    const int C = 96, OC = 40;
    const Vec weight = randn((size_t)OC * C, 3), bias = randn(OC, 4);
    for (int N : {1, 2, 4, kSmallBatchMinRows, kSmallBatchMaxRows, kSmallBatchMaxRows + 1}) {
        const Vec inp = randn((size_t)N * C, 5);
        Vec out((size_t)N * OC);
        crucible::kernels::linear_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C,
                                          OC);
        const Vec want = fma_chain(inp, weight, bias.data(), N, C, OC);
        if (N >= kSmallBatchMinRows && N <= kSmallBatchMaxRows) {
            EXPECT_TRUE(same_bits(out, want)) << N;
        } else {
            for (size_t i = 0; i < out.size(); i++) EXPECT_NEAR(out[i], want[i], 1e-4) << i;
        }
    }
}
