// Every CUDA op against its CPU kernel (ggml's test-backend-ops, llm.c's per-kernel checks):
// random inputs in [-1, 1), several shapes each with tails (sizes that are not multiples of a
// warp, a block or a tile), forward and backward, within the tolerances of cuda/tolerances.h.
// Without a CUDA device every test skips itself (scripts/device_check.sh runs them on one).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/rng.h"
#include "cuda/device.h"
#include "cuda/ops.h"
#include "cuda/tolerances.h"
#include "engine/sampler.h"
#include "kernels/bf16_linear.h"
#include "kernels/kernels.h"
#include "kernels/paged_attention.h"

namespace crucible {
namespace {

using cuda::DeviceArray;

#define REQUIRE_GPU()                                                          \
    do {                                                                       \
        std::string why;                                                       \
        if (!cuda::available(&why)) GTEST_SKIP() << "no CUDA device: " << why; \
    } while (0)

std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = lo + (hi - lo) * static_cast<float>(rng.uniform());
    return v;
}

std::vector<int32_t> random_ints(size_t n, int below, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> v(n);
    for (int32_t& x : v) x = static_cast<int32_t>(rng.below(below));
    return v;
}

// Every element within tol; on failure names the op, the first element off and the worst.
void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, cuda::Tolerance tol,
                  const std::string& what) {
    ASSERT_EQ(gpu.size(), cpu.size()) << what;
    size_t bad = 0, worst = 0;
    double worst_excess = 0;
    for (size_t i = 0; i < cpu.size(); i++) {
        const double allowed = tol.atol + tol.rtol * std::fabs(cpu[i]);
        const double err = std::fabs((double)gpu[i] - cpu[i]);
        if (!(err <= allowed)) {  // NaN fails too
            if (bad++ == 0 || err - allowed > worst_excess) {
                worst = i;
                worst_excess = err - allowed;
            }
        }
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " elements off; worst at "
                       << worst << ": gpu " << gpu[worst] << " cpu " << cpu[worst];
}

TEST(CudaOps, EmbeddingForwardAndBackward) {
    REQUIRE_GPU();
    for (auto [N, C, V] : {std::tuple{1, 7, 3}, {37, 300, 50}, {256, 896, 1000}}) {
        const auto wte = random_floats((size_t)V * C, 1);
        const auto tokens = random_ints(N, V, 2);  // tokens repeat: the backward adds rows
        const auto dout = random_floats((size_t)N * C, 3);
        std::vector<float> out((size_t)N * C), dwte((size_t)V * C, 0.5f);
        kernels::embedding_forward(out.data(), tokens.data(), wte.data(), N, C);
        kernels::embedding_backward(dwte.data(), dout.data(), tokens.data(), N, C);
        DeviceArray<float> d_wte(wte), d_out((size_t)N * C), d_dout(dout),
            d_dwte(std::vector<float>((size_t)V * C, 0.5f));
        DeviceArray<int32_t> d_tokens(tokens);
        cuda::embedding_forward(d_out.data(), d_tokens.data(), d_wte.data(), N, C);
        cuda::embedding_backward(d_dwte.data(), d_dout.data(), d_tokens.data(), N, C);
        cuda::synchronize();
        const std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C);
        expect_close(d_out.to_host(), out, cuda::kExact, "embedding_forward" + shape);
        expect_close(d_dwte.to_host(), dwte, cuda::kFp32Sums, "embedding_backward" + shape);
        // bf16 table: widened exactly.
        std::vector<uint16_t> wte16(wte.size());
        kernels::to_bf16(wte16.data(), wte.data(), wte.size());
        kernels::embedding_forward_bf16(out.data(), tokens.data(), wte16.data(), N, C);
        DeviceArray<uint16_t> d_wte16(wte16);
        cuda::embedding_forward_bf16(d_out.data(), d_tokens.data(), d_wte16.data(), N, C);
        cuda::synchronize();
        expect_close(d_out.to_host(), out, cuda::kExact, "embedding_forward_bf16" + shape);
    }
}

TEST(CudaOps, Bf16RoundingIsTheCpusBitForBit) {
    REQUIRE_GPU();
    std::vector<float> x = random_floats(100003, 4, -1e3f, 1e3f);
    x[0] = NAN;
    x[1] = INFINITY;
    x[2] = -0.0f;
    x[3] = 3.3895314e38f;  // rounds to inf
    x[4] = 1e-40f;         // subnormal
    std::vector<uint16_t> cpu(x.size());
    kernels::to_bf16(cpu.data(), x.data(), x.size());
    DeviceArray<float> d_x(x);
    DeviceArray<uint16_t> d_y(x.size());
    cuda::to_bf16(d_y.data(), d_x.data(), x.size());
    cuda::synchronize();
    EXPECT_EQ(d_y.to_host(), cpu);
}

TEST(CudaOps, RmsNormForwardAndBackward) {
    REQUIRE_GPU();
    for (auto [N, C] : {std::pair{1, 7}, {33, 300}, {5, 1024}, {64, 896}}) {
        const auto inp = random_floats((size_t)N * C, 5), w = random_floats(C, 6),
                   dout = random_floats((size_t)N * C, 7);
        std::vector<float> out((size_t)N * C), rstd(N), dinp((size_t)N * C, 0.25f), dw(C, 0.25f);
        kernels::rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, 1e-6f);
        kernels::rmsnorm_backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(),
                                  rstd.data(), N, C);
        DeviceArray<float> d_inp(inp), d_w(w), d_dout(dout), d_out((size_t)N * C), d_rstd(N),
            d_dinp(std::vector<float>((size_t)N * C, 0.25f)), d_dw(std::vector<float>(C, 0.25f));
        cuda::rmsnorm_forward(d_out.data(), d_rstd.data(), d_inp.data(), d_w.data(), N, C, 1e-6f);
        // The backward from the CPU's rstd, so that it is checked on its own.
        DeviceArray<float> d_cpu_rstd(rstd);
        cuda::rmsnorm_backward(d_dinp.data(), d_dw.data(), d_dout.data(), d_inp.data(), d_w.data(),
                               d_cpu_rstd.data(), N, C);
        cuda::synchronize();
        const std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C);
        expect_close(d_out.to_host(), out, cuda::kFp32Sums, "rmsnorm_forward" + shape);
        expect_close(d_rstd.to_host(), rstd, cuda::kFp32Sums, "rmsnorm_forward rstd" + shape);
        expect_close(d_dinp.to_host(), dinp, cuda::kFp32Sums, "rmsnorm_backward dinp" + shape);
        expect_close(d_dw.to_host(), dw, cuda::kFp32Sums, "rmsnorm_backward dweight" + shape);
    }
}

TEST(CudaOps, LinearForwardAndBackwardFp32AndBf16) {
    REQUIRE_GPU();
    for (auto [N, C, OC] :
         {std::tuple{1, 300, 7}, {4, 64, 129}, {33, 896, 200}, {130, 128, 4864}}) {
        for (bool with_bias : {false, true}) {
            const auto inp = random_floats((size_t)N * C, 8), w = random_floats((size_t)OC * C, 9),
                       b = random_floats(OC, 10), dout = random_floats((size_t)N * OC, 11);
            const float* bias = with_bias ? b.data() : nullptr;
            std::vector<float> out((size_t)N * OC), dinp((size_t)N * C, 0.5f),
                dw((size_t)OC * C, 0.5f), db(OC, 0.5f);
            kernels::linear_forward(out.data(), inp.data(), w.data(), bias, N, C, OC);
            kernels::linear_backward(dinp.data(), dw.data(), with_bias ? db.data() : nullptr,
                                     dout.data(), inp.data(), w.data(), N, C, OC);
            DeviceArray<float> d_inp(inp), d_w(w), d_b(b), d_dout(dout), d_out((size_t)N * OC),
                d_dinp(std::vector<float>((size_t)N * C, 0.5f)),
                d_dw(std::vector<float>((size_t)OC * C, 0.5f)), d_db(std::vector<float>(OC, 0.5f));
            cuda::linear_forward(d_out.data(), d_inp.data(), d_w.data(),
                                 with_bias ? d_b.data() : nullptr, N, C, OC);
            cuda::linear_backward(d_dinp.data(), d_dw.data(), with_bias ? d_db.data() : nullptr,
                                  d_dout.data(), d_inp.data(), d_w.data(), N, C, OC);
            cuda::synchronize();
            const std::string shape = " N=" + std::to_string(N) + " C=" + std::to_string(C) +
                                      " OC=" + std::to_string(OC) + (with_bias ? " bias" : "");
            // Sums of C (or N) products of values in [-1, 1): the absolute error grows with the
            // length; the harness's tolerance is for unit-scale values, so compare at that scale.
            cuda::Tolerance t = cuda::kFp32Sums;
            t.atol *= std::sqrt((double)std::max({C, N, OC}));
            expect_close(d_out.to_host(), out, t, "linear_forward" + shape);
            expect_close(d_dinp.to_host(), dinp, t, "linear_backward dinp" + shape);
            expect_close(d_dw.to_host(), dw, t, "linear_backward dweight" + shape);
            if (with_bias) {
                expect_close(d_db.to_host(), db, cuda::kExact, "linear_backward dbias" + shape);
            }
            // A frozen weight (dweight nullptr) and an input that needs no gradient (dinp
            // nullptr): the other gradient alone, as the CPU computes it.
            std::vector<float> dinp_only((size_t)N * C, 0.5f), dw_only((size_t)OC * C, 0.5f);
            kernels::linear_backward(dinp_only.data(), nullptr, nullptr, dout.data(), inp.data(),
                                     w.data(), N, C, OC);
            kernels::linear_backward(nullptr, dw_only.data(), nullptr, dout.data(), inp.data(),
                                     w.data(), N, C, OC);
            d_dinp.upload(std::vector<float>((size_t)N * C, 0.5f));
            d_dw.upload(std::vector<float>((size_t)OC * C, 0.5f));
            cuda::linear_backward(d_dinp.data(), nullptr, nullptr, d_dout.data(), d_inp.data(),
                                  d_w.data(), N, C, OC);
            cuda::linear_backward(nullptr, d_dw.data(), nullptr, d_dout.data(), d_inp.data(),
                                  d_w.data(), N, C, OC);
            cuda::synchronize();
            expect_close(d_dinp.to_host(), dinp_only, t, "linear_backward dinp alone" + shape);
            expect_close(d_dw.to_host(), dw_only, t, "linear_backward dweight alone" + shape);
            // bf16: the same rounding of input and weights, fp32 sums.
            std::vector<uint16_t> w16(w.size());
            kernels::to_bf16(w16.data(), w.data(), w.size());
            kernels::linear_forward_bf16(out.data(), inp.data(), w16.data(), bias, N, C, OC);
            DeviceArray<uint16_t> d_w16(w16), scratch((size_t)N * C);
            cuda::linear_forward_bf16(d_out.data(), d_inp.data(), d_w16.data(),
                                      with_bias ? d_b.data() : nullptr, N, C, OC, scratch.data());
            cuda::synchronize();
            cuda::Tolerance tb = cuda::kBf16Sums;
            tb.atol *= std::sqrt((double)C);
            expect_close(d_out.to_host(), out, tb, "linear_forward_bf16" + shape);
        }
    }
}

TEST(CudaOps, RopeForwardAndBackward) {
    REQUIRE_GPU();
    const int max_pos = 512;
    for (auto [N, heads, hd] : {std::tuple{1, 1, 2}, {13, 3, 64}, {40, 14, 128}}) {
        std::vector<float> cos_t((size_t)max_pos * hd / 2), sin_t(cos_t.size());
        kernels::rope_table_init(cos_t.data(), sin_t.data(), max_pos, hd, 1e6f);
        const auto positions = random_ints(N, max_pos, 12);
        auto x = random_floats((size_t)N * heads * hd, 13);
        DeviceArray<float> d_x(x), d_cos(cos_t), d_sin(sin_t);
        DeviceArray<int32_t> d_pos(positions);
        kernels::rope_forward(x.data(), positions.data(), cos_t.data(), sin_t.data(), N, heads, hd);
        cuda::rope_forward(d_x.data(), d_pos.data(), d_cos.data(), d_sin.data(), N, heads, hd);
        cuda::synchronize();
        const std::string shape = " N=" + std::to_string(N) + " hd=" + std::to_string(hd);
        expect_close(d_x.to_host(), x, cuda::kFusedRounding, "rope_forward" + shape);
        kernels::rope_backward(x.data(), positions.data(), cos_t.data(), sin_t.data(), N, heads,
                               hd);
        cuda::rope_backward(d_x.data(), d_pos.data(), d_cos.data(), d_sin.data(), N, heads, hd);
        cuda::synchronize();
        expect_close(d_x.to_host(), x, cuda::kFusedRounding, "rope_backward" + shape);
    }
}

// Packed sequences of several lengths (1, a tail past a warp, one past a block of threads).
TEST(CudaOps, CausalGqaAttentionForwardAndBackward) {
    REQUIRE_GPU();
    struct Case {
        std::vector<int32_t> lens;
        int heads, kv_heads, hd;
    };
    for (const Case& c :
         {Case{{1}, 1, 1, 16}, Case{{7, 33, 1}, 4, 2, 16}, Case{{130, 5}, 14, 2, 64}}) {
        const int S = (int)c.lens.size();
        std::vector<int32_t> start(S);
        std::vector<int64_t> offset(S);
        int N = 0, max_len = 0;
        for (int s = 0; s < S; s++) {
            start[s] = N;
            N += c.lens[s];
            max_len = std::max(max_len, c.lens[s]);
        }
        int64_t probs_n = 0;
        for (int s = 0; s < S; s++) {
            offset[s] = probs_n;
            probs_n += (int64_t)c.heads * c.lens[s] * c.lens[s];
        }
        ASSERT_EQ(probs_n, kernels::attention_probs_size(c.lens.data(), S, c.heads));
        const size_t qn = (size_t)N * c.heads * c.hd, kvn = (size_t)N * c.kv_heads * c.hd;
        const auto q = random_floats(qn, 14), k = random_floats(kvn, 15),
                   v = random_floats(kvn, 16), dout = random_floats(qn, 17);
        std::vector<float> out(qn), probs(probs_n), dq(qn, 0.1f), dk(kvn, 0.1f), dv(kvn, 0.1f),
            dprobs(probs_n);
        const kernels::AttentionShape cpu{c.heads,      c.kv_heads,    c.hd,         S,
                                          start.data(), c.lens.data(), offset.data()};
        kernels::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), cpu);
        kernels::attention_backward(dq.data(), dk.data(), dv.data(), dprobs.data(), dout.data(),
                                    q.data(), k.data(), v.data(), probs.data(), cpu);
        DeviceArray<int32_t> d_start(start), d_lens(c.lens);
        DeviceArray<int64_t> d_offset(offset);
        DeviceArray<float> d_q(q), d_k(k), d_v(v), d_dout(dout), d_out(qn), d_probs(probs_n),
            d_dprobs(probs_n), d_dq(std::vector<float>(qn, 0.1f)),
            d_dk(std::vector<float>(kvn, 0.1f)), d_dv(std::vector<float>(kvn, 0.1f));
        const kernels::AttentionShape gpu{c.heads,        c.kv_heads,    c.hd,           S,
                                          d_start.data(), d_lens.data(), d_offset.data()};
        cuda::attention_forward(d_out.data(), d_probs.data(), d_q.data(), d_k.data(), d_v.data(),
                                gpu, max_len);
        // The backward from the CPU's probabilities, so that it is checked on its own.
        DeviceArray<float> d_cpu_probs(probs);
        cuda::attention_backward(d_dq.data(), d_dk.data(), d_dv.data(), d_dprobs.data(),
                                 d_dout.data(), d_q.data(), d_k.data(), d_v.data(),
                                 d_cpu_probs.data(), gpu, max_len);
        cuda::synchronize();
        const std::string shape = " seqs=" + std::to_string(S) + " hd=" + std::to_string(c.hd);
        expect_close(d_out.to_host(), out, cuda::kFp32Sums, "attention_forward" + shape);
        expect_close(d_probs.to_host(), probs, cuda::kFp32Sums, "attention_forward probs" + shape);
        expect_close(d_dq.to_host(), dq, cuda::kFp32Sums, "attention_backward dq" + shape);
        expect_close(d_dk.to_host(), dk, cuda::kFp32Sums, "attention_backward dk" + shape);
        expect_close(d_dv.to_host(), dv, cuda::kFp32Sums, "attention_backward dv" + shape);
    }
}

// Rows of different sequences at different positions, their blocks scattered through the pool;
// then rows long enough that their scores need more than 48 KiB of shared memory (the opt-in).
TEST(CudaOps, PagedDecodeAttention) {
    REQUIRE_GPU();
    struct Case {
        std::vector<int32_t> positions;
        int n_blocks;
    };
    for (const Case& c : {Case{{0, 15, 16, 70, 129, 3}, 40}, Case{{13000, 12287, 5}, 1700}}) {
        const int block_size = 16, heads = 14, kv_heads = 2, hd = 64;
        const int64_t token_stride = (int64_t)kv_heads * hd + 8;  // padded slots
        const int64_t block_stride = block_size * token_stride;
        const auto pool_k = random_floats((size_t)c.n_blocks * block_stride, 18),
                   pool_v = random_floats((size_t)c.n_blocks * block_stride, 19);
        const int rows = (int)c.positions.size();
        const int max_blocks =
            *std::max_element(c.positions.begin(), c.positions.end()) / block_size + 1;
        std::vector<int32_t> perm(c.n_blocks);
        std::iota(perm.begin(), perm.end(), 0);
        Rng rng(20);
        for (int i = c.n_blocks - 1; i > 0; i--) std::swap(perm[i], perm[rng.below(i + 1)]);
        std::vector<int32_t> flat((size_t)rows * max_blocks, 0);
        std::vector<const int32_t*> tables(rows);
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b <= c.positions[r] / block_size; b++) {
                flat[(size_t)r * max_blocks + b] = perm[(r * 7 + b) % c.n_blocks];
            }
            tables[r] = flat.data() + (size_t)r * max_blocks;
        }
        const auto q = random_floats((size_t)rows * heads * hd, 21);
        std::vector<float> out((size_t)rows * heads * hd);
        kernels::paged_attention_forward(
            out.data(), q.data(),
            {pool_k.data(), pool_v.data(), block_size, block_stride, token_stride},
            {rows, heads, kv_heads, hd, c.positions.data(), tables.data()});
        DeviceArray<float> d_k(pool_k), d_v(pool_v), d_q(q), d_out(out.size());
        DeviceArray<int32_t> d_pos(c.positions), d_tables(flat);
        cuda::paged_attention_forward(
            d_out.data(), d_q.data(),
            {d_k.data(), d_v.data(), block_size, block_stride, token_stride},
            {rows, heads, kv_heads, hd, d_pos.data(), d_tables.data(), max_blocks});
        cuda::synchronize();
        expect_close(d_out.to_host(), out, cuda::kFp32Sums,
                     "paged_attention_forward max position " + std::to_string(max_blocks * 16));
    }
}

TEST(CudaOps, SwigluAndResidual) {
    REQUIRE_GPU();
    for (size_t n : {size_t{1}, size_t{1000}, size_t{4864 * 33}}) {
        const auto gate = random_floats(n, 22, -8.0f, 8.0f), up = random_floats(n, 23),
                   dout = random_floats(n, 24);
        std::vector<float> out(n), dgate(n, 0.5f), dup(n, 0.5f), res(n);
        kernels::swiglu_forward(out.data(), gate.data(), up.data(), n);
        kernels::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);
        kernels::residual_forward(res.data(), gate.data(), up.data(), n);
        DeviceArray<float> d_gate(gate), d_up(up), d_dout(dout), d_out(n), d_res(n),
            d_dgate(std::vector<float>(n, 0.5f)), d_dup(std::vector<float>(n, 0.5f));
        cuda::swiglu_forward(d_out.data(), d_gate.data(), d_up.data(), n);
        cuda::swiglu_backward(d_dgate.data(), d_dup.data(), d_dout.data(), d_gate.data(),
                              d_up.data(), n);
        cuda::residual_forward(d_res.data(), d_gate.data(), d_up.data(), n);
        cuda::synchronize();
        const std::string shape = " n=" + std::to_string(n);
        expect_close(d_out.to_host(), out, cuda::kTranscendental, "swiglu_forward" + shape);
        expect_close(d_dgate.to_host(), dgate, cuda::kTranscendental,
                     "swiglu_backward dgate" + shape);
        expect_close(d_dup.to_host(), dup, cuda::kTranscendental, "swiglu_backward dup" + shape);
        expect_close(d_res.to_host(), res, cuda::kExact, "residual_forward" + shape);
    }
}

TEST(CudaOps, CrossEntropyForwardAndBackward) {
    REQUIRE_GPU();
    for (auto [N, V] : {std::pair{1, 3}, {9, 1000}, {17, 151936}}) {
        const auto logits = random_floats((size_t)N * V, 25, -6.0f, 6.0f);
        const auto targets = random_ints(N, V, 26);
        std::vector<float> weight = random_floats(N, 27, 0.0f, 2.0f);
        weight[0] = 0.0f;  // a masked row
        std::vector<float> losses(N), lse(N), grad = logits;
        kernels::cross_entropy_forward(losses.data(), lse.data(), logits.data(), targets.data(), N,
                                       V);
        kernels::cross_entropy_backward_inplace(grad.data(), lse.data(), targets.data(),
                                                weight.data(), N, V);
        DeviceArray<float> d_logits(logits), d_losses(N), d_lse(N), d_weight(weight);
        DeviceArray<int32_t> d_targets(targets);
        cuda::cross_entropy_forward(d_losses.data(), d_lse.data(), d_logits.data(),
                                    d_targets.data(), N, V);
        DeviceArray<float> d_cpu_lse(lse);
        cuda::cross_entropy_backward_inplace(d_logits.data(), d_cpu_lse.data(), d_targets.data(),
                                             d_weight.data(), N, V);
        cuda::synchronize();
        const std::string shape = " N=" + std::to_string(N) + " V=" + std::to_string(V);
        expect_close(d_losses.to_host(), losses, cuda::kFp32Sums, "cross_entropy_forward" + shape);
        expect_close(d_lse.to_host(), lse, cuda::kFp32Sums, "cross_entropy_forward lse" + shape);
        expect_close(d_logits.to_host(), grad, cuda::kFp32Sums, "cross_entropy_backward" + shape);
    }
}

TEST(CudaOps, AdamWClippingAndNorm) {
    REQUIRE_GPU();
    const size_t n = 100003;  // six 2^14 blocks and a tail
    const auto grad = random_floats(n, 28), param0 = random_floats(n, 29);
    const kernels::AdamWParams hp{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    std::vector<float> p = param0, m(n, 0.0f), v(n, 0.0f);
    DeviceArray<float> d_p(param0), d_g(grad), d_m(n), d_v(n);
    d_m.zero();
    d_v.zero();
    for (int64_t t = 1; t <= 3; t++) {
        kernels::adamw_update(p.data(), grad.data(), m.data(), v.data(), n, hp, t);
        cuda::adamw_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, hp, t);
    }
    cuda::synchronize();
    expect_close(d_p.to_host(), p, cuda::kFusedRounding, "adamw_update param");
    expect_close(d_m.to_host(), m, cuda::kFusedRounding, "adamw_update m");
    expect_close(d_v.to_host(), v, cuda::kFusedRounding, "adamw_update v");
    const double cpu_norm = kernels::global_norm(grad.data(), n);
    const double gpu_norm = cuda::global_norm(d_g.data(), n);
    EXPECT_NEAR(gpu_norm, cpu_norm, cuda::kDoubleSums.rtol * cpu_norm);
    std::vector<float> g = grad;
    const double before = kernels::clip_grad_norm(g.data(), n, 1.0);
    EXPECT_NEAR(cuda::clip_grad_norm(d_g.data(), n, 1.0), before, cuda::kDoubleSums.rtol * before);
    cuda::synchronize();
    // The scale factor comes from norms equal to 1e-12: the clipped values within an ulp or two.
    expect_close(d_g.to_host(), g, {0.0, 1e-6}, "clip_grad_norm");
}

// sample_token's rule with a given draw u (its one draw forced).
int32_t cpu_draw(const float* logits, int V, const SamplingParams& p, double u) {
    if (p.temperature <= 0.0f) {
        return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
    }
    return draw_token(sampling_distribution(logits, V, p), u);
}

// The sampled token equals the CPU sampler's for the same logits, params and draw: greedy,
// temperature alone, each filter alone and together; rows of logits with ties (quantised to
// 0.5: ties go by id) and duplicated maxima (greedy takes the first); draws just below 1 (the
// last candidate, where rounding decides).
TEST(CudaOps, SamplingDrawsTheCpuSamplersToken) {
    REQUIRE_GPU();
    for (int V : {1000, 50000, 151936}) {
        const int B = 96;
        auto logits = random_floats((size_t)B * V, 30, -5.0f, 5.0f);
        for (int b = 32; b < 64; b++) {  // ties
            for (int i = 0; i < V; i++) {
                float& x = logits[(size_t)b * V + i];
                x = std::round(x * 2.0f) / 2.0f;
            }
        }
        for (int b = 64; b < B; b += 8) {  // the maximum twice, the second later
            float* row = logits.data() + (size_t)b * V;
            row[V / 3] = 9.0f;
            row[V / 2] = 9.0f;
        }
        std::vector<SamplingParams> params(B);
        std::vector<double> u(B);
        std::vector<int32_t> expected(B);
        for (int b = 0; b < B; b++) {
            SamplingParams& p = params[b];
            switch (b % 8) {
                case 0:
                    p.temperature = 0.0f;
                    break;
                case 1:
                    p.temperature = 1.0f;
                    break;
                case 2:
                    p.temperature = 0.7f;
                    p.top_k = 20;
                    break;
                case 3:
                    p.temperature = 1.0f;
                    p.top_p = 0.9f;
                    break;
                case 4:
                    p.temperature = 1.3f;
                    p.min_p = 0.05f;
                    break;
                case 5:
                    p.temperature = 0.8f;
                    p.top_k = 50;
                    p.top_p = 0.95f;
                    p.min_p = 0.02f;
                    break;
                case 6:
                    p.temperature = 1.0f;
                    p.top_k = 1;
                    break;
                default:
                    p.temperature = 2.0f;
                    p.top_p = 0.5f;
                    break;
            }
            p.seed = 1000 + b;
            const float* row = logits.data() + (size_t)b * V;
            if (b >= 80) {
                // A draw just below 1: the last candidate of the row's distribution.
                u[b] = 1.0 - 0x1.0p-53;
                expected[b] = cpu_draw(row, V, p, u[b]);
            } else {
                Rng draw(p.seed);
                u[b] = draw.uniform();  // sample_token's one draw
                Rng rng(p.seed);
                expected[b] = sample_token(row, V, p, rng);
                EXPECT_EQ(cpu_draw(row, V, p, u[b]), expected[b]) << "u is sample_token's one draw";
            }
        }
        DeviceArray<float> d_logits(logits);
        std::vector<int32_t> got(B);
        cuda::sample_tokens(got.data(), d_logits.data(), B, V, params.data(), u.data());
        cuda::synchronize();
        for (int b = 0; b < B; b++) {
            EXPECT_EQ(got[b], expected[b])
                << "V=" << V << " row " << b << " (case " << b % 8 << ")";
        }
    }
}

}  // namespace
}  // namespace crucible
