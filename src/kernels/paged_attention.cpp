#include "kernels/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/fast_exp.h"

namespace crucible::kernels {

void paged_attention_forward(float* out, const float* q, const PagedKvView& kv,
                             const PagedQueryRows& rows) {
    const int hd = rows.head_dim, nh = rows.n_heads;
    const int groups = nh / rows.n_kv_heads;
    const size_t q_stride = (size_t)nh * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int items = rows.n_rows * nh;
#pragma omp parallel
    {
        std::vector<float> scores;  // one row's softmax over its context, per thread
#pragma omp for schedule(dynamic, 4)
        for (int item = 0; item < items; item++) {
            const int i = item / nh, head = item % nh;
            const size_t head_offset = (size_t)(head / groups) * hd;
            const int pos = rows.positions[i];
            const int32_t* table = rows.block_tables[i];
            auto slot = [&](const float* pool, int j) {
                return pool + table[j / kv.block_size] * kv.block_stride +
                       (j % kv.block_size) * kv.token_stride + head_offset;
            };
            const float* qh = q + (size_t)i * q_stride + (size_t)head * hd;
            scores.resize((size_t)pos + 1);
            float mx = -INFINITY;
            for (int j = 0; j <= pos; j++) {
                const float* kj = slot(kv.k, j);
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int d = 0; d < hd; d++) s += qh[d] * kj[d];
                scores[j] = s * scale;
                mx = std::max(mx, scores[j]);
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j <= pos; j++) {
                scores[j] = fast_exp(scores[j] - mx);
                sum += scores[j];
            }
            const float inv = 1.0f / sum;
            float* o = out + (size_t)i * q_stride + (size_t)head * hd;
            std::fill(o, o + hd, 0.0f);
            for (int j = 0; j <= pos; j++) {
                const float* vj = slot(kv.v, j);
                const float p = scores[j] * inv;
#pragma omp simd
                for (int d = 0; d < hd; d++) o[d] += p * vj[d];
            }
        }
    }
}

}  // namespace crucible::kernels
