#include <cblas.h>

#include "kernels/kernels.h"
#include "kernels/parallel.h"

namespace crucible::kernels {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float* o = out + (size_t)n * OC;
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
        beta = 1.0f;
    }
    // out (N, OC) = inp (N, C) @ weight^T (C, OC). A single row (one-sequence decode) is a
    // matrix-vector product: OpenBLAS 0.3.21's sgemm does not route M = 1 to its faster gemv.
    if (N == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, beta, out, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
                out, OC);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    // dinp (N, C) += dout (N, OC) @ weight (OC, C)
    if (dinp) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    }
    // dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
                dweight, C);
    if (dbias) {
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
}

}  // namespace crucible::kernels
