// The ops that reduce along a row, one thread block per row: RMSNorm and cross-entropy. The
// row's sums are tree sums across the block (the CPU sums left to right): the same value up to
// rounding.
#include <cuda_runtime.h>

#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace crucible::cuda {

namespace {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp,
                                       const float* weight, int C, float eps) {
    const size_t n = blockIdx.x;
    const float* x = inp + n * C;
    float* y = out + n * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
    ss = block_sum(ss);
    const float r = 1.0f / sqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = weight[c] * (x[c] * r);
}

__global__ void rmsnorm_backward_inp_kernel(float* dinp, const float* dout, const float* inp,
                                            const float* weight, const float* rstd, int C) {
    const size_t n = blockIdx.x;
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    float* dx = dinp + n * C;
    const float r = rstd[n];
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += weight[c] * dy[c] * x[c] * r;
    const float mean_dot = block_sum(dot) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        dx[c] += r * (weight[c] * dy[c] - x[c] * r * mean_dot);
    }
}

// One thread per column, the rows in order: the CPU's sum, bit for bit.
__global__ void rmsnorm_backward_weight_kernel(float* dweight, const float* dout, const float* inp,
                                               const float* rstd, int N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = dweight[c];
    for (int n = 0; n < N; n++) {
        acc += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
    }
    dweight[c] = acc;
}

__global__ void cross_entropy_forward_kernel(float* losses, float* lse, const float* logits,
                                             const int32_t* targets, int V) {
    const size_t n = blockIdx.x;
    const float* row = logits + n * V;
    float mx = -FLT_MAX;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx, -FLT_MAX);
    double sum = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += (double)expf(row[j] - mx);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        const float l = mx + static_cast<float>(log(sum));
        lse[n] = l;
        losses[n] = l - row[targets[n]];
    }
}

__global__ void cross_entropy_backward_kernel(float* logits, const float* lse,
                                              const int32_t* targets, const float* weight, int V) {
    const size_t n = blockIdx.x;
    float* row = logits + n * V;
    const float w = weight[n];
    const float l = lse[n];
    const int target = targets[n];
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float g = w == 0.0f ? 0.0f : w * expf(row[j] - l);
        if (j == target && w != 0.0f) g -= w;
        row[j] = g;
    }
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
    if (N == 0 || C == 0) return;
    rmsnorm_forward_kernel<<<N, kThreads>>>(out, rstd, inp, weight, C, eps);
    check_launch("rmsnorm_forward");
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
    if (N == 0 || C == 0) return;
    rmsnorm_backward_inp_kernel<<<N, kThreads>>>(dinp, dout, inp, weight, rstd, C);
    check_launch("rmsnorm_backward (input)");
    rmsnorm_backward_weight_kernel<<<blocks_for(C), kThreads>>>(dweight, dout, inp, rstd, N, C);
    check_launch("rmsnorm_backward (weight)");
}

void cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                           int N, int V) {
    if (N == 0) return;
    cross_entropy_forward_kernel<<<N, kThreads>>>(losses, lse, logits, targets, V);
    check_launch("cross_entropy_forward");
}

void cross_entropy_backward_inplace(float* logits, const float* lse, const int32_t* targets,
                                    const float* weight, int N, int V) {
    if (N == 0) return;
    cross_entropy_backward_kernel<<<N, kThreads>>>(logits, lse, targets, weight, V);
    check_launch("cross_entropy_backward_inplace");
}

}  // namespace crucible::cuda
