#include <cmath>

#include "kernels/kernels.h"
#include "kernels/parallel.h"

namespace crucible::kernels {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C >= kParallelMinElements)
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        float* y = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        const float r = 1.0f / std::sqrt(ss / C + eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++) y[c] = weight[c] * (x[c] * r);
    }
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
    // y = w * x * r with r = (mean(x^2) + eps)^-1/2
    // dx = r * (w*dy - xhat * mean(w*dy*xhat)), xhat = x * r
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        const float* dy = dout + (size_t)n * C;
        float* dx = dinp + (size_t)n * C;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += weight[c] * dy[c] * x[c] * r;
        const float mean_dot = dot / C;
        for (int c = 0; c < C; c++) dx[c] += r * (weight[c] * dy[c] - x[c] * r * mean_dot);
    }
#pragma omp parallel
    {
        int c0, c1;
        thread_slice(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float* x = inp + (size_t)n * C;
            const float* dy = dout + (size_t)n * C;
            const float r = rstd[n];
            for (int c = c0; c < c1; c++) dweight[c] += dy[c] * x[c] * r;
        }
    }
}

}  // namespace crucible::kernels
