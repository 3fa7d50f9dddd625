#include <cmath>

#include "kernels/kernels.h"
#include "kernels/parallel.h"

namespace crucible::kernels {

void rope_table_init(float* cos_table, float* sin_table, int max_pos, int head_dim, float theta) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        // HF: inv_freq = 1 / base ** (arange(0, dim, 2).float() / dim), all in fp32.
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        const float inv_freq = 1.0f / std::pow(theta, exponent);
        for (int p = 0; p < max_pos; p++) {
            const float angle = static_cast<float>(p) * inv_freq;
            cos_table[(size_t)p * half + i] = std::cos(angle);
            sin_table[(size_t)p * half + i] = std::sin(angle);
        }
    }
}

// Rotates each head's pairs (j, j + d/2) by +angle (forward) or -angle (backward).
static void rope_apply(float* x, const int32_t* positions, const float* cos_table,
                       const float* sin_table, int N, int n_heads, int head_dim, float sign) {
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if ((long)N * n_heads * head_dim >= kParallelMinElements)
    for (int n = 0; n < N; n++) {
        const float* c = cos_table + (size_t)positions[n] * half;
        const float* s = sin_table + (size_t)positions[n] * half;
        for (int h = 0; h < n_heads; h++) {
            float* v = x + ((size_t)n * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                const float a = v[j];
                const float b = v[j + half];
                const float sn = sign * s[j];
                v[j] = a * c[j] - b * sn;
                v[j + half] = b * c[j] + a * sn;
            }
        }
    }
}

void rope_forward(float* x, const int32_t* positions, const float* cos_table,
                  const float* sin_table, int N, int n_heads, int head_dim) {
    rope_apply(x, positions, cos_table, sin_table, N, n_heads, head_dim, 1.0f);
}

void rope_backward(float* dx, const int32_t* positions, const float* cos_table,
                   const float* sin_table, int N, int n_heads, int head_dim) {
    rope_apply(dx, positions, cos_table, sin_table, N, n_heads, head_dim, -1.0f);
}

}  // namespace crucible::kernels
