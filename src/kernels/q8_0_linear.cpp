#include "kernels/q8_0_linear.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/lane_sum.h"
#include "kernels/small_batch_linear.h"

namespace crucible::kernels {

namespace {

// One block's 32 weights as four vectors of 8: its fp16 scale widened (F16C, exact) times each
// int8 (exact in fp32).
inline void block_vectors(const uint8_t* b, __m256 v[4]) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++)
        v[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i])), d);
}

inline void dequantize_block(float* dst, const uint8_t* b) {
    __m256 v[4];
    block_vectors(b, v);
    for (int i = 0; i < 4; i++) _mm256_storeu_ps(dst + 8 * i, v[i]);
}

void dequantize_rows(float* dst, const uint8_t* w, int rows, int C) {
    const size_t blocks = (size_t)rows * (C / kQ8_0Block);
    for (size_t b = 0; b < blocks; b++)
        dequantize_block(dst + b * kQ8_0Block, w + b * kQ8_0BlockBytes);
}

size_t row_bytes(int C) {
    return (size_t)(C / kQ8_0Block) * kQ8_0BlockBytes;
}

// Rows per panel of the sgemm path: about 1 MB of fp32.
int panel_rows(int C) {
    return std::max(48, 262144 / C / 12 * 12);
}

// The sgemm path: each panel of rows dequantized by all threads into one buffer, then
// use(deq, o0, rows) for weight rows o0 .. o0 + rows - 1, in order.
template <class Use>
void for_each_panel(const uint8_t* weight, int C, int OC, const Use& use) {
    const int P = panel_rows(C);
    std::vector<float> deq((size_t)std::min(P, OC) * C);
    for (int o0 = 0; o0 < OC; o0 += P) {
        const int rows = std::min(P, OC - o0);
#pragma omp parallel for schedule(static)
        for (int j = 0; j < rows; j++) {
            dequantize_rows(deq.data() + (size_t)j * C, weight + (o0 + j) * row_bytes(C), 1, C);
        }
        use(deq.data(), o0, rows);
    }
}

// dot_rows (linear.cpp) over the dequantized rows, bit for bit, reading the bytes: the same K
// chains of 8 lanes (a block of 32 is 32 / 8K of its iterations, chain k taking the block's
// vectors i with i % K == k, in order), each weight d * q formed exactly before its FMA, the
// same reduction; C % 32 == 0 leaves no tail. With a bias, out = bias + the sum, as there.
template <int NR, int K>
void dot_rows_q8_0(float* out, const float* x, const uint8_t* w, const float* bias, int C, int OC) {
    const int blocks = C / kQ8_0Block;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < OC; j++) {
        const uint8_t* r = w + (size_t)j * row_bytes(C);
        __m256 acc[NR][K];
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++)
#pragma GCC unroll 4
            for (int k = 0; k < K; k++) acc[n][k] = _mm256_setzero_ps();
        for (int b = 0; b < blocks; b++, r += kQ8_0BlockBytes) {
            __m256 wv[4];
            block_vectors(r, wv);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const size_t c = (size_t)b * kQ8_0Block + 8 * i;
#pragma GCC unroll 4
                for (int n = 0; n < NR; n++) {
                    acc[n][i % K] = _mm256_fmadd_ps(wv[i], _mm256_loadu_ps(x + (size_t)n * C + c),
                                                    acc[n][i % K]);
                }
            }
        }
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++) {
            const float s = sum_chains<K>(acc[n]);
            out[(size_t)n * OC + j] = bias ? bias[j] + s : s;
        }
    }
}

void prefetch_rows(const void* source, int j0, int rows, int C) {
    const char* p = static_cast<const char*>(source) + j0 * row_bytes(C);
    const size_t bytes = rows * row_bytes(C);
    for (size_t i = 0; i < bytes; i += 64) _mm_prefetch(p + i, _MM_HINT_T0);
}

// small_batch_linear's weight tiles.
void fill_rows(const void* source, int j0, int rows, int C, float* dst) {
    dequantize_rows(dst, static_cast<const uint8_t*>(source) + j0 * row_bytes(C), rows, C);
}

}  // namespace

void dequantize_q8_0(float* dst, const uint8_t* src, size_t n) {
    for (size_t b = 0; b < n / kQ8_0Block; b++) {
        dequantize_block(dst + b * kQ8_0Block, src + b * kQ8_0BlockBytes);
    }
}

void linear_forward_q8_0(float* out, const float* inp, const uint8_t* weight, const float* bias,
                         int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (linear_kernel(N) == LinearKernel::blas) {
        // Many rows (training, prefill): panels in turn, each dequantized by all threads and
        // multiplied by the threaded sgemm straight into out's columns.
        for_each_panel(weight, C, OC, [&](const float* deq, int o0, int rows) {
            float beta = 0.0f;
            if (bias) {
#pragma omp parallel for schedule(static)
                for (int n = 0; n < N; n++) {
                    std::memcpy(out + (size_t)n * OC + o0, bias + o0, rows * sizeof(float));
                }
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, rows, C, 1.0f, inp, C, deq, C,
                        beta, out + o0, OC);
        });
        return;
    }
    // Up to 128 rows (decode): the weight stream and the small-batch kernel read the bytes,
    // dequantizing in registers or a tile of rows at a time on the thread that uses it.
    static_assert(kSmallBatchMinRows == 5, "dot_rows_q8_0 is instantiated for 1 to 4 rows");
    switch (linear_kernel(N)) {
        case LinearKernel::small_batch:
            return small_batch_linear(out, inp, WeightRows{fill_rows, weight, prefetch_rows}, bias,
                                      N, C, OC,
                                      cpu_has_avx512() ? SimdPath::avx512 : SimdPath::avx2);
        default:
            break;
    }
    switch (N) {
        case 1:
            return dot_rows_q8_0<1, 4>(out, inp, weight, bias, C, OC);
        case 2:
            return dot_rows_q8_0<2, 2>(out, inp, weight, bias, C, OC);
        case 3:
            return dot_rows_q8_0<3, 2>(out, inp, weight, bias, C, OC);
        default:
            return dot_rows_q8_0<4, 2>(out, inp, weight, bias, C, OC);
    }
}

void linear_backward_q8_0(float* dinp, const float* dout, const uint8_t* weight, int N, int C,
                          int OC) {
    if (N <= 0 || OC <= 0) return;
    for_each_panel(weight, C, OC, [&](const float* deq, int o0, int rows) {
        // dinp += dout[:, o0:o0+rows] @ W[o0:o0+rows, :]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, rows, 1.0f, dout + o0, OC, deq,
                    C, 1.0f, dinp, C);
    });
}

void embedding_forward_q8_0(float* out, const int32_t* tokens, const uint8_t* wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        dequantize_rows(out + (size_t)n * C, wte + (size_t)tokens[n] * row_bytes(C), 1, C);
    }
}

}  // namespace crucible::kernels
