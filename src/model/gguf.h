// GGUF (version 3) export for llama.cpp and a strict reader for checking what was written.
// The rules llama.cpp checks for a Qwen2 model are in ../shared/reference/gguf-qwen2.md; the
// format itself is ggml's docs/gguf.md. Little-endian only (as every host we build for).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace crucible {

// The tensor encodings we write and read (the values are ggml's type ids).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8 };
// The requested file type: F16 and Q8_0 keep norm weights and biases in F32; a Q8_0 file keeps
// a matrix whose rows are not a multiple of 32 long in F16.
enum class GgufType { F32, F16, Q8_0 };

// The tokenizer as llama.cpp's "gpt2" (byte-level BPE) vocabulary wants it.
struct GgufTokenizer {
    std::string pre = "qwen2";         // pre-tokenizer regex; "llama-bpe" for Llama-3's
    std::vector<std::string> tokens;   // one per id, 0 .. vocab_size-1
    std::vector<int32_t> token_types;  // 1 normal, 3 control, 4 user-defined, 5 unused
    std::vector<std::string> merges;   // "a b"
    int64_t bos_id = -1;               // -1: absent
    int64_t eos_id = -1;
    int64_t pad_id = -1;
    std::string chat_template;  // empty: absent
};

// Reads `dir`/tokenizer.json (a byte-level BPE), tokenizer_config.json and
// generation_config.json (both optional) for a model with `config`'s vocab_size. Special ids
// come from tokenizer_config.json's token strings, then generation_config.json, then config.
// Throws Error naming the file for a missing tokenizer.json, malformed JSON or fields, and a
// largest token id >= vocab_size (naming both numbers).
GgufTokenizer load_gguf_tokenizer(const std::filesystem::path& dir, const ModelConfig& config);

// Converts a row-major fp32 tensor to `type`'s bytes. Q8_0: ggml's quantize_row_q8_0_ref
// (per block of 32: d = max|x| / 127, q = round(x / d), stored as fp16 d then 32 int8).
// REQUIRES: n % 32 == 0 for Q8_0.
std::vector<uint8_t> ggml_encode(GgmlType type, const float* x, size_t n);
// The inverse (Q8_0 and F16 dequantized to fp32) of `n` elements held in `data`.
void ggml_decode(GgmlType type, const uint8_t* data, size_t n, float* out);
// Bytes that `n` elements of `type` take. REQUIRES: n % 32 == 0 for Q8_0.
size_t ggml_nbytes(GgmlType type, size_t n);
// IEEE half precision, rounding to nearest even (inf and NaN preserved).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);

// The GGUF name of an HF tensor name ("model.layers.3.mlp.up_proj.weight" ->
// "blk.3.ffn_up.weight"). Throws Error for a name with no GGUF counterpart.
std::string gguf_tensor_name(const std::string& hf_name);

// Llama's q/k rows reordered from HF's rotate-half layout to the interleaved pairs that
// llama.cpp's "llama" RoPE uses (what convert_hf_to_gguf.py's LlamaModel.permute does):
// dst row h*hd + 2i + s = src row h*hd + s*hd/2 + i, for `n_head` heads of hd = rows/n_head.
std::vector<float> llama_permute_qk(const float* w, int64_t rows, int64_t cols, int n_head);

// Writes `model` with `tok` as a GGUF v3 file named `name` (general.name) at `out`: written
// to a temporary file in the same folder, fsynced, then renamed over `out`, so a failed write
// never leaves a partial file there. Architecture "qwen2" or "llama" from model_type (llama:
// q/k weights and biases permuted, see llama_permute_qk). Throws Error naming `out` on I/O
// failure, and for a tokenizer whose token count is not the model's vocab_size.
void write_gguf(const Model& model, const GgufTokenizer& tok, const std::string& name,
                GgufType type, const std::filesystem::path& out);

// ---- reading ----------------------------------------------------------------------------------

enum class GgufValueType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};

// One metadata value. Integers are held in `u` (unsigned types) or `i` (signed types), floats
// in `f`; arrays hold their elements (all of `elem_type`) in `array`.
struct GgufValue {
    GgufValueType type = GgufValueType::U8;
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string str;
    GgufValueType elem_type = GgufValueType::U8;
    std::vector<GgufValue> array;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> ne;  // ne[0] fastest-varying: the reverse of the row-major shape
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;  // from the start of the data section
    uint64_t numel() const;
    uint64_t nbytes() const { return ggml_nbytes(type, numel()); }
};

// A whole GGUF file held in memory (for checks and tools, not for serving large models).
class GgufFile {
  public:
    uint32_t version = 0;
    uint32_t alignment = 32;
    uint64_t data_offset = 0;       // absolute offset of the data section
    std::vector<std::string> keys;  // metadata keys in file order
    std::map<std::string, GgufValue> metadata;
    std::vector<GgufTensorInfo> tensors;  // in file order

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return bytes_.size(); }
    bool has(const std::string& key) const { return metadata.count(key) != 0; }
    // The value of `key`; throws Error naming the file when it is absent.
    const GgufValue& at(const std::string& key) const;
    // The tensor called `name`, or nullptr.
    const GgufTensorInfo* find(const std::string& name) const;
    // The raw bytes of a tensor.
    std::span<const uint8_t> data(const GgufTensorInfo& t) const;
    // A tensor decoded to fp32 (F16 and Q8_0 dequantized); throws Error if it is absent.
    std::vector<float> tensor_f32(const std::string& name) const;

  private:
    friend GgufFile read_gguf(const std::filesystem::path& path);
    std::string path_;
    std::string bytes_;
};

// Reads and validates a GGUF file. Throws Error naming the file for: bad magic, a version
// other than 3, truncation anywhere, unknown value or tensor types, duplicate keys or tensor
// names, a bad general.alignment, tensor offsets that are unaligned, out of range or not laid
// out back to back, and shapes whose size overflows.
GgufFile read_gguf(const std::filesystem::path& path);

}  // namespace crucible
