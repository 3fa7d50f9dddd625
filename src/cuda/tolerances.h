// What the op-by-op harness (tests/cuda/) accepts between a GPU op and its CPU kernel, in one
// place: |gpu - cpu| <= atol + rtol * |cpu| for every element. Inputs are drawn in [-1, 1) (the
// shapes are the harness's), so the absolute terms are on that scale.
#pragma once

namespace crucible::cuda {

struct Tolerance {
    double atol;
    double rtol;
};

// The same operations in the same order with the same roundings: moves, integer work and
// single additions — embedding forward, bf16 rounding, residual, scaling, the linear layer's
// bias gradient (column sums in row order).
constexpr Tolerance kExact{0.0, 0.0};
// The same formulas, where the CPU's compiler fuses some a*b + c into one rounding (GCC's C++
// default -ffp-contract=fast with -march=x86-64-v3's FMA) and the GPU (--fmad=false) does not:
// RoPE, AdamW.
constexpr Tolerance kFusedRounding{1e-7, 1e-5};
// expf against the CPU's fast_exp (about 2 ulp apart): SwiGLU.
constexpr Tolerance kTranscendental{1e-6, 1e-5};
// fp32 sums in another order (tree sums, cuBLAS tiles, atomics) or fused differently: RMSNorm
// and its weight gradient, the fp32 linear layers, attention and its backward, paged attention,
// cross-entropy, the embedding's backward.
constexpr Tolerance kFp32Sums{2e-5, 2e-4};
// bf16 linear: products exact in fp32 on both sides, fp32 sums in another order.
constexpr Tolerance kBf16Sums{5e-5, 5e-4};
// Sums of squares in double (global_norm): relative.
constexpr Tolerance kDoubleSums{0.0, 1e-12};

}  // namespace crucible::cuda
