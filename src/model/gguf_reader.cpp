// read_gguf: a whole GGUF file read into memory and validated (header, metadata, tensor infos,
// the data section's layout), and GgufFile's lookups over it.
#include "model/gguf_reader.h"

#include <cstring>
#include <set>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace fs = std::filesystem;

uint64_t GgufTensorInfo::numel() const {
    uint64_t n = 1;
    for (uint64_t d : ne) n *= d;
    return n;
}

const GgufValue& GgufFile::at(const std::string& key) const {
    auto it = metadata.find(key);
    if (it == metadata.end()) throw Error(path_ + ": no metadata key '" + key + "'");
    return it->second;
}

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
    for (const GgufTensorInfo& t : tensors) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

std::span<const uint8_t> GgufFile::data(const GgufTensorInfo& t) const {
    return {reinterpret_cast<const uint8_t*>(bytes_.data()) + data_offset + t.offset,
            static_cast<size_t>(t.nbytes())};
}

std::vector<float> GgufFile::tensor_f32(const std::string& name) const {
    const GgufTensorInfo* t = find(name);
    if (!t) throw Error(path_ + ": no tensor '" + name + "'");
    std::vector<float> out(t->numel());
    decode_ggml(t->type, data(*t).data(), out.size(), out.data());
    return out;
}

namespace {

// Bounds-checked little-endian reads over a file image.
struct Cursor {
    const std::string& bytes;
    const std::string& path;
    uint64_t pos = 0;

    uint64_t left() const { return bytes.size() - pos; }
    void need(uint64_t n, const char* what) const {
        if (n > left()) {
            throw Error(path + ": truncated at byte " + std::to_string(pos) + " (reading " + what +
                        ", " + std::to_string(n) + " bytes needed, " + std::to_string(left()) +
                        " left)");
        }
    }
    template <typename T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes.data() + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string str(const char* what) {
        const auto n = get<uint64_t>(what);
        need(n, what);
        std::string s = bytes.substr(pos, n);
        pos += n;
        return s;
    }
};

// The smallest encoding of a value of type t (to bound array counts before allocating).
uint64_t min_size(GgufValueType t) {
    switch (t) {
        case GgufValueType::u8:
        case GgufValueType::i8:
        case GgufValueType::boolean:
            return 1;
        case GgufValueType::u16:
        case GgufValueType::i16:
            return 2;
        case GgufValueType::u32:
        case GgufValueType::i32:
        case GgufValueType::f32:
            return 4;
        case GgufValueType::array:
            return 12;
        default:
            return 8;
    }
}

bool known_value_type(uint32_t t) {
    return t <= 12;
}

GgufValue read_value(Cursor& c, GgufValueType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
        case GgufValueType::u8:
            v.u = c.get<uint8_t>("a u8");
            break;
        case GgufValueType::i8:
            v.i = c.get<int8_t>("an i8");
            break;
        case GgufValueType::u16:
            v.u = c.get<uint16_t>("a u16");
            break;
        case GgufValueType::i16:
            v.i = c.get<int16_t>("an i16");
            break;
        case GgufValueType::u32:
            v.u = c.get<uint32_t>("a u32");
            break;
        case GgufValueType::i32:
            v.i = c.get<int32_t>("an i32");
            break;
        case GgufValueType::u64:
            v.u = c.get<uint64_t>("a u64");
            break;
        case GgufValueType::i64:
            v.i = c.get<int64_t>("an i64");
            break;
        case GgufValueType::f32:
            v.f = c.get<float>("an f32");
            break;
        case GgufValueType::f64:
            v.f = c.get<double>("an f64");
            break;
        case GgufValueType::boolean: {
            const auto b = c.get<uint8_t>("a bool");
            if (b > 1) {
                throw Error(c.path + ": key '" + key + "': bool value " + std::to_string(b) +
                            " is not 0 or 1");
            }
            v.b = b == 1;
            break;
        }
        case GgufValueType::string:
            v.str = c.str("a string");
            break;
        case GgufValueType::array: {
            const auto et = c.get<uint32_t>("an array type");
            if (!known_value_type(et)) {
                throw Error(c.path + ": key '" + key + "': unknown array element type " +
                            std::to_string(et));
            }
            if (depth >= 4) throw Error(c.path + ": key '" + key + "': arrays nested too deep");
            v.elem_type = static_cast<GgufValueType>(et);
            const auto n = c.get<uint64_t>("an array length");
            if (n > c.left() / min_size(v.elem_type)) {
                throw Error(c.path + ": truncated: key '" + key + "' claims " + std::to_string(n) +
                            " array elements, more than the file holds");
            }
            v.array.reserve(n);
            for (uint64_t i = 0; i < n; i++) {
                v.array.push_back(read_value(c, v.elem_type, key, depth + 1));
            }
            break;
        }
    }
    return v;
}

}  // namespace

GgufFile read_gguf(const fs::path& path) {
    GgufFile g;
    g.path_ = path.string();
    g.bytes_ = read_file(path);
    const std::string& p = g.path_;
    Cursor c{g.bytes_, g.path_};
    if (g.bytes_.size() < 4 || g.bytes_.compare(0, 4, "GGUF") != 0) {
        throw Error(p + ": not a GGUF file (bad magic: the file must start with \"GGUF\")");
    }
    c.pos = 4;
    g.version = c.get<uint32_t>("the version");
    if (g.version != 3) {
        throw Error(p + ": unsupported GGUF version " + std::to_string(g.version) +
                    " (expected 3)");
    }
    const auto n_tensors = c.get<uint64_t>("the tensor count");
    const auto n_kv = c.get<uint64_t>("the metadata count");
    // Each key/value takes >= 13 bytes and each tensor info >= 29: no huge allocations.
    if (n_kv > c.left() / 13 || n_tensors > c.left() / 29) {
        throw Error(p + ": truncated (the header claims " + std::to_string(n_kv) + " keys and " +
                    std::to_string(n_tensors) + " tensors, more than the file holds)");
    }
    for (uint64_t k = 0; k < n_kv; k++) {
        std::string key = c.str("a metadata key");
        if (g.metadata.count(key)) throw Error(p + ": duplicate metadata key '" + key + "'");
        const auto t = c.get<uint32_t>("a value type");
        if (!known_value_type(t)) {
            throw Error(p + ": key '" + key + "': unknown value type " + std::to_string(t));
        }
        g.metadata[key] = read_value(c, static_cast<GgufValueType>(t), key, 0);
        g.keys.push_back(std::move(key));
    }
    if (g.has("general.alignment")) {
        const GgufValue& a = g.at("general.alignment");
        if (a.type != GgufValueType::u32 || a.u == 0 || (a.u & (a.u - 1)) != 0) {
            throw Error(p + ": general.alignment must be a u32 power of two");
        }
        g.alignment = static_cast<uint32_t>(a.u);
    }
    std::set<std::string> names;
    for (uint64_t i = 0; i < n_tensors; i++) {
        GgufTensorInfo t;
        t.name = c.str("a tensor name");
        if (!names.insert(t.name).second) throw Error(p + ": duplicate tensor '" + t.name + "'");
        const auto n_dims = c.get<uint32_t>("a tensor's dimension count");
        if (n_dims < 1 || n_dims > 4) {
            throw Error(p + ": tensor '" + t.name + "' has " + std::to_string(n_dims) +
                        " dimensions (1 to 4 allowed)");
        }
        uint64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            const auto n = c.get<uint64_t>("a tensor dimension");
            if (n == 0 || n > (uint64_t{1} << 40) || numel > (uint64_t{1} << 56) / n) {
                throw Error(p + ": tensor '" + t.name + "' has a bad dimension " +
                            std::to_string(n));
            }
            numel *= n;
            t.ne.push_back(n);
        }
        const auto type = c.get<uint32_t>("a tensor type");
        if (type != 0 && type != 1 && type != 8 && type != 30) {
            throw Error(p + ": tensor '" + t.name + "' has unknown or unsupported ggml type " +
                        std::to_string(type) + " (F32 0, F16 1, Q8_0 8, BF16 30 are read)");
        }
        t.type = static_cast<GgmlType>(type);
        if (t.type == GgmlType::q8_0 && t.ne[0] % kQ8_0BlockSize != 0) {
            throw Error(p + ": Q8_0 tensor '" + t.name + "' has rows of " +
                        std::to_string(t.ne[0]) + ", not a multiple of 32");
        }
        t.offset = c.get<uint64_t>("a tensor offset");
        g.tensors.push_back(std::move(t));
    }
    g.data_offset = align_up(c.pos, g.alignment);
    uint64_t expected = 0;
    for (const GgufTensorInfo& t : g.tensors) {
        if (t.offset != expected) {
            throw Error(p + ": tensor '" + t.name + "' has offset " + std::to_string(t.offset) +
                        ", expected " + std::to_string(expected) +
                        " (tensors lie back to back, each padded to the alignment)");
        }
        const uint64_t end = g.data_offset + t.offset + t.nbytes();
        if (end > g.bytes_.size()) {
            throw Error(p + ": truncated: tensor '" + t.name + "' ends at byte " +
                        std::to_string(end) + " but the file has " +
                        std::to_string(g.bytes_.size()));
        }
        expected = align_up(t.offset + t.nbytes(), g.alignment);
    }
    return g;
}

}  // namespace crucible
