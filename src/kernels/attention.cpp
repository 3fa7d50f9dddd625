#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "kernels/fast_exp.h"
#include "kernels/kernels.h"

namespace crucible::kernels {

// attention_forward and attention_backward each restate the shape arithmetic (strides, group
// size, scale) at their top, as llm.c's kernels do, so that each reads alone beside the
// formula it computes; the repeat is deliberate.

// Rows per block of the causal score matrix (see attention_forward).
static constexpr int kRowBlock = 64;

int64_t attention_probs_size(const int32_t* seq_len, int n_seqs, int n_heads) {
    int64_t total = 0;
    for (int s = 0; s < n_seqs; s++) total += (int64_t)n_heads * seq_len[s] * seq_len[s];
    return total;
}

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const AttentionShape& sh) {
    const int hd = sh.head_dim;
    const int q_stride = sh.n_heads * hd;
    const int kv_stride = sh.n_kv_heads * hd;
    const int groups = sh.n_heads / sh.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int items = sh.n_seqs * sh.n_heads;
    // One (sequence, head) pair per task; BLAS runs single-threaded inside the region.
#pragma omp parallel for schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
        const int s = item / sh.n_heads;
        const int h = item % sh.n_heads;
        const int g = h / groups;
        const int T = sh.seq_len[s];
        const size_t row0 = sh.seq_start[s];
        const float* qh = q + row0 * q_stride + (size_t)h * hd;
        const float* kh = k + row0 * kv_stride + (size_t)g * hd;
        const float* vh = v + row0 * kv_stride + (size_t)g * hd;
        float* P = probs + sh.probs_offset[s] + (size_t)h * T * T;
        // Row blocks of the causal score matrix: rows [r0, r1) only see columns [0, r1), so
        // the GEMMs skip most of the upper triangle (about 40% of the work at T = 256).
        for (int r0 = 0; r0 < T; r0 += kRowBlock) {
            const int r1 = std::min(T, r0 + kRowBlock);
            const int M = r1 - r0;
            float* Pb = P + (size_t)r0 * T;
            // P[r0:r1, 0:r1] = scale * Q[r0:r1] K[0:r1]^T, then causal softmax in fp32.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, r1, hd, scale,
                        qh + (size_t)r0 * q_stride, q_stride, kh, kv_stride, 0.0f, Pb, T);
            for (int i = r0; i < r1; i++) {
                float* row = P + (size_t)i * T;
                float mx = row[0];
#pragma omp simd reduction(max : mx)
                for (int j = 1; j <= i; j++) mx = std::max(mx, row[j]);
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j <= i; j++) {
                    row[j] = fast_exp(row[j] - mx);
                    sum += row[j];
                }
                const float inv = 1.0f / sum;
                for (int j = 0; j <= i; j++) row[j] *= inv;
                for (int j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            // out[r0:r1] = P[r0:r1, 0:r1] V[0:r1]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hd, r1, 1.0f, Pb, T, vh,
                        kv_stride, 0.0f, out + (row0 + r0) * q_stride + (size_t)h * hd, q_stride);
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, float* dprobs, const float* dout,
                        const float* q, const float* k, const float* v, const float* probs,
                        const AttentionShape& sh) {
    const int hd = sh.head_dim;
    const int q_stride = sh.n_heads * hd;
    const int kv_stride = sh.n_kv_heads * hd;
    const int groups = sh.n_heads / sh.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int items = sh.n_seqs * sh.n_kv_heads;
    // One (sequence, KV head) pair per task: the query heads of a group all write into the
    // same dK/dV slice, so they run in order inside one task.
#pragma omp parallel for schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
        const int s = item / sh.n_kv_heads;
        const int g = item % sh.n_kv_heads;
        const int T = sh.seq_len[s];
        const size_t row0 = sh.seq_start[s];
        const float* kg = k + row0 * kv_stride + (size_t)g * hd;
        const float* vg = v + row0 * kv_stride + (size_t)g * hd;
        float* dkg = dk + row0 * kv_stride + (size_t)g * hd;
        float* dvg = dv + row0 * kv_stride + (size_t)g * hd;
        for (int h = g * groups; h < (g + 1) * groups; h++) {
            const float* qh = q + row0 * q_stride + (size_t)h * hd;
            const float* doh = dout + row0 * q_stride + (size_t)h * hd;
            float* dqh = dq + row0 * q_stride + (size_t)h * hd;
            const float* P = probs + sh.probs_offset[s] + (size_t)h * T * T;
            float* dS = dprobs + sh.probs_offset[s] + (size_t)h * T * T;
            for (int r0 = 0; r0 < T; r0 += kRowBlock) {
                const int r1 = std::min(T, r0 + kRowBlock);
                const int M = r1 - r0;
                const float* Pb = P + (size_t)r0 * T;
                float* dSb = dS + (size_t)r0 * T;
                const float* qb = qh + (size_t)r0 * q_stride;
                const float* dob = doh + (size_t)r0 * q_stride;
                // dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1] ; dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]^T
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, M, 1.0f, Pb, T, dob,
                            q_stride, 1.0f, dvg, kv_stride);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, r1, hd, 1.0f, dob, q_stride,
                            vg, kv_stride, 0.0f, dSb, T);
                // softmax backward: dS = P * (dP - sum_j P dP), times the score scale
                for (int i = r0; i < r1; i++) {
                    const float* p = P + (size_t)i * T;
                    float* d = dS + (size_t)i * T;
                    float dot = 0.0f;
                    for (int j = 0; j <= i; j++) dot += p[j] * d[j];
                    for (int j = 0; j <= i; j++) d[j] = scale * p[j] * (d[j] - dot);
                    for (int j = i + 1; j < r1; j++) d[j] = 0.0f;
                }
                // dQ[r0:r1] += dS[r0:r1, 0:r1] K[0:r1] ; dK[0:r1] += dS[r0:r1, 0:r1]^T Q[r0:r1]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hd, r1, 1.0f, dSb, T, kg,
                            kv_stride, 1.0f, dqh + (size_t)r0 * q_stride, q_stride);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, M, 1.0f, dSb, T, qb,
                            q_stride, 1.0f, dkg, kv_stride);
            }
        }
    }
}

}  // namespace crucible::kernels
