// The ops that touch each element once: embedding, bf16 rounding, RoPE, SwiGLU, residual,
// scaling and AdamW. Built with --fmad=false (cmake/cuda.cmake): every product and sum rounds on
// its own, where the CPU's compiler fuses some into FMAs (tolerances.h); expf may differ from the
// CPU's fast_exp by a few ulp.
#include <cuda_runtime.h>

#include <cmath>

#include "cuda/common.cuh"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace crucible::cuda {

namespace {

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte, int N,
                                         int C) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    const size_t n = i / C, c = i % C;
    out[i] = wte[(size_t)tokens[n] * C + c];
}

__global__ void embedding_forward_bf16_kernel(float* out, const int32_t* tokens,
                                              const uint16_t* wte, int N, int C) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    const size_t n = i / C, c = i % C;
    out[i] = __uint_as_float(static_cast<uint32_t>(wte[(size_t)tokens[n] * C + c]) << 16);
}

__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens,
                                          int N, int C) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    const size_t n = i / C, c = i % C;
    atomicAdd(dwte + (size_t)tokens[n] * C + c, dout[i]);
}

__device__ inline uint16_t round_bf16(float f) {
    uint32_t bits = __float_as_uint(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

__global__ void to_bf16_kernel(uint16_t* dst, const float* src, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = round_bf16(src[i]);
}

// One thread per (row, head, pair j): rotates (j, j + d/2) by sign * angle.
__global__ void rope_kernel(float* x, const int32_t* positions, const float* cos_table,
                            const float* sin_table, int N, int n_heads, int head_dim, float sign) {
    const int half = head_dim / 2;
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)N * n_heads * half) return;
    const size_t j = i % half, nh = i / half, n = nh / n_heads;
    const size_t t = (size_t)positions[n] * half + j;
    float* v = x + nh * head_dim;
    const float a = v[j], b = v[j + half];
    const float c = cos_table[t], sn = sign * sin_table[t];
    v[j] = a * c - b * sn;
    v[j + half] = b * c + a * sn;
}

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout,
                                       const float* gate, const float* up, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] += dout[i] * (g * sig);
}

__global__ void residual_kernel(float* out, const float* a, const float* b, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, size_t n, float scale) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= scale;
}

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t n,
                             float step_size, float bc2_sqrt, float decay, float b1, float b2,
                             float eps) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = grad[i];
    float p = param[i] * decay;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    param[i] = p;
}

// The CPU's blocks of 2^14 elements: block b's sum of squares in double into partial[b].
constexpr size_t kNormBlock = 1 << 14;

__global__ void sum_squares_kernel(double* partial, const float* x, size_t n) {
    const size_t begin = blockIdx.x * kNormBlock;
    const size_t end = begin + kNormBlock < n ? begin + kNormBlock : n;
    double s = 0.0;
    for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
    if ((size_t)N * C == 0) return;
    embedding_forward_kernel<<<blocks_for((size_t)N * C), kThreads>>>(out, tokens, wte, N, C);
    check_launch("embedding_forward");
}

void embedding_forward_bf16(float* out, const int32_t* tokens, const uint16_t* wte, int N, int C) {
    if ((size_t)N * C == 0) return;
    embedding_forward_bf16_kernel<<<blocks_for((size_t)N * C), kThreads>>>(out, tokens, wte, N, C);
    check_launch("embedding_forward_bf16");
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
    if ((size_t)N * C == 0) return;
    embedding_backward_kernel<<<blocks_for((size_t)N * C), kThreads>>>(dwte, dout, tokens, N, C);
    check_launch("embedding_backward");
}

void to_bf16(uint16_t* dst, const float* src, size_t n) {
    if (n == 0) return;
    to_bf16_kernel<<<blocks_for(n), kThreads>>>(dst, src, n);
    check_launch("to_bf16");
}

void rope_forward(float* x, const int32_t* positions, const float* cos_table,
                  const float* sin_table, int N, int n_heads, int head_dim) {
    const size_t n = (size_t)N * n_heads * (head_dim / 2);
    if (n == 0) return;
    rope_kernel<<<blocks_for(n), kThreads>>>(x, positions, cos_table, sin_table, N, n_heads,
                                             head_dim, 1.0f);
    check_launch("rope_forward");
}

void rope_backward(float* dx, const int32_t* positions, const float* cos_table,
                   const float* sin_table, int N, int n_heads, int head_dim) {
    const size_t n = (size_t)N * n_heads * (head_dim / 2);
    if (n == 0) return;
    rope_kernel<<<blocks_for(n), kThreads>>>(dx, positions, cos_table, sin_table, N, n_heads,
                                             head_dim, -1.0f);
    check_launch("rope_backward");
}

void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
    if (n == 0) return;
    swiglu_forward_kernel<<<blocks_for(n), kThreads>>>(out, gate, up, n);
    check_launch("swiglu_forward");
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
    if (n == 0) return;
    swiglu_backward_kernel<<<blocks_for(n), kThreads>>>(dgate, dup, dout, gate, up, n);
    check_launch("swiglu_backward");
}

void residual_forward(float* out, const float* a, const float* b, size_t n) {
    if (n == 0) return;
    residual_kernel<<<blocks_for(n), kThreads>>>(out, a, b, n);
    check_launch("residual_forward");
}

void scale_inplace(float* x, size_t n, float scale) {
    if (n == 0) return;
    scale_kernel<<<blocks_for(n), kThreads>>>(x, n, scale);
    check_launch("scale_inplace");
}

void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                  const kernels::AdamWParams& hp, int64_t t) {
    if (n == 0) return;
    const kernels::AdamWStep s = kernels::adamw_step(hp, t);  // the CPU's constants
    adamw_kernel<<<blocks_for(n), kThreads>>>(param, grad, m, v, n, s.step_size, s.bc2_sqrt,
                                              s.decay, hp.beta1, hp.beta2, hp.eps);
    check_launch("adamw_update");
}

double global_norm(const float* grad, size_t n) {
    if (n == 0) return 0.0;
    const size_t blocks = (n + kNormBlock - 1) / kNormBlock;
    DeviceArray<double> partial(blocks);
    sum_squares_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(partial.data(), grad, n);
    check_launch("global_norm");
    double total = 0.0;
    for (double p : partial.to_host()) total += p;  // the blocks in order, as the CPU adds them
    return std::sqrt(total);
}

double clip_grad_norm(float* grad, size_t n, double max_norm) {
    const double norm = global_norm(grad, n);
    const double coef = kernels::clip_coefficient(norm, max_norm);
    if (coef < 1.0) scale_inplace(grad, n, static_cast<float>(coef));
    return norm;
}

}  // namespace crucible::cuda
