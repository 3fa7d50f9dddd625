#include <cmath>

#include "kernels/fast_exp.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

namespace crucible::kernels {

void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
#pragma omp parallel for simd schedule(static) if ((long)n >= kParallelMinElements)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
    // silu(g) = g * sig(g); silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float sig = 1.0f / (1.0f + fast_exp(-g));
        const float silu = g * sig;
        dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] += dout[i] * silu;
    }
}

void residual_forward(float* out, const float* a, const float* b, size_t n) {
#pragma omp parallel for schedule(static) if ((long)n >= kParallelMinElements)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

}  // namespace crucible::kernels
