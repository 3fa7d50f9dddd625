// The safetensors parser (strict validation of the header and data layout), the mmapped file,
// tensors to fp32, and the writer (F32 or BF16).
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "model/float_formats.h"

namespace crucible {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // safetensors' own bound

size_t dtype_size(DType d) {
    switch (d) {
        case DType::f32:
            return 4;
        case DType::f16:
            return 2;
        case DType::bf16:
            return 2;
        case DType::i32:
            return 4;
        case DType::i64:
            return 8;
    }
    return 0;
}

bool parse_dtype(const std::string& s, DType* out) {
    static const std::map<std::string, DType> names = {{"F32", DType::f32},
                                                       {"F16", DType::f16},
                                                       {"BF16", DType::bf16},
                                                       {"I32", DType::i32},
                                                       {"I64", DType::i64}};
    auto it = names.find(s);
    if (it == names.end()) return false;
    *out = it->second;
    return true;
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        int extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + extra >= s.size()) return false;  // truncated sequence
        for (int k = 1; k <= extra; k++) {
            const unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        // overlong forms, surrogates and code points beyond U+10FFFF
        static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += extra + 1;
    }
    return true;
}

}  // namespace

size_t SafeTensor::numel() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
}

void SafeTensor::to_f32(float* out) const {
    const size_t n = numel();
    switch (dtype) {
        case DType::f32:
            std::memcpy(out, data, n * 4);
            break;
        case DType::f16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                std::memcpy(&h, data + 2 * i, 2);
                out[i] = fp16_to_fp32(h);
            }
            break;
        case DType::bf16:
            for (size_t i = 0; i < n; i++) {
                uint16_t b;
                std::memcpy(&b, data + 2 * i, 2);
                out[i] = bf16_to_fp32(b);
            }
            break;
        default:
            throw Error("tensor is not a floating-point tensor");
    }
}

void SafeTensor::to_i32(int32_t* out) const {
    if (dtype != DType::i32) throw Error("tensor is not an I32 tensor");
    std::memcpy(out, data, numel() * 4);
}

SafetensorsContents parse_safetensors(const uint8_t* bytes, size_t size, const std::string& where) {
    SafetensorsContents out;
    if (size < 8) throw Error(where + ": not a safetensors file (shorter than 8 bytes)");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | bytes[i];
    if (header_len > kMaxHeaderSize || header_len > size - 8) {
        throw Error(where + ": header length " + std::to_string(header_len) +
                    " exceeds the file size or the 100 MB limit");
    }
    const std::string header(reinterpret_cast<const char*>(bytes) + 8, header_len);
    if (!valid_utf8(header)) throw Error(where + ": header is not valid UTF-8");
    const size_t first = header.find_first_not_of(" \t\r\n");
    if (first == std::string::npos || header[first] != '{') {
        throw Error(where + ": header must be a JSON object starting with '{'");
    }
    json j;
    try {
        // Duplicate keys are rejected by a parse callback that tracks keys per object.
        std::vector<std::vector<std::string>> keys_stack;
        auto cb = [&](int, json::parse_event_t ev, json& parsed) {
            if (ev == json::parse_event_t::object_start) {
                keys_stack.emplace_back();
            } else if (ev == json::parse_event_t::object_end) {
                keys_stack.pop_back();
            } else if (ev == json::parse_event_t::key) {
                auto& keys = keys_stack.back();
                const std::string key = parsed.get<std::string>();
                if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
                    throw Error(where + ": duplicate key '" + key + "' in header");
                }
                keys.push_back(key);
            }
            return true;
        };
        j = json::parse(header, cb);
    } catch (const json::exception& e) {
        throw Error(where + ": header is not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw Error(where + ": header must be a JSON object");
    const size_t data_start = 8 + header_len;
    const size_t data_len = size - data_start;
    std::vector<std::pair<size_t, size_t>> ranges;
    for (auto& [name, v] : j.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) throw Error(where + ": __metadata__ must be an object");
            for (auto& [mk, mv] : v.items()) {
                if (!mv.is_string()) {
                    throw Error(where + ": __metadata__ value for '" + mk + "' must be a string");
                }
                out.metadata[mk] = mv.get<std::string>();
            }
            continue;
        }
        const std::string field = where + ": tensor '" + name + "'";
        if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
            !v.contains("data_offsets")) {
            throw Error(field + ": needs dtype, shape and data_offsets");
        }
        SafeTensor t;
        if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), &t.dtype)) {
            throw Error(field + ": unsupported dtype " + v["dtype"].dump() +
                        " (supported: F32, F16, BF16, I32, I64)");
        }
        const json& shape = v["shape"];
        if (!shape.is_array()) throw Error(field + ": shape must be an array");
        size_t numel = 1;
        for (const json& d : shape) {
            if (!d.is_number_unsigned()) throw Error(field + ": shape entries must be >= 0");
            const uint64_t dim = d.get<uint64_t>();
            if (dim > (1ULL << 40) || (dim && numel > (SIZE_MAX >> 8) / dim)) {
                throw Error(field + ": shape too large");
            }
            numel *= dim;
            t.shape.push_back(static_cast<int64_t>(dim));
        }
        const json& off = v["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned()) {
            throw Error(field + ": data_offsets must be [begin, end]");
        }
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        if (b > e || e > data_len) {
            throw Error(field + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                        "] out of range (data section is " + std::to_string(data_len) + " bytes)");
        }
        if (e - b != numel * dtype_size(t.dtype)) {
            throw Error(field + ": byte size " + std::to_string(e - b) +
                        " does not match shape x dtype (" +
                        std::to_string(numel * dtype_size(t.dtype)) + ")");
        }
        t.data = bytes + data_start + b;
        t.nbytes = e - b;
        ranges.push_back({b, e});
        out.tensors.emplace(name, std::move(t));
    }
    std::sort(ranges.begin(), ranges.end());
    size_t expect = 0;
    for (auto [b, e] : ranges) {
        if (b < expect) throw Error(where + ": tensors overlap in the data section");
        if (b > expect)
            throw Error(where + ": hole in the data section at byte " + std::to_string(expect));
        expect = e;
    }
    if (expect != data_len) {
        throw Error(where + ": data section has " + std::to_string(data_len - expect) +
                    " trailing bytes not covered by any tensor");
    }
    return out;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path.string()) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path_ + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        throw Error(path_ + ": cannot stat: " + std::strerror(errno));
    }
    map_size_ = static_cast<size_t>(st.st_size);
    if (map_size_ > 0) {
        map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map_ == MAP_FAILED) {
            map_ = nullptr;
            ::close(fd);
            throw Error(path_ + ": cannot mmap: " + std::strerror(errno));
        }
    }
    ::close(fd);
    try {
        contents_ = parse_safetensors(static_cast<const uint8_t*>(map_), map_size_, path_);
    } catch (...) {
        if (map_) ::munmap(map_, map_size_);
        throw;
    }
}

void SafetensorsFile::release(const SafeTensor& t) const {
    release_pages(t.data, t.nbytes);
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, map_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_size_(other.map_size_),
      contents_(std::move(other.contents_)) {
    other.map_ = nullptr;
    other.map_size_ = 0;
}

const SafeTensor& SafetensorsFile::at(const std::string& name) const {
    auto it = contents_.tensors.find(name);
    if (it == contents_.tensors.end()) throw Error(path_ + ": missing tensor '" + name + "'");
    return it->second;
}

std::string serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    size_t offset = 0;
    std::vector<size_t> numels;
    for (const TensorToWrite& t : tensors) {
        if (t.dtype != DType::f32 && t.dtype != DType::bf16) {
            throw Error("safetensors writer: tensor '" + t.name +
                        "' must be written as F32 or BF16");
        }
        size_t numel = 1;
        for (int64_t d : t.shape) numel *= static_cast<size_t>(d);
        numels.push_back(numel);
        const size_t bytes = numel * dtype_size(t.dtype);
        header[t.name] = {{"dtype", t.dtype == DType::f32 ? "F32" : "BF16"},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string out;
    out.reserve(8 + h.size() + offset);
    uint64_t len = h.size();
    for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
    out += h;
    for (size_t k = 0; k < tensors.size(); k++) {
        const TensorToWrite& t = tensors[k];
        if (t.dtype == DType::f32) {
            out.append(reinterpret_cast<const char*>(t.data), numels[k] * 4);
        } else {
            for (size_t i = 0; i < numels[k]; i++) {
                const uint16_t b = fp32_to_bf16(t.data[i]);
                out.push_back(static_cast<char>(b & 0xff));
                out.push_back(static_cast<char>(b >> 8));
            }
        }
    }
    return out;
}

}  // namespace crucible
