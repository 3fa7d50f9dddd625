// The reduction that ends a weight stream (linear.cpp's fp32 one and q8_0_linear.cpp's): K
// chains of 8 lanes added as (c0 + c1) or ((c0 + c1) + (c2 + c3)), then the 8 lanes pairwise.
// One definition, so the two streams round alike and a Q8_0 row sums to the bits of its
// dequantized fp32 row.
#pragma once

#include <immintrin.h>

namespace crucible::kernels {

template <int K>
inline float sum_chains(const __m256* acc) {
    static_assert(K == 1 || K == 2 || K == 4, "1, 2 or 4 chains");
    __m256 a = acc[0];
    if constexpr (K == 2) a = _mm256_add_ps(acc[0], acc[1]);
    if constexpr (K == 4) {
        a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

}  // namespace crucible::kernels
