#include <cmath>

#include "kernels/fast_exp.h"
#include "kernels/kernels.h"

namespace crucible::kernels {

void cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                           int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* row = logits + (size_t)n * V;
        float mx = row[0];
        for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += fast_exp(row[j] - mx);
        const float l = mx + static_cast<float>(std::log(sum));
        lse[n] = l;
        losses[n] = l - row[targets[n]];
    }
}

void cross_entropy_backward_inplace(float* logits, const float* lse, const int32_t* targets,
                                    const float* weight, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float* row = logits + (size_t)n * V;
        const float w = weight[n];
        if (w == 0.0f) {
            for (int j = 0; j < V; j++) row[j] = 0.0f;
            continue;
        }
        const float l = lse[n];
#pragma omp simd
        for (int j = 0; j < V; j++) row[j] = w * fast_exp(row[j] - l);
        row[targets[n]] -= w;
    }
}

}  // namespace crucible::kernels
