#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace crucible::kernels {

AdamWStep adamw_step(const AdamWParams& hp, int64_t t) {
    // torch.optim.AdamW (single-tensor path): decay first, then the Adam step with
    // step_size = lr / (1 - b1^t) and denom = sqrt(v) / sqrt(1 - b2^t) + eps.
    const double bc1 = 1.0 - std::pow((double)hp.beta1, (double)t);
    const double bc2 = 1.0 - std::pow((double)hp.beta2, (double)t);
    return {static_cast<float>(hp.lr / bc1), static_cast<float>(std::sqrt(bc2)),
            1.0f - hp.lr * hp.weight_decay};
}

void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                  const AdamWParams& hp, int64_t t) {
    // Plain locals, not a structured binding: clang 14 (the fuzz build) cannot capture those in
    // an OpenMP region.
    const AdamWStep s = adamw_step(hp, t);
    const float step_size = s.step_size, bc2_sqrt = s.bc2_sqrt, decay = s.decay;
    const float b1 = hp.beta1, b2 = hp.beta2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = grad[i];
        float p = param[i] * decay;
        const float mi = b1 * m[i] + (1.0f - b1) * g;
        const float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p -= step_size * mi / (std::sqrt(vi) / bc2_sqrt + hp.eps);
        param[i] = p;
    }
}

double global_norm(const float* grad, size_t n) {
    // Fixed-size blocks summed in order: the result does not depend on the thread count.
    const size_t block = 1 << 14;
    const size_t n_blocks = (n + block - 1) / block;
    std::vector<double> partial(n_blocks, 0.0);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < n_blocks; b++) {
        const size_t end = (b + 1) * block < n ? (b + 1) * block : n;
        double s = 0.0;
        for (size_t i = b * block; i < end; i++) s += (double)grad[i] * grad[i];
        partial[b] = s;
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return std::sqrt(total);
}

void scale_inplace(float* x, size_t n, float scale) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= scale;
}

}  // namespace crucible::kernels
