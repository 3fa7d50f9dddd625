// Attention of new tokens over a paged KV cache (the generation engine's decode and chunked
// prefill): each query row attends to positions 0..pos of its own sequence, whose keys and
// values sit in fixed-size blocks of a shared pool, found through the sequence's block table.
// The same softmax as attention_forward (scale, max, fast_exp, normalise, then P·V), one
// (row, head) at a time instead of one GEMM per sequence.
#pragma once

#include <cstdint>

namespace crucible::kernels {

// One layer's keys and values in a block pool. Token slot `o` of block `b` holds
// n_kv_heads * head_dim floats at k + b * block_stride + o * token_stride (and likewise v).
struct PagedKvView {
    const float* k;
    const float* v;
    int block_size;        // token slots per block
    int64_t block_stride;  // floats from one block of this layer to the next
    int64_t token_stride;  // floats from one slot to the next (>= n_kv_heads * head_dim)
};

// The query rows: row i belongs to the sequence with block table block_tables[i] and sits at
// position positions[i]; it sees the keys at positions 0..positions[i] of that table (its own
// key included: write it into the pool first). Query head h reads KV head h / (n_heads /
// n_kv_heads).
struct PagedQueryRows {
    int n_rows;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    const int32_t* positions;            // (n_rows)
    const int32_t* const* block_tables;  // (n_rows) each (positions[i] / block_size + 1)
};

// out (n_rows, n_heads * head_dim) = softmax(q k^T / sqrt(head_dim)) v per row and head;
// q (n_rows, n_heads * head_dim).
void paged_attention_forward(float* out, const float* q, const PagedKvView& kv,
                             const PagedQueryRows& rows);

}  // namespace crucible::kernels
