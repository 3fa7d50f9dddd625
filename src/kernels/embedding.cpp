#include <cstring>

#include "kernels/kernels.h"
#include "kernels/parallel.h"

namespace crucible::kernels {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        std::memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, sizeof(float) * C);
    }
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
    // Tokens repeat, so threads split the channels, not the rows.
#pragma omp parallel
    {
        int c0, c1;
        thread_slice(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            float* dst = dwte + (size_t)tokens[n] * C;
            const float* src = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

}  // namespace crucible::kernels
