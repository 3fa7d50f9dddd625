// A vectorizable expf. glibc's scalar expf is a call per element that GCC will not vectorize
// without -ffast-math; softmax, SwiGLU and cross-entropy spend most of their time in it.
// This is the Cephes single-precision scheme (range reduction by ln 2, degree-6 polynomial),
// accurate to about 2 ulp on the range used here; the kernel tests check it against double.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace crucible::kernels {

inline float fast_exp(float x) {
    // Below -87.3 the result is ~1e-38: negligible next to any softmax denominator.
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    const float n = std::floor(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

}  // namespace crucible::kernels
