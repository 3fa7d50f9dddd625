// The CUDA kernels: every op of src/kernels/kernels.h (and the engine's paged attention and
// sampler) on device memory, with the same signatures and conventions — flat row-major fp32
// buffers, backward functions ACCUMULATE into gradients, inputs assumed validated. Pointers are
// device pointers unless a comment says host. Every call is queued on the default stream;
// device.h's synchronize() waits and reports a kernel's error. GEMMs go through cuBLAS.
//
// Where a GPU sums in another order than the CPU kernel (atomics in the backward of the
// embedding and attention, tree reductions), results differ by rounding; tolerances.h states
// per op and dtype what the op-by-op harness (tests/cuda/) accepts against the CPU kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/sampler.h"
#include "kernels/kernels.h"

namespace crucible::cuda {

// ---- embedding ------------------------------------------------------------------------------
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C);
// dwte (V, C) += (atomic adds: the order of a token's rows is not fixed)
void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C);
// out (N, C) = wte (bf16) rows widened to fp32
void embedding_forward_bf16(float* out, const int32_t* tokens, const uint16_t* wte, int N, int C);

// ---- RMSNorm ----------------------------------------------------------------------------------
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps);
// dinp +=, dweight += (each column summed over the rows in row order: no atomics)
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);

// ---- linear (cuBLAS) ------------------------------------------------------------------------
// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias; fp32 throughout (CUBLAS_COMPUTE_32F, no
// TF32, so the sums are fp32's).
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC);
// dinp (N, C) += dout @ W (nullptr: skip); dweight (OC, C) += dout^T @ inp (nullptr: frozen);
// dbias (OC) += column sums of dout (nullptr: none)
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);
// The bf16 linear of kernels/bf16_linear.h: the input rounded to bf16 (nearest even), bf16
// weights, fp32 sums (CUBLAS_COMPUTE_32F), fp32 out. `scratch` holds N * C bf16 values.
void linear_forward_bf16(float* out, const float* inp, const uint16_t* weight, const float* bias,
                         int N, int C, int OC, uint16_t* scratch);
// dst[i] = bf16(src[i]), round to nearest even, NaN kept NaN (kernels::to_bf16)
void to_bf16(uint16_t* dst, const float* src, size_t n);

// ---- rotary position embedding (tables from kernels::rope_table_init, copied to the device) --
void rope_forward(float* x, const int32_t* positions, const float* cos_table,
                  const float* sin_table, int N, int n_heads, int head_dim);
void rope_backward(float* dx, const int32_t* positions, const float* cos_table,
                   const float* sin_table, int N, int n_heads, int head_dim);

// ---- causal GQA attention over packed sequences --------------------------------------------
// The shape's seq_start, seq_len and probs_offset point to DEVICE arrays; n_seqs and the head
// counts are host values. `max_len` is the longest sequence (host). probs as the CPU kernel's.
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const kernels::AttentionShape& shape, int max_len);
// dq, dk, dv += (dk, dv by atomic adds over the query rows). dprobs: scratch of
// attention_probs_size() floats.
void attention_backward(float* dq, float* dk, float* dv, float* dprobs, const float* dout,
                        const float* q, const float* k, const float* v, const float* probs,
                        const kernels::AttentionShape& shape, int max_len);

// ---- paged decode attention ------------------------------------------------------------------
// As kernels::paged_attention_forward, with the block tables flat on the device: row i's table
// is block_tables[i * max_blocks ...].
struct PagedQueryRows {
    int n_rows;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    const int32_t* positions;     // (n_rows), device
    const int32_t* block_tables;  // (n_rows, max_blocks), device
    int max_blocks;
};
struct PagedKvView {
    const float* k;
    const float* v;
    int block_size;
    int64_t block_stride;
    int64_t token_stride;
};
void paged_attention_forward(float* out, const float* q, const PagedKvView& kv,
                             const PagedQueryRows& rows);

// ---- SwiGLU, residual -----------------------------------------------------------------------
void swiglu_forward(float* out, const float* gate, const float* up, size_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n);
void residual_forward(float* out, const float* a, const float* b, size_t n);

// ---- cross-entropy ----------------------------------------------------------------------------
void cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                           int N, int V);
void cross_entropy_backward_inplace(float* logits, const float* lse, const int32_t* targets,
                                    const float* weight, int N, int V);

// ---- optimizer ----------------------------------------------------------------------------
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                  const kernels::AdamWParams& hp, int64_t t);
// sqrt(sum g^2), summed in double (per-block partial sums, then the blocks in order); host value
double global_norm(const float* grad, size_t n);
void scale_inplace(float* x, size_t n, float scale);
// torch.nn.utils.clip_grad_norm_: scales by max_norm / (norm + 1e-6) when below 1; returns the
// norm before
double clip_grad_norm(float* grad, size_t n, double max_norm);

// ---- sampling -------------------------------------------------------------------------------
// One token per row of logits (B, V): sample_token's rule (temperature 0: the first maximum;
// else temperature, top-k, top-p, min-p, then the first id whose cumulative probability passes
// u), row b with its own params[b] and uniform draw u[b] (host arrays; the caller draws u from
// its Rng as the CPU sampler does). Probabilities in double; the sums run in another order than
// the CPU's, so a token may differ only where u falls within rounding of a boundary. tokens: host
// (B). Scratch device memory is kept between calls (per host thread).
void sample_tokens(int32_t* tokens, const float* logits, int B, int V, const SamplingParams* params,
                   const double* u);

}  // namespace crucible::cuda
