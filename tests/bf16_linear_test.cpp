// The bf16 linear layer against sums worked in double from the same rounded operands, and its
// promises: the two paths agree bit for bit, a row's output does not depend on the batch it came
// in (from 5 rows), and the backward is the forward's transpose in the same precision.
#include "kernels/bf16_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "model/float_formats.h"

namespace k = crucible::kernels;

namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

std::vector<uint16_t> rounded(const std::vector<float>& v) {
    std::vector<uint16_t> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = k::to_bf16(v[i]);
    return r;
}

float r16(float x) {
    return k::from_bf16(k::to_bf16(x));
}

// The exact sum of the rounded products in double, and the sum of their magnitudes (the scale
// of fp32's rounding error: K * 2^-24 * sum |products| bounds an fp32 chain).
struct Ref {
    std::vector<double> value, magnitude;
};
Ref reference_forward(const std::vector<float>& x, const std::vector<float>& w,
                      const std::vector<float>& bias, int N, int C, int OC) {
    Ref r{std::vector<double>((size_t)N * OC), std::vector<double>((size_t)N * OC)};
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias.empty() ? 0.0 : bias[o], m = std::fabs(s);
            for (int c = 0; c < C; c++) {
                const double p = (double)r16(x[(size_t)n * C + c]) * r16(w[(size_t)o * C + c]);
                s += p;
                m += std::fabs(p);
            }
            r.value[(size_t)n * OC + o] = s;
            r.magnitude[(size_t)n * OC + o] = m;
        }
    return r;
}

void expect_close(const std::vector<float>& got, const Ref& ref, int K, const char* what) {
    for (size_t i = 0; i < got.size(); i++) {
        const double tol = (K + 2) * std::ldexp(1.0, -24) * ref.magnitude[i] + 1e-30;
        ASSERT_NEAR(got[i], ref.value[i], tol) << what << " element " << i;
    }
}

std::vector<k::Bf16Path> paths() {
    std::vector<k::Bf16Path> p{k::Bf16Path::fma};
    if (k::cpu_has_avx512_bf16()) p.push_back(k::Bf16Path::dpbf16);
    return p;
}

}  // namespace

TEST(Bf16Linear, RoundingIsTorchsAndMatchesTheFileFormatConversion) {
    // Round to nearest even at the 16-bit boundary, worked by hand: 1 + 2^-8 is halfway between
    // 1 and 1 + 2^-7 and goes to the even one (1); 1 + 3 * 2^-8 goes up to 1 + 2^-6.
    EXPECT_EQ(k::from_bf16(k::to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
    EXPECT_EQ(k::from_bf16(k::to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))),
              1.0f + std::ldexp(1.0f, -6));
    EXPECT_TRUE(std::isnan(k::from_bf16(k::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(k::from_bf16(k::to_bf16(3.4e38f)), std::numeric_limits<float>::infinity());
    const auto v = randn(4096, 3, 100.0f);
    std::vector<uint16_t> bulk(v.size());
    k::to_bf16(bulk.data(), v.data(), v.size());
    for (size_t i = 0; i < v.size(); i++) {
        ASSERT_EQ(bulk[i], crucible::fp32_to_bf16(v[i]));
        ASSERT_EQ(bulk[i], k::to_bf16(v[i]));
    }
}

TEST(Bf16Linear, ForwardIsTheSumOfRoundedProductsForEveryRowCountAndShape) {
    // Rows 1 to 4 take the weight stream, from 5 the broadcast kernel; odd C exercises the last
    // unpaired feature, OC not a multiple of the weight tile the edge tiles, N past 32 the
    // second input chunk; C = 300 takes the stream's 128-weight steps, a 32-weight step and a
    // scalar tail, and OC = 1 leaves a thread without rows.
    for (k::Bf16Path path : paths()) {
        for (int N : {1, 2, 3, 4, 5, 17, 33, 70}) {
            for (auto [C, OC] : {std::pair{64, 24}, {37, 13}, {130, 7}, {300, 9}, {300, 1}}) {
                const auto x = randn((size_t)N * C, N * 100 + C);
                const auto w = randn((size_t)OC * C, C * 7 + OC, 0.1f);
                const auto bias = randn(OC, 5);
                const auto w16 = rounded(w);
                std::vector<float> out((size_t)N * OC, -1.0f);
                k::linear_forward_bf16(out.data(), x.data(), w16.data(), bias.data(), N, C, OC,
                                       false, path);
                expect_close(out, reference_forward(x, w, bias, N, C, OC), C, "forward");
                // accumulate adds the same sum to what is there
                std::vector<float> acc(out.size(), 2.0f);
                k::linear_forward_bf16(acc.data(), x.data(), w16.data(), nullptr, N, C, OC, true,
                                       path);
                for (size_t i = 0; i < out.size(); i++) {
                    ASSERT_NEAR(acc[i], 2.0f + (out[i] - bias[i % OC]),
                                1e-4f * (1 + std::fabs(out[i])));
                }
            }
        }
    }
}

TEST(Bf16Linear, ARowScoresTheSameBitsInAnyBatchFromFiveRows) {
    const int C = 96, OC = 40;
    const auto x = randn(200 * C, 11);
    const auto w16 = rounded(randn(OC * C, 12, 0.1f));
    for (k::Bf16Path path : paths()) {
        std::vector<float> all(200 * OC), part(5 * OC);
        k::linear_forward_bf16(all.data(), x.data(), w16.data(), nullptr, 200, C, OC, false, path);
        for (int start : {0, 37, 195}) {
            k::linear_forward_bf16(part.data(), x.data() + (size_t)start * C, w16.data(), nullptr,
                                   5, C, OC, false, path);
            for (int i = 0; i < 5 * OC; i++) ASSERT_EQ(part[i], all[(size_t)start * OC + i]);
        }
    }
}

TEST(Bf16Linear, TheTwoPathsAgreeBitForBit) {
    if (!k::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
    for (int N : {5, 9, 64, 200}) {
        const int C = 130, OC = 29;
        const auto x = randn((size_t)N * C, 21 + N);
        const auto w16 = rounded(randn((size_t)OC * C, 22, 0.05f));
        std::vector<float> a((size_t)N * OC), b(a.size());
        k::linear_forward_bf16(a.data(), x.data(), w16.data(), nullptr, N, C, OC, false,
                               k::Bf16Path::dpbf16);
        k::linear_forward_bf16(b.data(), x.data(), w16.data(), nullptr, N, C, OC, false,
                               k::Bf16Path::fma);
        for (size_t i = 0; i < a.size(); i++) ASSERT_EQ(a[i], b[i]) << "N " << N << " at " << i;
    }
}

TEST(Bf16Linear, BackwardIsTheTransposedSumsOfRoundedOperands) {
    for (k::Bf16Path path : paths()) {
        for (auto [N, C, OC] : {std::tuple{7, 33, 18}, {40, 64, 5}, {3, 16, 16}}) {
            const auto x = randn((size_t)N * C, 31 + N);
            const auto w = randn((size_t)OC * C, 32, 0.1f);
            const auto dout = randn((size_t)N * OC, 33 + C);
            const auto w16 = rounded(w);
            std::vector<float> dinp((size_t)N * C, 0.5f), dw((size_t)OC * C, -0.25f), db(OC, 1.0f);
            k::linear_backward_bf16(dinp.data(), dw.data(), db.data(), dout.data(), x.data(),
                                    w16.data(), N, C, OC, path);
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    double s = 0, m = 0;
                    for (int o = 0; o < OC; o++) {
                        const double p =
                            (double)r16(dout[(size_t)n * OC + o]) * r16(w[(size_t)o * C + c]);
                        s += p;
                        m += std::fabs(p);
                    }
                    ASSERT_NEAR(dinp[(size_t)n * C + c], 0.5 + s, (OC + 4) * 6e-8 * (m + 0.5));
                }
            for (int o = 0; o < OC; o++) {
                double bs = 1.0;
                for (int c = 0; c < C; c++) {
                    double s = 0, m = 0;
                    for (int n = 0; n < N; n++) {
                        const double p =
                            (double)r16(dout[(size_t)n * OC + o]) * r16(x[(size_t)n * C + c]);
                        s += p;
                        m += std::fabs(p);
                    }
                    ASSERT_NEAR(dw[(size_t)o * C + c], -0.25 + s, (N + 4) * 6e-8 * (m + 0.25));
                }
                for (int n = 0; n < N; n++) bs += dout[(size_t)n * OC + o];  // bias: fp32 dout
                ASSERT_NEAR(db[o], bs, 1e-5 * (N + 1));
            }
        }
    }
}

TEST(Bf16Linear, EmbeddingWidensTheRows) {
    const int C = 10;
    const auto table = rounded(randn(5 * C, 41));
    const int32_t tokens[] = {4, 0, 4};
    std::vector<float> out(3 * C);
    k::embedding_forward_bf16(out.data(), tokens, table.data(), 3, C);
    for (int n = 0; n < 3; n++)
        for (int c = 0; c < C; c++)
            ASSERT_EQ(out[n * C + c], k::from_bf16(table[(size_t)tokens[n] * C + c]));
}
