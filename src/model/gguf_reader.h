// A strict GGUF (version 3) reader for checking what the writer wrote and for tools: the whole
// file read into memory, its metadata and tensor infos validated, tensors decoded to fp32.
// See gguf.h for what the reader shares with the writer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace crucible {

// One metadata value. Integers are held in `u` (unsigned types) or `i` (signed types), floats
// in `f`; arrays hold their elements (all of `elem_type`) in `array`.
struct GgufValue {
    GgufValueType type = GgufValueType::u8;
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string str;
    GgufValueType elem_type = GgufValueType::u8;
    std::vector<GgufValue> array;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> ne;  // ne[0] fastest-varying: the reverse of the row-major shape
    GgmlType type = GgmlType::f32;
    uint64_t offset = 0;  // from the start of the data section
    uint64_t numel() const;
    uint64_t nbytes() const { return ggml_nbytes(type, numel()); }
};

// A whole GGUF file held in memory (for checks and tools, not for serving large models).
class GgufFile {
  public:
    uint32_t version = 0;
    uint32_t alignment = kGgufAlignment;
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
