#include <cblas.h>

#include <cmath>

#include "kernels/kernels.h"

namespace crucible::kernels {

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
        // P (T, T) = scale * Q K^T, then causal softmax in fp32.
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, qh, q_stride, kh,
                    kv_stride, 0.0f, P, T);
        for (int i = 0; i < T; i++) {
            float* row = P + (size_t)i * T;
            float mx = row[0];
            for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
            float sum = 0.0f;
            for (int j = 0; j <= i; j++) {
                row[j] = std::exp(row[j] - mx);
                sum += row[j];
            }
            const float inv = 1.0f / sum;
            for (int j = 0; j <= i; j++) row[j] *= inv;
            for (int j = i + 1; j < T; j++) row[j] = 0.0f;
        }
        // out (T, hd) = P V
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, vh, kv_stride,
                    0.0f, out + row0 * q_stride + (size_t)h * hd, q_stride);
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
            // dV += P^T dO ; dP = dO V^T
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, doh,
                        q_stride, 1.0f, dvg, kv_stride);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, doh, q_stride, vg,
                        kv_stride, 0.0f, dS, T);
            // softmax backward: dS = P * (dP - sum_j P dP), times the score scale
            for (int i = 0; i < T; i++) {
                const float* p = P + (size_t)i * T;
                float* d = dS + (size_t)i * T;
                float dot = 0.0f;
                for (int j = 0; j <= i; j++) dot += p[j] * d[j];
                for (int j = 0; j <= i; j++) d[j] = scale * p[j] * (d[j] - dot);
                for (int j = i + 1; j < T; j++) d[j] = 0.0f;
            }
            // dQ += dS K ; dK += dS^T Q
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, kg,
                        kv_stride, 1.0f, dqh, q_stride);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T, qh,
                        q_stride, 1.0f, dkg, kv_stride);
        }
    }
}

}  // namespace crucible::kernels
