#include "kernels/q8_0_linear.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"

namespace crucible::kernels {

namespace {

// One block: its fp16 scale widened (F16C, exact), times each int8 (exact in fp32).
inline void dequantize_block(float* dst, const uint8_t* b) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i]));
        _mm256_storeu_ps(dst + 8 * i, _mm256_mul_ps(v, d));
    }
}

void dequantize_rows(float* dst, const uint8_t* w, int rows, int C) {
    const size_t blocks = (size_t)rows * (C / kQ8_0Block);
    for (size_t b = 0; b < blocks; b++)
        dequantize_block(dst + b * kQ8_0Block, w + b * kQ8_0BlockBytes);
}

size_t row_bytes(int C) {
    return (size_t)(C / kQ8_0Block) * kQ8_0BlockBytes;
}

// Rows per panel: about 256 KB of fp32 (a core's L2 holds it while the kernel reads it), a
// multiple of 12, small_batch_linear's tile height.
int panel_rows(int C) {
    return std::max(12, 65536 / C / 12 * 12);
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
        const int P = 4 * panel_rows(C);
        std::vector<float> deq((size_t)std::min(P, OC) * C);
        for (int o0 = 0; o0 < OC; o0 += P) {
            const int rows = std::min(P, OC - o0);
#pragma omp parallel for schedule(static)
            for (int j = 0; j < rows; j++) {
                dequantize_rows(deq.data() + (size_t)j * C, weight + (o0 + j) * row_bytes(C), 1, C);
            }
            float beta = 0.0f;
            if (bias) {
#pragma omp parallel for schedule(static)
                for (int n = 0; n < N; n++) {
                    std::memcpy(out + (size_t)n * OC + o0, bias + o0, rows * sizeof(float));
                }
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, rows, C, 1.0f, inp, C,
                        deq.data(), C, beta, out + o0, OC);
        }
        return;
    }
    // Up to 128 rows (decode): each thread takes whole panels, dequantizes one into its own
    // buffer and runs linear_forward on it inside this parallel region (there its own parallel
    // loop has one thread), so the weights are read once, as bytes.
    const int P = panel_rows(C);
    const int panels = (OC + P - 1) / P;
#pragma omp parallel
    {
        std::vector<float> deq((size_t)P * C), part((size_t)N * P);
#pragma omp for schedule(static)
        for (int p = 0; p < panels; p++) {
            const int o0 = p * P, rows = std::min(P, OC - o0);
            dequantize_rows(deq.data(), weight + o0 * row_bytes(C), rows, C);
            linear_forward(part.data(), inp, deq.data(), bias ? bias + o0 : nullptr, N, C, rows);
            for (int n = 0; n < N; n++) {
                std::memcpy(out + (size_t)n * OC + o0, part.data() + (size_t)n * rows,
                            rows * sizeof(float));
            }
        }
    }
}

void linear_backward_q8_0(float* dinp, const float* dout, const uint8_t* weight, int N, int C,
                          int OC) {
    if (N <= 0 || OC <= 0) return;
    const int P = 4 * panel_rows(C);
    std::vector<float> deq((size_t)std::min(P, OC) * C);
    for (int o0 = 0; o0 < OC; o0 += P) {
        const int rows = std::min(P, OC - o0);
#pragma omp parallel for schedule(static)
        for (int j = 0; j < rows; j++) {
            dequantize_rows(deq.data() + (size_t)j * C, weight + (o0 + j) * row_bytes(C), 1, C);
        }
        // dinp += dout[:, o0:o0+rows] @ W[o0:o0+rows, :]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, rows, 1.0f, dout + o0, OC,
                    deq.data(), C, 1.0f, dinp, C);
    }
}

void embedding_forward_q8_0(float* out, const int32_t* tokens, const uint8_t* wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        dequantize_rows(out + (size_t)n * C, wte + (size_t)tokens[n] * row_bytes(C), 1, C);
    }
}

}  // namespace crucible::kernels
