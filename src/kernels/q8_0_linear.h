// The linear layer and embedding over a Q8_0 matrix, GGUF's 8-bit format: each row of C inputs
// in blocks of 32, a block an fp16 scale d then 32 int8 q (34 bytes, 1.0625 per weight), the
// weight d * q. Every such product is exact in fp32 (a 7-bit integer times an 11-bit
// significand), so dequantizing loses nothing: these kernels compute what the fp32 kernels
// (kernels.h) compute over the dequantized matrix, reading about a quarter of the bytes.
// Quantizing (ggml's quantize_row_q8_0_ref) is model/gguf's encode_ggml.
#pragma once

#include <cstddef>
#include <cstdint>

namespace crucible::kernels {

inline constexpr int kQ8_0Block = 32;
inline constexpr int kQ8_0BlockBytes = 34;

// dst (n floats) = the values of the Q8_0 bytes at src. REQUIRES: n % 32 == 0.
void dequantize_q8_0(float* dst, const uint8_t* src, size_t n);

// out (N, OC) = inp (N, C) @ dequantize(weight) (OC, C)^T + bias (OC, or nullptr), through
// linear_forward's kernel for N rows. Up to kSmallBatchMinRows - 1 rows: its weight stream with
// each block dequantized in registers; up to kSmallBatchMaxRows: small_batch_linear with a tile
// of rows dequantized at a time on the thread that multiplies it — both bit for bit
// linear_forward over the dequantized matrix. More rows: panels of about 1 MB dequantized, each
// an sgemm; sgemm's blocking depends on the matrix's size, so a panel's sums may round
// differently (the same sums, within fp32 rounding).
// REQUIRES: C % 32 == 0.
void linear_forward_q8_0(float* out, const float* inp, const uint8_t* weight, const float* bias,
                         int N, int C, int OC);

// The backward of a frozen Q8_0 layer: dinp (N, C) += dout (N, OC) @ dequantize(weight), panels
// of weight rows summed in order (sgemm each). The weight has no gradient: a Q8_0 matrix is a
// frozen base (LoRA trains beside it). REQUIRES: C % 32 == 0.
void linear_backward_q8_0(float* dinp, const float* dout, const uint8_t* weight, int N, int C,
                          int OC);

// out (N, C) = the dequantized rows tokens[n] of wte (V, C).
void embedding_forward_q8_0(float* out, const int32_t* tokens, const uint8_t* wte, int N, int C);

}  // namespace crucible::kernels
