// What GGUF's writer and reader share: the metadata value types, the ggml tensor types we
// write and read with their encodings (F32, F16, BF16, Q8_0), and the data section's alignment.
// The writer is gguf_writer.h (with gguf_tokenizer.h), the reader gguf_reader.h. The rules
// llama.cpp checks for a Qwen2 model are in ../shared/reference/gguf-qwen2.md; the format itself
// is ggml's docs/gguf.md. Little-endian only (as every host we build for).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace crucible {

// The tensor encodings we write and read (the values are ggml's type ids).
enum class GgmlType : uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };

// A metadata value's type (the values are GGUF's type ids).
enum class GgufValueType : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};

// general.alignment when a file does not set it, and what the writer uses.
constexpr uint32_t kGgufAlignment = 32;
// Q8_0: blocks of 32 values, each an fp16 scale then 32 int8.
constexpr size_t kQ8_0BlockSize = 32;
constexpr size_t kQ8_0BlockBytes = 2 + kQ8_0BlockSize;

// `x` rounded up to a multiple of `a`.
inline uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

// Converts a row-major fp32 tensor to `type`'s bytes. Q8_0: ggml's quantize_row_q8_0_ref
// (per block of 32: d = max|x| / 127, q = round(x / d), stored as fp16 d then 32 int8).
// REQUIRES: n % 32 == 0 for Q8_0.
std::vector<uint8_t> encode_ggml(GgmlType type, const float* x, size_t n);
// The same into out, which holds ggml_nbytes(type, n) bytes.
void encode_ggml_into(GgmlType type, const float* x, size_t n, uint8_t* out);
// The inverse (Q8_0, F16 and BF16 dequantized to fp32) of `n` elements held in `data`.
void decode_ggml(GgmlType type, const uint8_t* data, size_t n, float* out);
// Bytes that `n` elements of `type` take. REQUIRES: n % 32 == 0 for Q8_0.
size_t ggml_nbytes(GgmlType type, size_t n);

}  // namespace crucible
