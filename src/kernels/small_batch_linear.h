// The linear layer for a few rows at a time (batched decode): out = inp @ W^T (+ b) that reads
// the weights once, in place, instead of packing them on every call as BLAS does.
#pragma once

namespace crucible::kernels {

// linear_forward sends kSmallBatchMinRows to kSmallBatchMaxRows rows to small_batch_linear
// (src/kernels/linear.cpp); fewer rows stream the weights with vector loads instead.
inline constexpr int kSmallBatchMinRows = 5;
inline constexpr int kSmallBatchMaxRows = 128;

enum class SimdPath { avx2, avx512 };

// Whether this CPU runs the AVX-512 path (checked once).
bool cpu_has_avx512();

// out (N, OC) = inp (N, C) @ weight (OC, C)^T, + bias (OC) when not null. Every output is the
// fused multiply-add chain over c = 0, 1, ..., C-1 in order, starting from 0, with the bias
// added last: the same bits on either path, for any N, tiling or thread count. `path` avx512
// needs cpu_has_avx512().
void small_batch_linear(float* out, const float* inp, const float* weight, const float* bias, int N,
                        int C, int OC, SimdPath path);

// A weight held in another format, which `fill(source, j0, rows, C, dst)` writes as fp32 rows
// j0 .. j0 + rows - 1 into dst (rows x C), a tile at a time on the thread that multiplies it.
// `prefetch(source, j0, rows, C)`, if set, asks for the next tile's bytes while this one is
// multiplied: the fill otherwise waits on memory with no arithmetic to hide it.
struct WeightRows {
    void (*fill)(const void* source, int j0, int rows, int C, float* dst);
    const void* source;
    void (*prefetch)(const void* source, int j0, int rows, int C) = nullptr;
};
// The same over such a weight: bit for bit what the call above computes over its fp32 rows.
void small_batch_linear(float* out, const float* inp, const WeightRows& weight, const float* bias,
                        int N, int C, int OC, SimdPath path);

}  // namespace crucible::kernels
