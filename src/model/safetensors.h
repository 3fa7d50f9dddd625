// safetensors files: an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw little-endian data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace crucible {

// A tensor's element type (the header spells them "F32", "F16", "BF16", "I32", "I64").
enum class DType { f32, f16, bf16, i32, i64 };

// A tensor inside a loaded file; `data` points into the file's buffer.
struct SafeTensor {
    DType dtype;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    size_t numel() const;
    // Converts (F32, F16, BF16) to fp32 into out[numel()].
    void to_f32(float* out) const;
    // Copies an I32 tensor into out[numel()].
    void to_i32(int32_t* out) const;
};

// The parsed header of a safetensors image: tensors point into the image.
struct SafetensorsContents {
    std::map<std::string, SafeTensor> tensors;
    std::map<std::string, std::string> metadata;
};

// Parses and validates a whole safetensors image held in memory. `where` (a file name) starts
// every error. Throws Error for: a header size out of bounds, a header that is not UTF-8 JSON
// object text, duplicate keys, an unknown dtype, offsets out of range, overlapping tensors,
// holes in the data section, a size that does not match shape x dtype.
SafetensorsContents parse_safetensors(const uint8_t* data, size_t size, const std::string& where);

class SafetensorsFile {
  public:
    // Maps the file read-only (mmap) and validates it with parse_safetensors.
    explicit SafetensorsFile(const std::filesystem::path& path);
    ~SafetensorsFile();
    // Tensors point into this object's mapping: copying would alias it, so it is move-only.
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&&) = delete;

    const std::map<std::string, SafeTensor>& tensors() const { return contents_.tensors; }
    const std::map<std::string, std::string>& metadata() const { return contents_.metadata; }
    // The tensor called `name`; throws Error naming the file if it is absent.
    const SafeTensor& at(const std::string& name) const;
    bool has(const std::string& name) const { return contents_.tensors.count(name) != 0; }
    // Drops the whole pages of `t`'s bytes from this process's resident memory once they have
    // been copied (the page cache keeps them; a later read maps them back): loading a model then
    // never holds the file and the weights at once.
    void release(const SafeTensor& t) const;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_size_ = 0;
    SafetensorsContents contents_;
};

// A tensor to write: fp32 data with its shape, stored as F32 or BF16.
struct TensorToWrite {
    std::string name;
    std::vector<int64_t> shape;
    const float* data;
    DType dtype = DType::f32;  // F32 or BF16 (rounded to nearest even, as torch does)
};

// Serializes tensors (in the given order) plus string metadata to a safetensors byte string,
// the header padded with spaces to a multiple of 8 bytes.
std::string serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata);

}  // namespace crucible
