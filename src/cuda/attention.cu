// Attention on the GPU, written for clarity first (llm.c's first kernels): one thread block per
// (sequence, head, query row), the row's softmax in fp32 with expf, P.V summed over the keys in
// order. The backward adds into dk and dv with atomics (rows of many blocks meet there). Paged
// decode attention: one block per (query row, head), its scores in shared memory.
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <string>

#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace crucible::cuda {

namespace {

constexpr unsigned kAttentionThreads = 128;

struct Row {
    int T, start, kvh, i;
    int64_t prow;  // probs offset of row i of head h
};

__device__ inline bool row_of(const kernels::AttentionShape& sh, Row* r) {
    const int s = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
    r->T = sh.seq_len[s];
    if (i >= r->T) return false;
    r->start = sh.seq_start[s];
    r->kvh = h / (sh.n_heads / sh.n_kv_heads);
    r->i = i;
    r->prow = sh.probs_offset[s] + ((int64_t)h * r->T + i) * r->T;
    return true;
}

__global__ void attention_forward_kernel(float* out, float* probs, const float* q, const float* k,
                                         const float* v, kernels::AttentionShape sh, float scale) {
    Row r;
    if (!row_of(sh, &r)) return;
    const int h = blockIdx.y, hd = sh.head_dim;
    const int q_stride = sh.n_heads * hd, kv_stride = sh.n_kv_heads * hd;
    const float* qi = q + (size_t)(r.start + r.i) * q_stride + (size_t)h * hd;
    float* p = probs + r.prow;
    float mx = -FLT_MAX;
    for (int j = threadIdx.x; j < r.T; j += blockDim.x) {
        if (j > r.i) {
            p[j] = 0.0f;
            continue;
        }
        const float* kj = k + (size_t)(r.start + j) * kv_stride + (size_t)r.kvh * hd;
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += qi[d] * kj[d];
        p[j] = scale * dot;
        mx = fmaxf(mx, p[j]);
    }
    mx = block_max(mx, -FLT_MAX);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= r.i; j += blockDim.x) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / block_sum(sum);
    for (int j = threadIdx.x; j <= r.i; j += blockDim.x) p[j] *= inv;
    __syncthreads();  // the row's probabilities, written by every thread, are read by all
    float* o = out + (size_t)(r.start + r.i) * q_stride + (size_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= r.i; j++) {
            acc += p[j] * v[(size_t)(r.start + j) * kv_stride + (size_t)r.kvh * hd + d];
        }
        o[d] = acc;
    }
}

__global__ void attention_backward_kernel(float* dq, float* dk, float* dv, float* dprobs,
                                          const float* dout, const float* q, const float* k,
                                          const float* v, const float* probs,
                                          kernels::AttentionShape sh, float scale) {
    Row r;
    if (!row_of(sh, &r)) return;
    const int h = blockIdx.y, hd = sh.head_dim;
    const int q_stride = sh.n_heads * hd, kv_stride = sh.n_kv_heads * hd;
    const size_t qrow = (size_t)(r.start + r.i) * q_stride + (size_t)h * hd;
    const float* qi = q + qrow;
    const float* doi = dout + qrow;
    const float* p = probs + r.prow;
    float* ds = dprobs + r.prow;
    // dP_ij = dout_i . v_j, then the softmax backward dS = scale * P * (dP - sum_j P dP).
    float dot = 0.0f;
    for (int j = threadIdx.x; j <= r.i; j += blockDim.x) {
        const float* vj = v + (size_t)(r.start + j) * kv_stride + (size_t)r.kvh * hd;
        float dp = 0.0f;
        for (int d = 0; d < hd; d++) dp += doi[d] * vj[d];
        ds[j] = dp;
        dot += p[j] * dp;
    }
    dot = block_sum(dot);
    for (int j = threadIdx.x; j <= r.i; j += blockDim.x) ds[j] = scale * p[j] * (ds[j] - dot);
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= r.i; j++) {
            acc += ds[j] * k[(size_t)(r.start + j) * kv_stride + (size_t)r.kvh * hd + d];
        }
        dq[qrow + d] += acc;
    }
    const int n = (r.i + 1) * hd;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const int j = e / hd, d = e % hd;
        const size_t kv = (size_t)(r.start + j) * kv_stride + (size_t)r.kvh * hd + d;
        atomicAdd(dk + kv, ds[j] * qi[d]);
        atomicAdd(dv + kv, p[j] * doi[d]);
    }
}

__global__ void paged_attention_kernel(float* out, const float* q, PagedKvView kv,
                                       PagedQueryRows rows, float scale) {
    extern __shared__ float scores[];
    const int row = blockIdx.x, h = blockIdx.y, hd = rows.head_dim;
    const int pos = rows.positions[row];
    const int kvh = h / (rows.n_heads / rows.n_kv_heads);
    const int32_t* table = rows.block_tables + (size_t)row * rows.max_blocks;
    const float* qi = q + ((size_t)row * rows.n_heads + h) * hd;
    float mx = -FLT_MAX;
    for (int j = threadIdx.x; j <= pos; j += blockDim.x) {
        const float* kj = kv.k + (int64_t)table[j / kv.block_size] * kv.block_stride +
                          (int64_t)(j % kv.block_size) * kv.token_stride + (size_t)kvh * hd;
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += qi[d] * kj[d];
        scores[j] = scale * dot;
        mx = fmaxf(mx, scores[j]);
    }
    mx = block_max(mx, -FLT_MAX);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= pos; j += blockDim.x) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = 1.0f / block_sum(sum);
    __syncthreads();
    float* o = out + ((size_t)row * rows.n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float* vj = kv.v + (int64_t)table[j / kv.block_size] * kv.block_stride +
                              (int64_t)(j % kv.block_size) * kv.token_stride + (size_t)kvh * hd;
            acc += scores[j] * inv * vj[d];
        }
        o[d] = acc;
    }
}

}  // namespace

namespace {
// Query rows go in the grid's z dimension, which holds at most 65535.
void check_rows(int max_len, const char* op) {
    if (max_len > 65535) {
        throw Error(std::string(op) + ": sequences of " + std::to_string(max_len) +
                    " tokens are longer than this kernel takes (65535)");
    }
}
}  // namespace

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const kernels::AttentionShape& shape, int max_len) {
    if (shape.n_seqs == 0 || max_len == 0 || shape.n_heads == 0) return;
    check_rows(max_len, "attention_forward");
    const dim3 grid(shape.n_seqs, shape.n_heads, max_len);
    const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
    attention_forward_kernel<<<grid, kAttentionThreads>>>(out, probs, q, k, v, shape, scale);
    check_launch("attention_forward");
}

void attention_backward(float* dq, float* dk, float* dv, float* dprobs, const float* dout,
                        const float* q, const float* k, const float* v, const float* probs,
                        const kernels::AttentionShape& shape, int max_len) {
    if (shape.n_seqs == 0 || max_len == 0 || shape.n_heads == 0) return;
    check_rows(max_len, "attention_backward");
    const dim3 grid(shape.n_seqs, shape.n_heads, max_len);
    const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
    attention_backward_kernel<<<grid, kAttentionThreads>>>(dq, dk, dv, dprobs, dout, q, k, v, probs,
                                                           shape, scale);
    check_launch("attention_backward");
}

void paged_attention_forward(float* out, const float* q, const PagedKvView& kv,
                             const PagedQueryRows& rows) {
    if (rows.n_rows == 0 || rows.n_heads == 0) return;
    // Scores for every position a row may see: the longest its block table holds.
    const size_t positions = (size_t)rows.max_blocks * kv.block_size;
    const size_t smem = positions * sizeof(float);
    // The block reductions' own static shared memory (two arrays of 32 floats) comes on top.
    const size_t static_smem = 2 * 32 * sizeof(float);
    if (smem + static_smem > 48 * 1024) {
        int device = 0, limit = 0;
        check(cudaGetDevice(&device), "cudaGetDevice");
        check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
              "cudaDeviceGetAttribute");
        if (smem + static_smem > (size_t)limit) {
            throw Error("paged_attention_forward: " + std::to_string(positions) +
                        " positions need more shared memory than a block has (" +
                        std::to_string(limit) + " bytes)");
        }
        check(cudaFuncSetAttribute(paged_attention_kernel,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
              "cudaFuncSetAttribute");
    }
    const dim3 grid(rows.n_rows, rows.n_heads);
    const float scale = 1.0f / std::sqrt(static_cast<float>(rows.head_dim));
    paged_attention_kernel<<<grid, kAttentionThreads, smem>>>(out, q, kv, rows, scale);
    check_launch("paged_attention_forward");
}

}  // namespace crucible::cuda
