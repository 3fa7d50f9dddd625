#include <cblas.h>
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/lane_sum.h"
#include "kernels/parallel.h"
#include "kernels/small_batch_linear.h"

namespace crucible::kernels {

namespace {

// out[n][j] (+)= dot(w[j, :], x[n, :]) for NR input rows (1 to 4) and the rows j of w (OC x C,
// row-major). With so few rows decode is a pure stream over the weights, so the loop reads one
// weight row at a time, front to back, 8 * K floats per iteration into K independent FMA chains
// per input row. On one core of the development machine one row with K = 4 streams about 1.6x
// faster than OpenBLAS 0.3.21's sgemv (about 20 against 13 GB/s), while interleaving four
// weight rows, the textbook blocking, is no faster than sgemv (docs/PERFORMANCE.md). From two
// input rows on, K = 2 keeps the accumulators in registers. With more rows the broadcast kernel
// (small_batch_linear.cpp) does less work per weight.
template <int NR, int K>
void dot_rows(float* out, const float* x, const float* w, int C, int OC, bool accumulate) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < OC; j++) {
        const float* r = w + (size_t)j * C;
        __m256 acc[NR][K];
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++)
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) acc[n][k] = _mm256_setzero_ps();
        int c = 0;
        for (; c + 8 * K <= C; c += 8 * K) {
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) {
                const __m256 wv = _mm256_loadu_ps(r + c + 8 * k);
#pragma GCC unroll 4
                for (int n = 0; n < NR; n++) {
                    acc[n][k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)n * C + c + 8 * k),
                                                acc[n][k]);
                }
            }
        }
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++) {
            float s = sum_chains<K>(acc[n]);
            const float* xn = x + (size_t)n * C;
            for (int t = c; t < C; t++) s += r[t] * xn[t];
            float* o = out + (size_t)n * OC + j;
            *o = accumulate ? *o + s : s;
        }
    }
}

}  // namespace

LinearKernel linear_kernel(int N) {
    if (N < kSmallBatchMinRows) return LinearKernel::weight_stream;
    if (N <= kSmallBatchMaxRows) return LinearKernel::small_batch;
    return LinearKernel::blas;
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
    const LinearKernel kernel = linear_kernel(N);
    // 5 to 128 rows (batched decode): read the weights once, in place (small_batch_linear.cpp).
    if (kernel == LinearKernel::small_batch) {
        small_batch_linear(out, inp, weight, bias, N, C, OC,
                           cpu_has_avx512() ? SimdPath::avx512 : SimdPath::avx2);
        return;
    }
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float* o = out + (size_t)n * OC;
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
        beta = 1.0f;
    }
    // out (N, OC) = inp (N, C) @ weight^T (C, OC). Up to 4 rows (decode of a few sequences) it
    // is a stream over the weights (dot_rows above).
    static_assert(kSmallBatchMinRows == 5, "dot_rows is instantiated for 1 to 4 rows");
    if (kernel == LinearKernel::weight_stream && N > 0) {
        const bool acc = beta != 0.0f;
        switch (N) {
            case 1:
                return dot_rows<1, 4>(out, inp, weight, C, OC, acc);
            case 2:
                return dot_rows<2, 2>(out, inp, weight, C, OC, acc);
            case 3:
                return dot_rows<3, 2>(out, inp, weight, C, OC, acc);
            default:
                return dot_rows<4, 2>(out, inp, weight, C, OC, acc);
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
                out, OC);
}

void bias_backward(float* dbias, const float* dout, int N, int OC) {
    // Threads own output columns, so every column sums its rows in order.
#pragma omp parallel
    {
        int j0, j1;
        thread_slice(OC, &j0, &j1);
        for (int n = 0; n < N; n++) {
            const float* d = dout + (size_t)n * OC;
            for (int j = j0; j < j1; j++) dbias[j] += d[j];
        }
    }
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    // dinp (N, C) += dout (N, OC) @ weight (OC, C)
    if (dinp) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    }
    // dweight (OC, C) += dout^T (OC, N) @ inp (N, C); none for a frozen weight
    if (dweight) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
                    dweight, C);
    }
    if (dbias) bias_backward(dbias, dout, N, OC);
}

}  // namespace crucible::kernels
