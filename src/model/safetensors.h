// safetensors files: an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw little-endian data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace crucible {

enum class DType { F32, F16, BF16, I32, I64 };

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

class SafetensorsFile {
  public:
    // Reads and validates the whole file. Throws Error naming the file and what is wrong:
    // header size out of bounds, bad JSON, unknown dtype, offsets out of range, overlapping
    // tensors, holes in the data section, size not matching shape x dtype, duplicate names.
    explicit SafetensorsFile(const std::filesystem::path& path);
    // Tensors point into this object's buffer: copying would alias it, so it is move-only
    // (a moved vector keeps its buffer, so the pointers stay valid).
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    SafetensorsFile(SafetensorsFile&&) = default;
    SafetensorsFile& operator=(SafetensorsFile&&) = default;

    const std::map<std::string, SafeTensor>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    // The tensor called `name`; throws Error naming the file if it is absent.
    const SafeTensor& at(const std::string& name) const;
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    std::vector<uint8_t> bytes_;
    std::map<std::string, SafeTensor> tensors_;
    std::map<std::string, std::string> metadata_;
};

// A tensor to write: fp32 data with its shape.
struct TensorToWrite {
    std::string name;
    std::vector<int64_t> shape;
    const float* data;
};

// Serializes F32 tensors (in the given order) plus string metadata to a safetensors byte
// string, the header padded with spaces to a multiple of 8 bytes.
std::string safetensors_serialize(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata);

}  // namespace crucible
