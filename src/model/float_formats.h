// The 16-bit float formats of model files, to and from fp32: IEEE half precision (fp16, what
// GGUF's F16 tensors and Q8_0 scales hold and safetensors' F16) and bfloat16 (bf16, the top
// half of an fp32: safetensors' BF16). Bit patterns are passed as uint16_t.
#pragma once

#include <cstdint>

namespace crucible {

// Exact: every fp16 value (subnormals included) is an fp32 value; inf stays inf and a NaN
// keeps its sign and payload (shifted into fp32's mantissa).
float fp16_to_fp32(uint16_t h);
// Rounds to nearest even; values from 65520 up become inf, below 2^-25 zero (sign kept), and
// those between are rounded to subnormals. A NaN stays NaN: made quiet, keeping its sign and
// the top 10 bits of its payload.
uint16_t fp32_to_fp16(float f);

// Exact: the bits moved up 16 places (NaNs and their payloads unchanged).
float bf16_to_fp32(uint16_t b);
// Rounds to nearest even, as torch does (large finite values may round to inf). A NaN stays
// NaN: its top 16 bits with the quiet bit set.
uint16_t fp32_to_bf16(float f);

}  // namespace crucible
