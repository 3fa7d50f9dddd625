// The linear layers on cuBLAS. Row-major X (rows, cols) is column-major X^T, so out = inp W^T
// (row-major) is out^T = W inp^T (column-major): W, stored (OC, C) row-major, is read transposed.
// Every GEMM computes in fp32 (CUBLAS_COMPUTE_32F: no TF32), so it differs from the CPU's
// OpenBLAS sums only by their order.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace crucible::cuda {

namespace {

void check_cublas(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        throw Error(std::string("cuBLAS: ") + what + ": " + cublasGetStatusString(s));
    }
}

// One handle per host thread, made on first use.
cublasHandle_t handle() {
    thread_local cublasHandle_t h = [] {
        cublasHandle_t made = nullptr;
        check_cublas(cublasCreate(&made), "cublasCreate");
        // fp32 inputs with CUBLAS_COMPUTE_32F never use TF32 in the default math mode.
        check_cublas(cublasSetMathMode(made, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
        return made;
    }();
    return h;
}

// C (m x n, column-major) = alpha op(A) op(B) + beta C, fp32 sums.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* A,
          cudaDataType_t a_type, int lda, const void* B, cudaDataType_t b_type, int ldb, float beta,
          float* C, int ldc, const char* what) {
    const float alpha = 1.0f;
    check_cublas(cublasGemmEx(handle(), ta, tb, m, n, k, &alpha, A, a_type, lda, B, b_type, ldb,
                              &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 what);
}

__global__ void add_bias_kernel(float* out, const float* bias, int N, int OC) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] += bias[i % OC];
}

// One thread per column, the rows in order (kernels::bias_backward's sum).
__global__ void bias_backward_kernel(float* dbias, const float* dout, int N, int OC) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float acc = dbias[o];
    for (int n = 0; n < N; n++) acc += dout[(size_t)n * OC + o];
    dbias[o] = acc;
}

void add_bias(float* out, const float* bias, int N, int OC) {
    if (bias == nullptr || (size_t)N * OC == 0) return;
    add_bias_kernel<<<blocks_for((size_t)N * OC), kThreads>>>(out, bias, N, OC);
    check_launch("add_bias");
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
    if (N == 0 || OC == 0) return;
    if (C == 0) {  // an empty sum: the bias alone, as the CPU computes it
        fill_zero(out, (size_t)N * OC * sizeof(float));
        add_bias(out, bias, N, OC);
        return;
    }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, CUDA_R_32F, C, inp, CUDA_R_32F, C, 0.0f, out,
         OC, "linear_forward");
    add_bias(out, bias, N, OC);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    if (N == 0 || C == 0 || OC == 0) {  // nothing to add (a zero-row bias gradient sums nothing)
        return;
    }
    if (dinp != nullptr) {  // dinp^T (C x N) += W^T (C x OC) dout^T (OC x N)
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, CUDA_R_32F, C, dout, CUDA_R_32F, OC, 1.0f,
             dinp, C, "linear_backward (input)");
    }
    if (dweight != nullptr) {  // dW^T (C x OC) += inp^T (C x N) dout (N x OC)
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, CUDA_R_32F, C, dout, CUDA_R_32F, OC, 1.0f,
             dweight, C, "linear_backward (weight)");
    }
    if (dbias != nullptr) {
        bias_backward_kernel<<<blocks_for(OC), kThreads>>>(dbias, dout, N, OC);
        check_launch("linear_backward (bias)");
    }
}

void linear_forward_bf16(float* out, const float* inp, const uint16_t* weight, const float* bias,
                         int N, int C, int OC, uint16_t* scratch) {
    if (N == 0 || OC == 0) return;
    if (C == 0) {
        fill_zero(out, (size_t)N * OC * sizeof(float));
        add_bias(out, bias, N, OC);
        return;
    }
    to_bf16(scratch, inp, (size_t)N * C);
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, CUDA_R_16BF, C, scratch, CUDA_R_16BF, C, 0.0f,
         out, OC, "linear_forward_bf16");
    add_bias(out, bias, N, OC);
}

}  // namespace crucible::cuda
