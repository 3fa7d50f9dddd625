// CPU kernels for training and running Qwen2-family transformers, llm.c style: each op is a
// forward and a backward over flat fp32 buffers with explicit dimensions.
//
// Conventions
//   N  = number of token rows (sequences are packed one after another, no padding)
//   C  = input channels, OC = output channels, V = vocabulary size
//   Linear weights are PyTorch's (OC, C), row-major.
//   Backward functions ACCUMULATE (+=) into gradient buffers; the caller zeroes them.
//   Inputs are assumed validated (kernels do not throw).
//   Every reduction runs in a fixed order for a fixed thread count, so a run is reproducible
//   bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace crucible::kernels {

// ---- token embedding --------------------------------------------------------------------
// out (N, C) = wte[tokens[n]]
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C);
// dwte (V, C) += dout rows scattered by token
void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int N, int C);

// ---- RMSNorm (HF Qwen2RMSNorm: x * rsqrt(mean(x^2) + eps) * w) ----------------------------
// out (N, C), rstd (N) saved for backward
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps);
// dinp (N, C) +=, dweight (C) +=
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);

// ---- linear: out = inp @ W^T + b ------------------------------------------------------------
// out (N, OC), inp (N, C), weight (OC, C), bias (OC) or nullptr. Up to 4 rows: a kernel that
// streams the weights; kSmallBatchMinRows (5) to kSmallBatchMaxRows (128) rows:
// small_batch_linear, whose outputs are exact in-order FMA chains (the same bits for any N in
// that range); more rows: OpenBLAS sgemm.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC);
// Which of those kernels linear_forward uses for N rows.
enum class LinearKernel { weight_stream, small_batch, blas };
LinearKernel linear_kernel(int N);
// dbias (OC) += the column sums of dout (N, OC), in row order: a linear layer's bias gradient.
void bias_backward(float* dbias, const float* dout, int N, int OC);
// dinp (N, C) += (nullptr to skip), dweight (OC, C) += (nullptr: a frozen weight), dbias (OC)
// += (nullptr if no bias or frozen)
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);

// ---- rotary position embedding, rotate_half (NeoX) convention ----------------------------
// Fills cos/sin tables (max_pos, head_dim/2) exactly as HF does in fp32:
// inv_freq[i] = 1 / theta^(2i/head_dim), angle = pos * inv_freq[i].
void rope_table_init(float* cos_table, float* sin_table, int max_pos, int head_dim, float theta);
// In place on x (N, n_heads * head_dim) with per-row positions.
void rope_forward(float* x, const int32_t* positions, const float* cos_table,
                  const float* sin_table, int N, int n_heads, int head_dim);
// In place on dx: applies the transposed rotation (the inverse).
void rope_backward(float* dx, const int32_t* positions, const float* cos_table,
                   const float* sin_table, int N, int n_heads, int head_dim);

// ---- causal grouped-query attention over packed sequences ------------------------------
// Sequence s occupies rows [seq_start[s], seq_start[s] + seq_len[s]). Query head h reads KV
// head h / (n_heads / n_kv_heads). probs holds, per sequence, (n_heads, T, T) softmax rows
// (upper triangle zero) at offset probs_offset[s]; attention_probs_size() gives the total.
struct AttentionShape {
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int n_seqs;
    const int32_t* seq_start;     // (n_seqs)
    const int32_t* seq_len;       // (n_seqs)
    const int64_t* probs_offset;  // (n_seqs)
};
int64_t attention_probs_size(const int32_t* seq_len, int n_seqs, int n_heads);
// out (N, n_heads*hd); q (N, n_heads*hd); k, v (N, n_kv_heads*hd); probs see above.
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       const AttentionShape& shape);
// dq, dk, dv +=. dprobs: scratch of attention_probs_size() floats.
void attention_backward(float* dq, float* dk, float* dv, float* dprobs, const float* dout,
                        const float* q, const float* k, const float* v, const float* probs,
                        const AttentionShape& shape);

// ---- SwiGLU: out = silu(gate) * up ------------------------------------------------------
void swiglu_forward(float* out, const float* gate, const float* up, size_t n);
// dgate, dup +=
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n);

// ---- residual -----------------------------------------------------------------------------
// out = a + b (n elements)
void residual_forward(float* out, const float* a, const float* b, size_t n);

// ---- cross-entropy with a per-token weight ----------------------------------------------
// losses (N) = -log softmax(logits)[target]; lse (N) = logsumexp of each row, for backward.
void cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets,
                           int N, int V);
// Overwrites logits (N, V) with d(sum_n weight[n] * loss[n]) / dlogits = weight[n] *
// (softmax - onehot). Rows with weight 0 become zero.
void cross_entropy_backward_inplace(float* logits, const float* lse, const int32_t* targets,
                                    const float* weight, int N, int V);

// ---- optimizer --------------------------------------------------------------------------
// AdamW exactly as torch.optim.AdamW (decoupled decay, bias correction); step t >= 1.
struct AdamWParams {
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
};
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n,
                  const AdamWParams& hp, int64_t t);
// The scalars of step t that every element's update uses, computed as torch computes them (the
// bias corrections in double, then rounded to fp32): p = p * decay, then
// p -= step_size * m / (sqrt(v) / bc2_sqrt + eps). The CUDA kernel uses the same.
struct AdamWStep {
    float step_size;
    float bc2_sqrt;
    float decay;
};
AdamWStep adamw_step(const AdamWParams& hp, int64_t t);
// sqrt(sum g^2) accumulated in double, in a fixed order.
double global_norm(const float* grad, size_t n);
// Multiplies grads by scale.
void scale_inplace(float* x, size_t n, float scale);

}  // namespace crucible::kernels

namespace crucible::kernels {

// ---- learning-rate schedule ---------------------------------------------------------------
// Linear warmup from lr/warmup to lr over `warmup` steps, then either constant or a cosine
// decay to lr * min_ratio at step `total`. `step` counts from 0.
enum class LrSchedule { constant, cosine };
float lr_at(int64_t step, int64_t total, int64_t warmup, float lr, float min_ratio,
            LrSchedule schedule);

// ---- global gradient-norm clipping (torch.nn.utils.clip_grad_norm_) ---------------------
// Scales grad by max_norm / (norm + 1e-6) when that is below 1. Returns the norm before.
double clip_grad_norm(float* grad, size_t n, double max_norm);
// The factor clip_grad_norm scales by for a gradient of this norm (>= 1: no clipping).
double clip_coefficient(double norm, double max_norm);

// ---- entropy of the softmax ---------------------------------------------------------------
// entropy (N) = -sum_v p_v log p_v of each row's softmax, in double; logits (N, V)
void entropy_forward(double* entropy, const float* logits, int N, int V);

}  // namespace crucible::kernels
