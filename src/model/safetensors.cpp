#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // safetensors' own bound

size_t dtype_size(DType d) {
    switch (d) {
        case DType::F32:
            return 4;
        case DType::F16:
            return 2;
        case DType::BF16:
            return 2;
        case DType::I32:
            return 4;
        case DType::I64:
            return 8;
    }
    return 0;
}

bool parse_dtype(const std::string& s, DType* out) {
    static const std::map<std::string, DType> names = {{"F32", DType::F32},
                                                       {"F16", DType::F16},
                                                       {"BF16", DType::BF16},
                                                       {"I32", DType::I32},
                                                       {"I64", DType::I64}};
    auto it = names.find(s);
    if (it == names.end()) return false;
    *out = it->second;
    return true;
}

float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000 | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
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
        case DType::F32:
            std::memcpy(out, data, n * 4);
            break;
        case DType::F16:
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                std::memcpy(&h, data + 2 * i, 2);
                out[i] = half_to_float(h);
            }
            break;
        case DType::BF16:
            for (size_t i = 0; i < n; i++) {
                uint16_t b;
                std::memcpy(&b, data + 2 * i, 2);
                const uint32_t bits = (uint32_t)b << 16;
                std::memcpy(out + i, &bits, 4);
            }
            break;
        default:
            throw Error("tensor is not a floating-point tensor");
    }
}

void SafeTensor::to_i32(int32_t* out) const {
    if (dtype != DType::I32) throw Error("tensor is not an I32 tensor");
    std::memcpy(out, data, numel() * 4);
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path.string()) {
    const std::string raw = read_file(path);
    bytes_.assign(raw.begin(), raw.end());
    const std::string& where = path_;
    if (bytes_.size() < 8) throw Error(where + ": not a safetensors file (shorter than 8 bytes)");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | bytes_[i];
    if (header_len > kMaxHeaderSize || header_len > bytes_.size() - 8) {
        throw Error(where + ": header length " + std::to_string(header_len) +
                    " exceeds the file size or the 100 MB limit");
    }
    const std::string header(reinterpret_cast<const char*>(bytes_.data()) + 8, header_len);
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
    const size_t data_len = bytes_.size() - data_start;
    std::vector<std::pair<size_t, size_t>> ranges;
    for (auto& [name, v] : j.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) throw Error(where + ": __metadata__ must be an object");
            for (auto& [mk, mv] : v.items()) {
                if (!mv.is_string()) {
                    throw Error(where + ": __metadata__ value for '" + mk + "' must be a string");
                }
                metadata_[mk] = mv.get<std::string>();
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
        t.data = bytes_.data() + data_start + b;
        t.nbytes = e - b;
        ranges.push_back({b, e});
        tensors_.emplace(name, std::move(t));
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
}

const SafeTensor& SafetensorsFile::at(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(path_ + ": missing tensor '" + name + "'");
    return it->second;
}

std::string safetensors_serialize(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    size_t offset = 0;
    for (const TensorToWrite& t : tensors) {
        size_t numel = 1;
        for (int64_t d : t.shape) numel *= static_cast<size_t>(d);
        header[t.name] = {
            {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + numel * 4}}};
        offset += numel * 4;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string out;
    out.reserve(8 + h.size() + offset);
    uint64_t len = h.size();
    for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
    out += h;
    for (const TensorToWrite& t : tensors) {
        size_t numel = 1;
        for (int64_t d : t.shape) numel *= static_cast<size_t>(d);
        out.append(reinterpret_cast<const char*>(t.data), numel * 4);
    }
    return out;
}

}  // namespace crucible
