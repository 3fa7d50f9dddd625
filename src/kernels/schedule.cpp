#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace crucible::kernels {

float lr_at(int64_t step, int64_t total, int64_t warmup, float lr, float min_ratio,
            LrSchedule schedule) {
    if (step < warmup) return lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
    if (schedule == LrSchedule::constant || total <= warmup) return lr;
    const double progress =
        std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
    return static_cast<float>(lr * (min_ratio + (1.0 - min_ratio) * cosine));
}

double clip_coefficient(double norm, double max_norm) {
    return max_norm / (norm + 1e-6);
}

double clip_grad_norm(float* grad, size_t n, double max_norm) {
    const double norm = global_norm(grad, n);
    const double coef = clip_coefficient(norm, max_norm);
    if (coef < 1.0) scale_inplace(grad, n, static_cast<float>(coef));
    return norm;
}

}  // namespace crucible::kernels
