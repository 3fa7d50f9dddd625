// Kernel-level tests, independent of the model: every backward is checked against central
// finite differences of its fp32 forward, for the scalar objective L = sum_i r_i * out_i with
// a fixed random r (L summed in double); forwards are checked against double-precision
// references written out here; AdamW against torch.optim.AdamW's formulas in double.
//
// Finite differences: d L / d x_i ~ (L(x_i + h) - L(x_i - h)) / (x_i+h - x_i-h), where the
// perturbed values are rounded to float first, so the denominator is the real step. With fp32
// forwards the error is dominated by output rounding divided by 2h, not by the O(h^2)
// truncation, so h = 1e-2 (worst error seen: ~5e-5 at h = 1e-2, ~4e-4 at h = 1e-3). A
// gradient passes when |analytic - fd| <= kFdTol * max(1, |fd|) (absolute below 1, relative
// above) with kFdTol = 3e-4. Forward checks state their own tolerance in the same form.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "core/rng.h"

using namespace crucible::kernels;

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec randn(size_t n, uint64_t seed, double scale = 1.0) {
    crucible::Rng rng(seed);
    Vec v(n);
    for (auto& x : v) x = static_cast<float>(scale * rng.normal());
    return v;
}

double dot(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++) s += static_cast<double>(a[i]) * b[i];
    return s;
}

constexpr float kFdStep = 1e-2f;
constexpr double kFdTol = 3e-4;

// Central differences of objective() with respect to every element of x (restored after).
DVec fd_grad(Vec& x, const std::function<double()>& objective, float h = kFdStep) {
    DVec g(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        const float x0 = x[i];
        const float xp = x0 + h;
        const float xm = x0 - h;
        x[i] = xp;
        const double fp = objective();
        x[i] = xm;
        const double fm = objective();
        x[i] = x0;
        g[i] = (fp - fm) / (static_cast<double>(xp) - static_cast<double>(xm));
    }
    return g;
}

// Every element: |got - want| <= tol * max(1, |want|). NaN fails.
template <typename A, typename B>
::testing::AssertionResult all_close(const std::vector<A>& got, const std::vector<B>& want,
                                     double tol) {
    if (got.size() != want.size()) {
        return ::testing::AssertionFailure()
               << "size " << got.size() << " != expected " << want.size();
    }
    size_t bad = 0, worst = 0;
    double worst_ratio = 0.0;
    for (size_t i = 0; i < got.size(); i++) {
        const double g = static_cast<double>(got[i]);
        const double w = static_cast<double>(want[i]);
        const double ratio = std::abs(g - w) / (tol * std::max(1.0, std::abs(w)));
        if (!(ratio <= 1.0)) bad++;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << bad << " of " << got.size() << " elements out of tolerance " << tol
           << " * max(1, |expected|); worst at [" << worst << "]: got " << got[worst]
           << ", expected " << want[worst] << " (" << worst_ratio << "x the tolerance)";
}

Vec zeros(size_t n) {
    return Vec(n, 0.0f);
}

DVec twice(const Vec& x) {
    DVec d(x.begin(), x.end());
    for (auto& e : d) e *= 2.0;
    return d;
}

}  // namespace

// ---- embedding ------------------------------------------------------------------------------

TEST(KernelsEmbedding, ForwardCopiesRows) {
    const int V = 6, C = 5, N = 7;
    const std::vector<int32_t> tokens = {2, 0, 2, 5, 2, 0, 3};
    const Vec wte = randn(V * C, 1);
    Vec out(N * C, kNaN);
    embedding_forward(out.data(), tokens.data(), wte.data(), N, C);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) EXPECT_EQ(out[n * C + c], wte[tokens[n] * C + c]);
    }
}

TEST(KernelsEmbedding, BackwardMatchesFiniteDifferences) {
    const int V = 6, C = 5, N = 7;
    // Repeated ids (2 three times, 0 twice) and unused ids (1, 4).
    const std::vector<int32_t> tokens = {2, 0, 2, 5, 2, 0, 3};
    Vec wte = randn(V * C, 1);
    const Vec r = randn(N * C, 2);
    Vec out(N * C);
    auto objective = [&] {
        embedding_forward(out.data(), tokens.data(), wte.data(), N, C);
        return dot(r, out);
    };
    Vec dwte = zeros(V * C);
    embedding_backward(dwte.data(), r.data(), tokens.data(), N, C);
    EXPECT_TRUE(all_close(dwte, fd_grad(wte, objective), kFdTol));
    for (int c = 0; c < C; c++) {
        EXPECT_EQ(dwte[1 * C + c], 0.0f);
        EXPECT_EQ(dwte[4 * C + c], 0.0f);
    }
}

// ---- RMSNorm --------------------------------------------------------------------------------

namespace {
struct RmsnormCase {
    static constexpr int N = 5, C = 8;
    static constexpr float eps = 1e-5f;
    Vec inp = randn(N * C, 10);
    Vec weight = [] {
        Vec w = randn(C, 11, 0.3);
        for (auto& x : w) x += 1.0f;
        return w;
    }();
};
}  // namespace

TEST(KernelsRmsnorm, ForwardMatchesDoubleReference) {
    RmsnormCase t;
    const int N = t.N, C = t.C;
    Vec out(N * C, kNaN), rstd(N, kNaN);
    rmsnorm_forward(out.data(), rstd.data(), t.inp.data(), t.weight.data(), N, C, t.eps);
    DVec want_out(N * C), want_rstd(N);
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)t.inp[n * C + c] * t.inp[n * C + c];
        want_rstd[n] = 1.0 / std::sqrt(ss / C + t.eps);
        for (int c = 0; c < C; c++) {
            want_out[n * C + c] = t.weight[c] * t.inp[n * C + c] * want_rstd[n];
        }
    }
    EXPECT_TRUE(all_close(out, want_out, 1e-6));
    EXPECT_TRUE(all_close(rstd, want_rstd, 1e-6));
}

TEST(KernelsRmsnorm, BackwardMatchesFiniteDifferences) {
    RmsnormCase t;
    const int N = t.N, C = t.C;
    const Vec r = randn(N * C, 12);
    Vec out(N * C), rstd(N);
    auto objective = [&] {
        rmsnorm_forward(out.data(), rstd.data(), t.inp.data(), t.weight.data(), N, C, t.eps);
        return dot(r, out);
    };
    objective();
    const Vec rstd0 = rstd;
    Vec dinp = zeros(N * C), dweight = zeros(C);
    rmsnorm_backward(dinp.data(), dweight.data(), r.data(), t.inp.data(), t.weight.data(),
                     rstd0.data(), N, C);
    EXPECT_TRUE(all_close(dinp, fd_grad(t.inp, objective), kFdTol)) << "dinp";
    EXPECT_TRUE(all_close(dweight, fd_grad(t.weight, objective), kFdTol)) << "dweight";
}

// ---- linear ---------------------------------------------------------------------------------

namespace {
struct LinearCase {
    static constexpr int N = 5, C = 7, OC = 6;
    Vec inp = randn(N * C, 20);
    Vec weight = randn(OC * C, 21, 0.5);
    Vec bias = randn(OC, 22);
    Vec r = randn(N * OC, 23);
};

void check_linear(bool with_bias) {
    LinearCase t;
    const int N = t.N, C = t.C, OC = t.OC;
    const float* bias = with_bias ? t.bias.data() : nullptr;
    // Forward against a double reference; out starts as NaN to show it is overwritten.
    Vec out(N * OC, kNaN);
    linear_forward(out.data(), t.inp.data(), t.weight.data(), bias, N, C, OC);
    DVec want(N * OC);
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double s = with_bias ? t.bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)t.inp[n * C + c] * t.weight[o * C + c];
            want[n * OC + o] = s;
        }
    }
    EXPECT_TRUE(all_close(out, want, 1e-6)) << "forward";

    auto objective = [&] {
        linear_forward(out.data(), t.inp.data(), t.weight.data(),
                       with_bias ? t.bias.data() : nullptr, N, C, OC);
        return dot(t.r, out);
    };
    Vec dinp = zeros(N * C), dweight = zeros(OC * C), dbias = zeros(OC);
    linear_backward(dinp.data(), dweight.data(), with_bias ? dbias.data() : nullptr, t.r.data(),
                    t.inp.data(), t.weight.data(), N, C, OC);
    // The objective is linear in each input, so finite differences are exact up to rounding.
    EXPECT_TRUE(all_close(dinp, fd_grad(t.inp, objective), kFdTol)) << "dinp";
    EXPECT_TRUE(all_close(dweight, fd_grad(t.weight, objective), kFdTol)) << "dweight";
    if (with_bias) {
        EXPECT_TRUE(all_close(dbias, fd_grad(t.bias, objective), kFdTol)) << "dbias";
    } else {
        for (float x : dbias) EXPECT_EQ(x, 0.0f);
    }

    // dinp == nullptr skips the input gradient and leaves the others bit for bit the same.
    Vec dweight2 = zeros(OC * C), dbias2 = zeros(OC);
    linear_backward(nullptr, dweight2.data(), with_bias ? dbias2.data() : nullptr, t.r.data(),
                    t.inp.data(), t.weight.data(), N, C, OC);
    EXPECT_EQ(dweight2, dweight);
    EXPECT_EQ(dbias2, dbias);
}
}  // namespace

TEST(KernelsLinear, WithBiasMatchesReferenceAndFiniteDifferences) {
    check_linear(true);
}

TEST(KernelsLinear, WithoutBiasMatchesReferenceAndFiniteDifferences) {
    check_linear(false);
}

// One to four rows (decode of a few sequences) take the hand-written weight-stream path:
// shapes with a tail of columns (C not a multiple of 8, 16 or 32) and odd output counts, with
// and without bias, against a double reference.
TEST(KernelsLinear, FewRowsMatchReference) {
    for (int N = 1; N <= 4; N++) {
        for (const auto& [C, OC] : {std::pair{37, 10}, {16, 4}, {3, 1}, {896, 133}}) {
            for (bool with_bias : {false, true}) {
                const Vec inp = randn((size_t)N * C, 40 + N),
                          weight = randn((size_t)OC * C, 41, 0.5), bias = randn(OC, 42);
                Vec out((size_t)N * OC, kNaN);
                linear_forward(out.data(), inp.data(), weight.data(),
                               with_bias ? bias.data() : nullptr, N, C, OC);
                DVec want((size_t)N * OC);
                for (int n = 0; n < N; n++) {
                    for (int o = 0; o < OC; o++) {
                        double acc = with_bias ? bias[o] : 0.0;
                        for (int c = 0; c < C; c++)
                            acc += (double)inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
                        want[(size_t)n * OC + o] = acc;
                    }
                }
                EXPECT_TRUE(all_close(out, want, 2e-5))
                    << N << " rows, " << C << "x" << OC << " bias " << with_bias;
            }
        }
    }
}

// ---- RoPE -----------------------------------------------------------------------------------

namespace {
struct RopeCase {
    static constexpr int N = 6, n_heads = 3, head_dim = 8, max_pos = 64;
    static constexpr float theta = 10000.0f;
    std::vector<int32_t> positions = {0, 1, 7, 31, 2, 63};
    Vec cos_table = Vec(max_pos * head_dim / 2), sin_table = Vec(max_pos * head_dim / 2);
    Vec x = randn(N * n_heads * head_dim, 30);
    RopeCase() { rope_table_init(cos_table.data(), sin_table.data(), max_pos, head_dim, theta); }
    Vec forward(Vec v) const {
        rope_forward(v.data(), positions.data(), cos_table.data(), sin_table.data(), N, n_heads,
                     head_dim);
        return v;
    }
    Vec backward(Vec v) const {
        rope_backward(v.data(), positions.data(), cos_table.data(), sin_table.data(), N, n_heads,
                      head_dim);
        return v;
    }
};
}  // namespace

TEST(KernelsRope, TableMatchesHandFormula) {
    for (float theta : {10000.0f, 1000000.0f}) {
        const int max_pos = 64, head_dim = 8, half = head_dim / 2;
        Vec cos_t(max_pos * half, kNaN), sin_t(max_pos * half, kNaN);
        rope_table_init(cos_t.data(), sin_t.data(), max_pos, head_dim, theta);
        const int entries[][2] = {{0, 0}, {0, 3},  {1, 0},  {1, 3},
                                  {5, 1}, {17, 2}, {63, 0}, {63, 3}};
        for (const auto& e : entries) {
            const int p = e[0], i = e[1];
            const double angle = p / std::pow((double)theta, 2.0 * i / head_dim);
            EXPECT_NEAR(cos_t[p * half + i], std::cos(angle), 1e-5) << "p=" << p << " i=" << i;
            EXPECT_NEAR(sin_t[p * half + i], std::sin(angle), 1e-5) << "p=" << p << " i=" << i;
        }
        // Position 0 is exactly the identity rotation.
        for (int i = 0; i < half; i++) {
            EXPECT_EQ(cos_t[i], 1.0f);
            EXPECT_EQ(sin_t[i], 0.0f);
        }
    }
    // One entry by hand: head_dim 8, i = 1: inv_freq = 10000^(-1/4) = 0.1, so p = 5 -> 0.5 rad.
    Vec cos_t(6 * 4), sin_t(6 * 4);
    rope_table_init(cos_t.data(), sin_t.data(), 6, 8, 10000.0f);
    EXPECT_NEAR(cos_t[5 * 4 + 1], 0.8775825618903728, 1e-6);
    EXPECT_NEAR(sin_t[5 * 4 + 1], 0.479425538604203, 1e-6);
}

TEST(KernelsRope, PositionZeroIsIdentity) {
    RopeCase t;
    std::fill(t.positions.begin(), t.positions.end(), 0);
    EXPECT_EQ(t.forward(t.x), t.x);
    EXPECT_EQ(t.backward(t.x), t.x);
}

TEST(KernelsRope, RotatesPairsAndPreservesTheirNorms) {
    RopeCase t;
    const int half = t.head_dim / 2;
    const Vec y = t.forward(t.x);
    DVec want(y.size());
    for (int n = 0; n < t.N; n++) {
        const double p = t.positions[n];
        for (int h = 0; h < t.n_heads; h++) {
            const size_t base = ((size_t)n * t.n_heads + h) * t.head_dim;
            for (int j = 0; j < half; j++) {
                const double a = t.x[base + j], b = t.x[base + j + half];
                const double ya = y[base + j], yb = y[base + j + half];
                EXPECT_NEAR(ya * ya + yb * yb, a * a + b * b, 1e-5 * std::max(1.0, a * a + b * b))
                    << "row " << n << " head " << h << " pair " << j;
                // rotate_half convention: (a, b) -> (a cos - b sin, b cos + a sin).
                const double ang = p / std::pow((double)t.theta, 2.0 * j / t.head_dim);
                want[base + j] = a * std::cos(ang) - b * std::sin(ang);
                want[base + j + half] = b * std::cos(ang) + a * std::sin(ang);
            }
        }
    }
    EXPECT_TRUE(all_close(y, want, 1e-4));
    // Backward undoes forward (the rotation is orthogonal: transpose == inverse).
    EXPECT_TRUE(all_close(t.backward(y), t.x, 1e-6));
}

TEST(KernelsRope, BackwardIsTransposeAndMatchesFiniteDifferences) {
    RopeCase t;
    const Vec r = randn(t.x.size(), 31);
    // <R x, r> == <x, R^T r>
    const double lhs = dot(t.forward(t.x), r);
    const double rhs = dot(t.x, t.backward(r));
    EXPECT_NEAR(lhs, rhs, 1e-5 * std::max(1.0, std::abs(lhs)));
    const Vec dx = t.backward(r);
    auto objective = [&] { return dot(r, t.forward(t.x)); };
    EXPECT_TRUE(all_close(dx, fd_grad(t.x, objective), kFdTol));
}

// ---- attention ------------------------------------------------------------------------------

namespace {
struct AttentionCase {
    int n_heads, n_kv_heads, head_dim;
    std::vector<int32_t> seq_start, seq_len;
    std::vector<int64_t> probs_offset;
    int N = 0;
    Vec q, k, v;
    AttentionShape shape{};
    int64_t probs_size = 0;

    AttentionCase(int nh, int nkv, int hd, std::vector<int32_t> lens)
        : n_heads(nh), n_kv_heads(nkv), head_dim(hd), seq_len(std::move(lens)) {
        int64_t off = 0;
        for (int32_t len : seq_len) {
            seq_start.push_back(N);
            probs_offset.push_back(off);
            N += len;
            off += (int64_t)n_heads * len * len;
        }
        q = randn((size_t)N * n_heads * head_dim, 40);
        k = randn((size_t)N * n_kv_heads * head_dim, 41);
        v = randn((size_t)N * n_kv_heads * head_dim, 42);
        shape = AttentionShape{
            n_heads,          n_kv_heads,     head_dim,           (int)seq_len.size(),
            seq_start.data(), seq_len.data(), probs_offset.data()};
        probs_size = attention_probs_size(seq_len.data(), (int)seq_len.size(), n_heads);
    }
    size_t q_stride() const { return (size_t)n_heads * head_dim; }
    size_t kv_stride() const { return (size_t)n_kv_heads * head_dim; }
    Vec forward(Vec* probs_out = nullptr) const {
        Vec out((size_t)N * q_stride(), kNaN), probs(probs_size, kNaN);
        attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), shape);
        if (probs_out) *probs_out = probs;
        return out;
    }
};

// Naive double-precision reference: explicit loops over sequences, heads, query and key rows.
void attention_reference(const AttentionCase& t, DVec* out, DVec* probs) {
    out->assign((size_t)t.N * t.q_stride(), 0.0);
    probs->assign(t.probs_size, 0.0);
    const int group = t.n_heads / t.n_kv_heads;
    const double scale = 1.0 / std::sqrt((double)t.head_dim);
    for (size_t s = 0; s < t.seq_len.size(); s++) {
        const int T = t.seq_len[s], r0 = t.seq_start[s];
        for (int h = 0; h < t.n_heads; h++) {
            const int g = h / group;
            for (int i = 0; i < T; i++) {
                DVec sc(i + 1);
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    double d = 0.0;
                    for (int c = 0; c < t.head_dim; c++) {
                        d += (double)t.q[(r0 + i) * t.q_stride() + h * t.head_dim + c] *
                             t.k[(r0 + j) * t.kv_stride() + g * t.head_dim + c];
                    }
                    sc[j] = d * scale;
                    mx = std::max(mx, sc[j]);
                }
                double sum = 0.0;
                for (int j = 0; j <= i; j++) sum += std::exp(sc[j] - mx);
                for (int j = 0; j <= i; j++) {
                    const double p = std::exp(sc[j] - mx) / sum;
                    (*probs)[t.probs_offset[s] + ((int64_t)h * T + i) * T + j] = p;
                    for (int c = 0; c < t.head_dim; c++) {
                        (*out)[(r0 + i) * t.q_stride() + h * t.head_dim + c] +=
                            p * t.v[(r0 + j) * t.kv_stride() + g * t.head_dim + c];
                    }
                }
            }
        }
    }
}

void check_attention_forward(int nh, int nkv) {
    AttentionCase t(nh, nkv, 4, {3, 5});
    Vec probs;
    const Vec out = t.forward(&probs);
    DVec want_out, want_probs;
    attention_reference(t, &want_out, &want_probs);
    EXPECT_TRUE(all_close(out, want_out, 1e-5)) << "out";
    // Includes the zero upper triangles, which must be written (probs started as NaN).
    EXPECT_TRUE(all_close(probs, want_probs, 1e-6)) << "probs";
}

void check_attention_backward(int nh, int nkv) {
    AttentionCase t(nh, nkv, 4, {3, 5});
    Vec probs;
    t.forward(&probs);
    const Vec r = randn((size_t)t.N * t.q_stride(), 43);
    Vec dq = zeros(t.q.size()), dk = zeros(t.k.size()), dv = zeros(t.v.size());
    Vec dprobs(t.probs_size, kNaN);  // scratch: contents on entry must not matter
    attention_backward(dq.data(), dk.data(), dv.data(), dprobs.data(), r.data(), t.q.data(),
                       t.k.data(), t.v.data(), probs.data(), t.shape);
    auto objective = [&] { return dot(r, t.forward()); };
    EXPECT_TRUE(all_close(dq, fd_grad(t.q, objective), kFdTol)) << "dq";
    EXPECT_TRUE(all_close(dk, fd_grad(t.k, objective), kFdTol)) << "dk";
    EXPECT_TRUE(all_close(dv, fd_grad(t.v, objective), kFdTol)) << "dv";
}
}  // namespace

TEST(KernelsAttention, ProbsSize) {
    const std::vector<int32_t> lens = {3, 5};
    EXPECT_EQ(attention_probs_size(lens.data(), 2, 4), 4 * 9 + 4 * 25);
}

TEST(KernelsAttention, ForwardMatchesNaiveReferenceGqa) {
    check_attention_forward(4, 2);
}

TEST(KernelsAttention, ForwardMatchesNaiveReferenceMhaAndMqa) {
    check_attention_forward(4, 4);
    check_attention_forward(4, 1);
}

TEST(KernelsAttention, BackwardMatchesFiniteDifferencesGqa) {
    check_attention_backward(4, 2);
}

TEST(KernelsAttention, BackwardMatchesFiniteDifferencesMhaAndMqa) {
    check_attention_backward(4, 4);
    check_attention_backward(4, 1);
}

TEST(KernelsAttention, PackedSequencesAreIsolatedAndCausal) {
    AttentionCase t(4, 2, 4, {3, 5});
    const Vec base = t.forward();
    const size_t qs = t.q_stride(), kvs = t.kv_stride();
    auto perturb_row = [&](int row) {
        for (size_t c = 0; c < qs; c++) t.q[row * qs + c] += 3.0f;
        for (size_t c = 0; c < kvs; c++) {
            t.k[row * kvs + c] -= 2.0f;
            t.v[row * kvs + c] += 5.0f;
        }
    };
    // Row 1 is token 1 of sequence 0: rows 0 (earlier) and 3..7 (sequence 1) must be unchanged
    // bit for bit; row 1 and 2 must change.
    const AttentionCase saved = t;
    perturb_row(1);
    Vec out = t.forward();
    for (int row : {0, 3, 4, 5, 6, 7}) {
        for (size_t c = 0; c < qs; c++) {
            EXPECT_EQ(out[row * qs + c], base[row * qs + c]) << "row " << row << " col " << c;
        }
    }
    for (int row : {1, 2}) {
        bool changed = false;
        for (size_t c = 0; c < qs; c++) changed |= out[row * qs + c] != base[row * qs + c];
        EXPECT_TRUE(changed) << "row " << row;
    }
    // Row 3 is token 0 of sequence 1: sequence 0 must be unchanged.
    t.q = saved.q;
    t.k = saved.k;
    t.v = saved.v;
    perturb_row(3);
    out = t.forward();
    for (int row : {0, 1, 2}) {
        for (size_t c = 0; c < qs; c++) {
            EXPECT_EQ(out[row * qs + c], base[row * qs + c]) << "row " << row << " col " << c;
        }
    }
}

// ---- SwiGLU ---------------------------------------------------------------------------------

TEST(KernelsSwiglu, ForwardMatchesFormula) {
    const size_t n = 48;
    Vec gate = randn(n, 50, 3.0), up = randn(n, 51);
    // Saturated and special values.
    gate[0] = 0.0f;
    gate[1] = 30.0f;
    gate[2] = -30.0f;
    gate[3] = 100.0f;
    gate[4] = -100.0f;
    Vec out(n, kNaN);
    swiglu_forward(out.data(), gate.data(), up.data(), n);
    DVec want(n);
    for (size_t i = 0; i < n; i++) {
        const double g = gate[i];
        want[i] = g * (1.0 / (1.0 + std::exp(-g))) * up[i];
    }
    EXPECT_TRUE(all_close(out, want, 1e-6));
}

TEST(KernelsSwiglu, BackwardMatchesFiniteDifferences) {
    const size_t n = 48;
    Vec gate = randn(n, 52, 2.0), up = randn(n, 53);
    const Vec r = randn(n, 54);
    Vec out(n);
    auto objective = [&] {
        swiglu_forward(out.data(), gate.data(), up.data(), n);
        return dot(r, out);
    };
    Vec dgate = zeros(n), dup = zeros(n);
    swiglu_backward(dgate.data(), dup.data(), r.data(), gate.data(), up.data(), n);
    EXPECT_TRUE(all_close(dgate, fd_grad(gate, objective), kFdTol)) << "dgate";
    EXPECT_TRUE(all_close(dup, fd_grad(up, objective), kFdTol)) << "dup";
}

// ---- residual -------------------------------------------------------------------------------

TEST(KernelsResidual, AddsElementwise) {
    const size_t n = 37;
    const Vec a = randn(n, 60), b = randn(n, 61);
    Vec out(n, kNaN);
    residual_forward(out.data(), a.data(), b.data(), n);
    for (size_t i = 0; i < n; i++) EXPECT_EQ(out[i], a[i] + b[i]);
    // In place (out aliases a), as a residual stream is updated.
    Vec acc = a;
    residual_forward(acc.data(), acc.data(), b.data(), n);
    EXPECT_EQ(acc, out);
}

// ---- cross-entropy --------------------------------------------------------------------------

namespace {
struct CrossEntropyCase {
    static constexpr int N = 5, V = 9;
    Vec logits = randn(N * V, 70, 2.0);
    std::vector<int32_t> targets = {0, 8, 4, 2, 5};
    Vec weight = {0.5f, 1.0f, 0.0f, 2.0f, 0.25f};  // row 2 has weight 0
};

// Double-precision logsumexp of each row.
DVec logsumexp_rows(const Vec& logits, int N, int V) {
    DVec lse(N);
    for (int n = 0; n < N; n++) {
        double mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = std::max(mx, (double)logits[n * V + j]);
        double s = 0.0;
        for (int j = 0; j < V; j++) s += std::exp(logits[n * V + j] - mx);
        lse[n] = mx + std::log(s);
    }
    return lse;
}
}  // namespace

TEST(KernelsCrossEntropy, ForwardMatchesLogsumexpReference) {
    CrossEntropyCase t;
    const int N = t.N, V = t.V;
    // Row 3 far from zero: a naive exp would overflow.
    for (int j = 0; j < V; j++) t.logits[3 * V + j] += 1000.0f;
    Vec losses(N, kNaN), lse(N, kNaN);
    cross_entropy_forward(losses.data(), lse.data(), t.logits.data(), t.targets.data(), N, V);
    const DVec want_lse = logsumexp_rows(t.logits, N, V);
    DVec want_loss(N);
    for (int n = 0; n < N; n++) want_loss[n] = want_lse[n] - t.logits[n * V + t.targets[n]];
    EXPECT_TRUE(all_close(lse, want_lse, 1e-6)) << "lse";
    // loss = lse - logit[target] cancels: its fp32 error scales with |lse| (~1000 in row 3,
    // where one ulp is 6e-5), not with the loss.
    for (int n = 0; n < N; n++) {
        EXPECT_NEAR(losses[n], want_loss[n], 1e-6 * std::max(1.0, std::abs(want_lse[n])))
            << "row " << n;
    }
}

TEST(KernelsCrossEntropy, BackwardMatchesFiniteDifferences) {
    CrossEntropyCase t;
    const int N = t.N, V = t.V;
    Vec losses(N), lse(N);
    auto objective = [&] {
        cross_entropy_forward(losses.data(), lse.data(), t.logits.data(), t.targets.data(), N, V);
        double s = 0.0;
        for (int n = 0; n < N; n++) s += (double)t.weight[n] * losses[n];
        return s;
    };
    objective();
    Vec grad = t.logits;
    cross_entropy_backward_inplace(grad.data(), lse.data(), t.targets.data(), t.weight.data(), N,
                                   V);
    EXPECT_TRUE(all_close(grad, fd_grad(t.logits, objective), kFdTol));
    for (int j = 0; j < V; j++) EXPECT_EQ(grad[2 * V + j], 0.0f) << "weight-0 row, col " << j;
}

TEST(KernelsCrossEntropy, BackwardIsWeightedSoftmaxMinusOneHot) {
    CrossEntropyCase t;
    const int N = t.N, V = t.V;
    for (int j = 0; j < V; j++) t.logits[1 * V + j] += 1000.0f;  // stays finite
    Vec losses(N), lse(N);
    cross_entropy_forward(losses.data(), lse.data(), t.logits.data(), t.targets.data(), N, V);
    Vec grad = t.logits;
    cross_entropy_backward_inplace(grad.data(), lse.data(), t.targets.data(), t.weight.data(), N,
                                   V);
    const DVec l = logsumexp_rows(t.logits, N, V);
    DVec want(N * V);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < V; j++) {
            const double sm = std::exp(t.logits[n * V + j] - l[n]);
            want[n * V + j] = t.weight[n] * (sm - (j == t.targets[n] ? 1.0 : 0.0));
        }
    }
    // Row 1's fp32 lse near 1000 carries ~3e-5 absolute rounding, hence 1e-4.
    EXPECT_TRUE(all_close(grad, want, 1e-4));
}

// ---- optimizer ------------------------------------------------------------------------------

namespace {
// torch.optim.AdamW (single tensor), in double.
struct AdamWReference {
    DVec p, m, v;
    void step(const Vec& g, const AdamWParams& hp, int64_t t) {
        const double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2, eps = hp.eps;
        const double wd = hp.weight_decay;
        const double step_size = lr / (1.0 - std::pow(b1, (double)t));
        const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, (double)t));
        for (size_t i = 0; i < p.size(); i++) {
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i];
            const double denom = std::sqrt(v[i]) / bc2_sqrt + eps;
            p[i] -= step_size * m[i] / denom;
        }
    }
};
}  // namespace

TEST(KernelsAdamW, OneAndThreeStepsMatchTorchFormulas) {
    const size_t n = 12;
    const AdamWParams hp{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
    Vec param = randn(n, 80, 2.0), m = zeros(n), v = zeros(n);
    AdamWReference ref{DVec(param.begin(), param.end()), DVec(n, 0.0), DVec(n, 0.0)};
    // Gradient magnitudes spanning 1e-7..10 (at 1e-7, eps is ~10% of the denominator); element 0
    // always gets a zero gradient (pure decay).
    const float mag[n] = {0, 1, 1e-3f, 10, 0.1f, 1, 1, 3, 0.01f, 1, 1e-7f, 2};
    for (int64_t t = 1; t <= 3; t++) {
        Vec g = randn(n, 80 + t);
        for (size_t i = 0; i < n; i++) g[i] *= mag[i];
        adamw_update(param.data(), g.data(), m.data(), v.data(), n, hp, t);
        ref.step(g, hp, t);
        if (t == 1 || t == 3) {
            EXPECT_TRUE(all_close(param, ref.p, 1e-6)) << "param after step " << t;
            EXPECT_TRUE(all_close(m, ref.m, 1e-6)) << "m after step " << t;
            EXPECT_TRUE(all_close(v, ref.v, 1e-6)) << "v after step " << t;
        }
    }
    // Element 0 only decayed: p0 * (1 - lr*wd)^3.
    EXPECT_NEAR(param[0], ref.p[0], 1e-6);
    EXPECT_EQ(m[0], 0.0f);
    EXPECT_EQ(v[0], 0.0f);
}

TEST(KernelsGlobalNorm, MatchesDoubleSum) {
    // Several 16384-element blocks plus a tail.
    const size_t n = 40000;
    const Vec g = randn(n, 90);
    double s = 0.0;
    for (float x : g) s += (double)x * x;
    EXPECT_NEAR(global_norm(g.data(), n), std::sqrt(s), 1e-12 * std::sqrt(s));
    EXPECT_EQ(global_norm(g.data(), 0), 0.0);
    const float three_four[2] = {3.0f, -4.0f};
    EXPECT_EQ(global_norm(three_four, 2), 5.0);
}

TEST(KernelsScaleInplace, MultipliesEveryElement) {
    const size_t n = 37;
    const Vec x0 = randn(n, 91);
    Vec x = x0;
    scale_inplace(x.data(), n, 0.37f);
    for (size_t i = 0; i < n; i++) EXPECT_EQ(x[i], x0[i] * 0.37f);
}

// ---- accumulation ---------------------------------------------------------------------------

// Backward functions add into their gradient buffers. Where each gradient element receives a
// single addition per call, two calls give exactly twice one call.
TEST(KernelsAccumulation, BackwardTwiceGivesExactlyTwice) {
    {
        const size_t n = 20;
        const Vec gate = randn(n, 100), up = randn(n, 101), dout = randn(n, 102);
        Vec dg1 = zeros(n), du1 = zeros(n), dg2 = zeros(n), du2 = zeros(n);
        swiglu_backward(dg1.data(), du1.data(), dout.data(), gate.data(), up.data(), n);
        for (int rep = 0; rep < 2; rep++) {
            swiglu_backward(dg2.data(), du2.data(), dout.data(), gate.data(), up.data(), n);
        }
        for (size_t i = 0; i < n; i++) {
            EXPECT_EQ(dg2[i], 2.0f * dg1[i]);
            EXPECT_EQ(du2[i], 2.0f * du1[i]);
        }
    }
    {
        RmsnormCase t;
        const int N = t.N, C = t.C;
        Vec out(N * C), rstd(N);
        rmsnorm_forward(out.data(), rstd.data(), t.inp.data(), t.weight.data(), N, C, t.eps);
        const Vec dout = randn(N * C, 103);
        Vec dx1 = zeros(N * C), dw1 = zeros(C), dx2 = zeros(N * C), dw2 = zeros(C);
        rmsnorm_backward(dx1.data(), dw1.data(), dout.data(), t.inp.data(), t.weight.data(),
                         rstd.data(), N, C);
        for (int rep = 0; rep < 2; rep++) {
            rmsnorm_backward(dx2.data(), dw2.data(), dout.data(), t.inp.data(), t.weight.data(),
                             rstd.data(), N, C);
        }
        for (int i = 0; i < N * C; i++) EXPECT_EQ(dx2[i], 2.0f * dx1[i]);
        // dweight sums N rows straight into the buffer, so the second call's partial sums start
        // from the first call's result: 2x up to rounding only.
        EXPECT_TRUE(all_close(dw2, twice(dw1), 1e-6));
    }
    {
        const int V = 8, C = 5, N = 4;
        const std::vector<int32_t> tokens = {6, 1, 3, 0};  // distinct ids: one add per element
        const Vec dout = randn(N * C, 104);
        Vec d1 = zeros(V * C), d2 = zeros(V * C);
        embedding_backward(d1.data(), dout.data(), tokens.data(), N, C);
        for (int rep = 0; rep < 2; rep++) {
            embedding_backward(d2.data(), dout.data(), tokens.data(), N, C);
        }
        for (int i = 0; i < V * C; i++) EXPECT_EQ(d2[i], 2.0f * d1[i]);
    }
}

// Where several contributions land on one element (repeated token ids, sums over rows, GEMMs
// with beta = 1, query heads sharing a KV head), the second call adds its terms onto the
// first call's total, so the result is 2x up to fp32 rounding.
TEST(KernelsAccumulation, BackwardTwiceGivesTwiceUpToRounding) {
    {
        LinearCase t;
        const int N = t.N, C = t.C, OC = t.OC;
        Vec dx1 = zeros(N * C), dw1 = zeros(OC * C), db1 = zeros(OC);
        Vec dx2 = zeros(N * C), dw2 = zeros(OC * C), db2 = zeros(OC);
        linear_backward(dx1.data(), dw1.data(), db1.data(), t.r.data(), t.inp.data(),
                        t.weight.data(), N, C, OC);
        for (int rep = 0; rep < 2; rep++) {
            linear_backward(dx2.data(), dw2.data(), db2.data(), t.r.data(), t.inp.data(),
                            t.weight.data(), N, C, OC);
        }
        EXPECT_TRUE(all_close(dx2, twice(dx1), 1e-6)) << "linear dinp";
        EXPECT_TRUE(all_close(dw2, twice(dw1), 1e-6)) << "linear dweight";
        EXPECT_TRUE(all_close(db2, twice(db1), 1e-6)) << "linear dbias";
    }
    {
        const int V = 6, C = 5, N = 7;
        const std::vector<int32_t> tokens = {2, 0, 2, 5, 2, 0, 3};
        const Vec dout = randn(N * C, 105);
        Vec d1 = zeros(V * C), d2 = zeros(V * C);
        embedding_backward(d1.data(), dout.data(), tokens.data(), N, C);
        for (int rep = 0; rep < 2; rep++) {
            embedding_backward(d2.data(), dout.data(), tokens.data(), N, C);
        }
        EXPECT_TRUE(all_close(d2, twice(d1), 1e-6)) << "embedding, repeated ids";
    }
    {
        AttentionCase t(4, 2, 4, {3, 5});
        Vec probs;
        t.forward(&probs);
        const Vec dout = randn((size_t)t.N * t.q_stride(), 106);
        Vec dprobs(t.probs_size);
        Vec dq1 = zeros(t.q.size()), dk1 = zeros(t.k.size()), dv1 = zeros(t.v.size());
        Vec dq2 = zeros(t.q.size()), dk2 = zeros(t.k.size()), dv2 = zeros(t.v.size());
        attention_backward(dq1.data(), dk1.data(), dv1.data(), dprobs.data(), dout.data(),
                           t.q.data(), t.k.data(), t.v.data(), probs.data(), t.shape);
        for (int rep = 0; rep < 2; rep++) {
            attention_backward(dq2.data(), dk2.data(), dv2.data(), dprobs.data(), dout.data(),
                               t.q.data(), t.k.data(), t.v.data(), probs.data(), t.shape);
        }
        EXPECT_TRUE(all_close(dq2, twice(dq1), 1e-6)) << "attention dq";
        EXPECT_TRUE(all_close(dk2, twice(dk1), 1e-6)) << "attention dk";
        EXPECT_TRUE(all_close(dv2, twice(dv1), 1e-6)) << "attention dv";
    }
}

#include "kernels/fast_exp.h"

namespace {

// fast_exp against double-precision exp over the whole range the kernels use: softmax and
// cross-entropy feed it values <= 0, SwiGLU's sigmoid any value; relative error stays within a
// few float ulps (2^-23 ~ 1.2e-7).
TEST(KernelsFastExp, MatchesDoubleExpWithinFewUlps) {
    double worst = 0.0;
    for (double x = -87.0; x <= 88.0; x += 0.00731) {
        const double ref = std::exp(static_cast<double>(static_cast<float>(x)));
        const double got = crucible::kernels::fast_exp(static_cast<float>(x));
        worst = std::max(worst, std::fabs(got - ref) / ref);
    }
    EXPECT_LT(worst, 4e-7);
    EXPECT_EQ(crucible::kernels::fast_exp(0.0f), 1.0f);
    // Far below the range the result is tiny and positive, never NaN or negative.
    const float tiny = crucible::kernels::fast_exp(-1000.0f);
    EXPECT_GE(tiny, 0.0f);
    EXPECT_LT(tiny, 1e-37f);
}

}  // namespace
