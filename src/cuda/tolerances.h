// What the op-by-op harness (tests/cuda/) accepts between a GPU op and its CPU kernel, in one
// place: |gpu - cpu| <= atol + rtol * |cpu| for every element. Inputs are drawn in [-1, 1) (the
// shapes are the harness's), so the absolute terms are on that scale.
#pragma once

namespace crucible::cuda {

struct Tolerance {
    double atol;
    double rtol;
};

// The same operations in the same order, each rounded as the CPU rounds it (--fmad=false, IEEE
// division and square root): embedding forward, bf16 rounding, RoPE, residual, scaling, AdamW,
// RMSNorm's weight gradient and a linear layer's bias gradient (column sums in row order).
constexpr Tolerance kExact{0.0, 0.0};
// expf against the CPU's fast_exp (about 2 ulp apart): SwiGLU.
constexpr Tolerance kTranscendental{1e-6, 1e-5};
// fp32 sums in another order (tree sums, cuBLAS tiles, atomics): RMSNorm, the fp32 linear
// layers, attention and its backward, paged attention, cross-entropy, the embedding's backward.
constexpr Tolerance kFp32Sums{2e-5, 2e-4};
// bf16 linear: products exact in fp32 on both sides, fp32 sums in another order.
constexpr Tolerance kBf16Sums{5e-5, 5e-4};
// Sums of squares in double (global_norm): relative.
constexpr Tolerance kDoubleSums{0.0, 1e-12};

}  // namespace crucible::cuda
