// The linear layer in bfloat16: weights held as bf16, the input rounded to bf16 as it enters the
// matmul, every product (exact in fp32: two 8-bit significands) summed in fp32, the output kept
// in fp32. The matmul torch.autocast(dtype=torch.bfloat16) runs for nn.Linear (which then also
// rounds its output to bf16) and a BF16 GGUF in llama.cpp. A bf16 value is its bit pattern in
// a uint16_t (the top half of an fp32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace crucible::kernels {

// Round to nearest even, as torch does (large finite values may round to inf). A NaN stays
// NaN: its top 16 bits with the quiet bit set.
inline uint16_t to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
    bits += 0x7fff + ((bits >> 16) & 1);
    return static_cast<uint16_t>(bits >> 16);
}
// Exact: the bits moved up 16 places.
inline float from_bf16(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
// dst[i] = to_bf16(src[i]) for n elements.
void to_bf16(uint16_t* dst, const float* src, size_t n);

// How the products are summed. dpbf16: AVX512_BF16's vdpbf16ps, two multiply-adds per fp32 lane
// per instruction. fma: the same sums with AVX2 fused multiply-adds on the values widened to
// fp32, for CPUs without it. Each output is the same chain on either path: over k = 0, 2, 4, ...
// the odd product k+1 added first, then k (vdpbf16ps's order), from 0, the bias last. (An
// implementation of vdpbf16ps may flush subnormal inputs and outputs to zero; fma does not.)
enum class Bf16Path { dpbf16, fma };
bool cpu_has_avx512_bf16();
Bf16Path default_bf16_path();

// out (N, OC) = bf16(inp) (N, C) @ weight (OC, C)^T + bias (OC, fp32, or nullptr); with
// `accumulate` the sum is added to out instead. From 5 rows every output is the chain above for
// any N, tiling or thread count, so a row scores the same bits in a batch of 5 or of 1000; up to
// 4 rows (decode) a stream over the weights sums in vector lanes, the same value up to rounding.
void linear_forward_bf16(float* out, const float* inp, const uint16_t* weight, const float* bias,
                         int N, int C, int OC, bool accumulate = false,
                         Bf16Path path = default_bf16_path());
// The backward of linear_forward_bf16 in the same precision (as autocast's): dinp (N, C) +=
// bf16(dout) @ weight (nullptr to skip), dweight (OC, C) += bf16(dout)^T @ bf16(inp) (nullptr:
// frozen), dbias (OC)
// += the fp32 column sums of dout (nullptr if no bias). Gradients are fp32.
void linear_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const uint16_t* weight, int N, int C, int OC,
                          Bf16Path path = default_bf16_path());

// out (N, C) = wte[tokens[n]] widened to fp32.
void embedding_forward_bf16(float* out, const int32_t* tokens, const uint16_t* wte, int N, int C);

}  // namespace crucible::kernels
