#include "model/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- number formats ---------------------------------------------------------------------------

uint16_t fp32_to_fp16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7fffffff;
    if (abs >= 0x7f800000) {  // inf, or NaN kept quiet with its top payload bits
        return static_cast<uint16_t>(sign | 0x7c00 |
                                     (abs > 0x7f800000 ? 0x200 | ((abs >> 13) & 0x3ff) : 0));
    }
    if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // >= 65520 -> inf
    if (abs < 0x38800000) {  // below 2^-14: a subnormal half (units of 2^-24) or zero
        const uint32_t e = abs >> 23;
        if (e < 102) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to zero
        const uint32_t m = (abs & 0x7fffff) | 0x800000;   // value = m * 2^(e-150)
        const uint32_t shift = 126 - e;                   // 14..24
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ff);
    const uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  // a carry moves into the exponent
    return static_cast<uint16_t>(sign | h);
}

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -v : v;
    }
    const uint32_t x =
        exp == 31 ? sign | 0x7f800000 | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

namespace {
constexpr size_t kQK8_0 = 32;
constexpr size_t kQ8_0Bytes = 2 + kQK8_0;  // fp16 scale, then 32 int8
}  // namespace

size_t ggml_nbytes(GgmlType type, size_t n) {
    switch (type) {
        case GgmlType::F32:
            return n * 4;
        case GgmlType::F16:
            return n * 2;
        case GgmlType::Q8_0:
            return n / kQK8_0 * kQ8_0Bytes;
    }
    return 0;
}

std::vector<uint8_t> ggml_encode(GgmlType type, const float* x, size_t n) {
    std::vector<uint8_t> out(ggml_nbytes(type, n));
    uint8_t* p = out.data();
    if (type == GgmlType::F32) {
        std::memcpy(p, x, n * 4);
    } else if (type == GgmlType::F16) {
        for (size_t i = 0; i < n; i++) {
            const uint16_t h = fp32_to_fp16(x[i]);
            std::memcpy(p + 2 * i, &h, 2);
        }
    } else {
        // ggml-quants.c quantize_row_q8_0_ref, operation for operation.
        for (size_t b = 0; b < n / kQK8_0; b++, p += kQ8_0Bytes) {
            const float* xb = x + b * kQK8_0;
            float amax = 0.0f;
            for (size_t j = 0; j < kQK8_0; j++) amax = std::max(amax, std::fabs(xb[j]));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const uint16_t dh = fp32_to_fp16(d);
            std::memcpy(p, &dh, 2);
            for (size_t j = 0; j < kQK8_0; j++) {
                p[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(xb[j] * id)));
            }
        }
    }
    return out;
}

void ggml_decode(GgmlType type, const uint8_t* data, size_t n, float* out) {
    if (type == GgmlType::F32) {
        std::memcpy(out, data, n * 4);
    } else if (type == GgmlType::F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            out[i] = fp16_to_fp32(h);
        }
    } else {
        for (size_t b = 0; b < n / kQK8_0; b++, data += kQ8_0Bytes) {
            uint16_t dh;
            std::memcpy(&dh, data, 2);
            const float d = fp16_to_fp32(dh);
            for (size_t j = 0; j < kQK8_0; j++) {
                out[b * kQK8_0 + j] = static_cast<float>(static_cast<int8_t>(data[2 + j])) * d;
            }
        }
    }
}

// ---- tensor names and layouts -----------------------------------------------------------------

std::string gguf_tensor_name(const std::string& hf) {
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    static const std::pair<const char*, const char*> kLayer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.o_proj.bias", "attn_output.bias"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.gate_proj.bias", "ffn_gate.bias"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.up_proj.bias", "ffn_up.bias"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
        {"mlp.down_proj.bias", "ffn_down.bias"},
    };
    const std::string prefix = "model.layers.";
    if (hf.rfind(prefix, 0) == 0) {
        const size_t dot = hf.find('.', prefix.size());
        const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
        const bool digits = !layer.empty() && layer.find_first_not_of("0123456789") == layer.npos;
        if (dot != hf.npos && digits) {
            const std::string rest = hf.substr(dot + 1);
            for (const auto& [from, to] : kLayer) {
                if (rest == from) return "blk." + layer + "." + to;
            }
        }
    }
    throw Error("GGUF export: tensor '" + hf + "' has no GGUF name");
}

std::vector<float> llama_permute_qk(const float* w, int64_t rows, int64_t cols, int n_head) {
    const int64_t hd = rows / n_head, half = hd / 2;
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t h = 0; h < n_head; h++) {
        for (int64_t i = 0; i < half; i++) {
            for (int64_t s = 0; s < 2; s++) {
                const float* src = w + (h * hd + s * half + i) * cols;
                std::copy(src, src + cols, out.data() + (h * hd + 2 * i + s) * cols);
            }
        }
    }
    return out;
}

// ---- tokenizer --------------------------------------------------------------------------------

namespace {

json parse_json_file(const fs::path& p) {
    try {
        return json::parse(read_file(p));
    } catch (const json::exception& e) {
        throw Error(p.string() + ": not valid JSON: " + e.what());
    }
}

// Collects every string inside `j` (to look for a pre-tokenizer regex wherever it sits).
void collect_strings(const json& j, std::vector<std::string>& out) {
    if (j.is_string()) out.push_back(j.get<std::string>());
    if (j.is_structured()) {
        for (const auto& v : j) collect_strings(v, out);
    }
}

// An id given as an integer, or the first integer of an array (generation_config's eos).
int64_t id_field(const json& j, const char* key, const fs::path& where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return -1;
    const json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        throw Error(where.string() + ": field '" + key + "' must be a token id, got " + it->dump());
    }
    return v.get<int64_t>();
}

}  // namespace

GgufTokenizer load_gguf_tokenizer(const fs::path& dir, const ModelConfig& config) {
    const fs::path tj_path = dir / "tokenizer.json";
    if (!fs::exists(tj_path)) {
        throw Error(tj_path.string() + ": missing (GGUF export needs the model's tokenizer)");
    }
    const std::string where = tj_path.string();
    const json tj = parse_json_file(tj_path);
    if (!tj.is_object() || !tj.contains("model") || !tj["model"].is_object()) {
        throw Error(where + ": needs a \"model\" object");
    }
    const json& model = tj["model"];
    if (model.value("type", std::string()) != "BPE") {
        throw Error(where + ": model.type must be \"BPE\" (a byte-level BPE), got " +
                    (model.contains("type") ? model["type"].dump() : std::string("nothing")));
    }
    if (!model.contains("vocab") || !model["vocab"].is_object()) {
        throw Error(where + ": model.vocab must be an object {token: id}");
    }

    std::map<int64_t, std::string> text;  // id -> token
    std::map<int64_t, int32_t> type;      // id -> token type
    std::map<std::string, int64_t> id_of;
    for (const auto& [token, id] : model["vocab"].items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0) {
            throw Error(where + ": model.vocab['" + token + "'] must be an id >= 0, got " +
                        id.dump());
        }
        const int64_t i = id.get<int64_t>();
        if (text.count(i)) {
            throw Error(where + ": model.vocab gives id " + std::to_string(i) + " to both '" +
                        text[i] + "' and '" + token + "'");
        }
        text[i] = token;
        type[i] = 1;
        id_of[token] = i;
    }
    if (tj.contains("added_tokens") && !tj["added_tokens"].is_null()) {
        if (!tj["added_tokens"].is_array()) throw Error(where + ": added_tokens must be an array");
        for (const json& a : tj["added_tokens"]) {
            if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
                a["id"].get<int64_t>() < 0 || !a.contains("content") || !a["content"].is_string()) {
                throw Error(where + ": added_tokens entry " + a.dump() +
                            " needs an \"id\" >= 0 and a \"content\" string");
            }
            const int64_t i = a["id"].get<int64_t>();
            const std::string content = a["content"].get<std::string>();
            const json special = a.value("special", json(false));
            text[i] = content;
            type[i] = special.is_boolean() && special.get<bool>() ? 3 : 4;
            id_of[content] = i;
        }
    }
    if (!text.empty() && text.rbegin()->first >= config.vocab_size) {
        throw Error(where + ": the tokenizer's largest id is " +
                    std::to_string(text.rbegin()->first) + " but the model's vocab_size is " +
                    std::to_string(config.vocab_size) + " (ids must be below vocab_size)");
    }

    GgufTokenizer tok;
    tok.tokens.resize(config.vocab_size);
    tok.token_types.assign(config.vocab_size, 5);
    for (int64_t i = 0; i < config.vocab_size; i++) {
        auto it = text.find(i);
        if (it == text.end()) {
            tok.tokens[i] = "[PAD" + std::to_string(i) + "]";
        } else {
            tok.tokens[i] = it->second;
            tok.token_types[i] = type[i];
        }
    }

    if (model.contains("merges") && !model["merges"].is_null()) {
        if (!model["merges"].is_array()) throw Error(where + ": model.merges must be an array");
        for (const json& m : model["merges"]) {
            if (m.is_string()) {
                tok.merges.push_back(m.get<std::string>());
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                tok.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            } else {
                throw Error(where + ": model.merges entry " + m.dump() +
                            " must be \"a b\" or [\"a\", \"b\"]");
            }
        }
    }

    // Llama-3's split regex groups digits in threes (\p{N}{1,3}); Qwen2's splits every digit.
    if (tj.contains("pre_tokenizer")) {
        std::vector<std::string> strings;
        collect_strings(tj["pre_tokenizer"], strings);
        for (const std::string& s : strings) {
            if (s.find("\\p{N}{1,3}") != s.npos) tok.pre = "llama-bpe";
        }
    }

    // Special ids: tokenizer_config.json's token strings first (as convert_hf_to_gguf.py's
    // SpecialVocab does), then generation_config.json's ids, then config.json's.
    const fs::path tc_path = dir / "tokenizer_config.json";
    if (fs::exists(tc_path)) {
        const json tc = parse_json_file(tc_path);
        if (!tc.is_object()) throw Error(tc_path.string() + ": expected a JSON object");
        auto special = [&](const char* key, int64_t& id) {
            auto it = tc.find(key);
            if (it == tc.end() || it->is_null()) return;
            const json& v = it->is_object() ? it->value("content", json()) : *it;
            if (!v.is_string()) {
                throw Error(tc_path.string() + ": field '" + key +
                            "' must be a token string, got " + it->dump());
            }
            auto found = id_of.find(v.get<std::string>());
            if (found == id_of.end()) {
                throw Error(tc_path.string() + ": " + key + " '" + v.get<std::string>() +
                            "' is not a token of tokenizer.json");
            }
            id = found->second;
        };
        special("bos_token", tok.bos_id);
        special("eos_token", tok.eos_id);
        special("pad_token", tok.pad_id);
        if (auto it = tc.find("chat_template"); it != tc.end() && !it->is_null()) {
            if (it->is_string()) {
                tok.chat_template = it->get<std::string>();
            } else if (it->is_array()) {  // [{"name": ..., "template": ...}]: the default one
                for (const json& t : *it) {
                    if (!t.is_object() || !t.value("template", json()).is_string()) continue;
                    if (tok.chat_template.empty() || t.value("name", json()) == "default") {
                        tok.chat_template = t["template"].get<std::string>();
                    }
                }
            } else {
                throw Error(tc_path.string() + ": field 'chat_template' must be a string");
            }
        }
    }
    if (tok.chat_template.empty() && fs::exists(dir / "chat_template.jinja")) {
        tok.chat_template = read_file(dir / "chat_template.jinja");
    }
    const fs::path gc_path = dir / "generation_config.json";
    if (fs::exists(gc_path)) {
        const json gc = parse_json_file(gc_path);
        if (!gc.is_object()) throw Error(gc_path.string() + ": expected a JSON object");
        if (tok.bos_id < 0) tok.bos_id = id_field(gc, "bos_token_id", gc_path);
        if (tok.eos_id < 0) tok.eos_id = id_field(gc, "eos_token_id", gc_path);
        if (tok.pad_id < 0) tok.pad_id = id_field(gc, "pad_token_id", gc_path);
    }
    if (tok.bos_id < 0) tok.bos_id = config.bos_token_id;
    if (tok.eos_id < 0) tok.eos_id = config.eos_token_id;
    for (const auto& [what, id] : {std::pair<const char*, int64_t>{"bos", tok.bos_id},
                                   {"eos", tok.eos_id},
                                   {"padding", tok.pad_id}}) {
        if (id >= config.vocab_size) {
            throw Error(dir.string() + ": the " + what + " token id " + std::to_string(id) +
                        " is >= the model's vocab_size " + std::to_string(config.vocab_size));
        }
    }
    return tok;
}

// ---- writing ----------------------------------------------------------------------------------

namespace {

constexpr uint32_t kAlignment = 32;

uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void put_str(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
}

// Metadata key/value pairs, serialized as they are added.
struct KvWriter {
    std::string out;
    uint64_t count = 0;

    void key(const std::string& k, GgufValueType t) {
        put_str(out, k);
        put(out, static_cast<uint32_t>(t));
        count++;
    }
    void u32(const std::string& k, uint32_t v) {
        key(k, GgufValueType::U32);
        put(out, v);
    }
    void f32(const std::string& k, float v) {
        key(k, GgufValueType::F32);
        put(out, v);
    }
    void boolean(const std::string& k, bool v) {
        key(k, GgufValueType::BOOL);
        put<uint8_t>(out, v ? 1 : 0);
    }
    void str(const std::string& k, const std::string& v) {
        key(k, GgufValueType::STRING);
        put_str(out, v);
    }
    void strings(const std::string& k, const std::vector<std::string>& v) {
        key(k, GgufValueType::ARRAY);
        put(out, static_cast<uint32_t>(GgufValueType::STRING));
        put<uint64_t>(out, v.size());
        for (const std::string& s : v) put_str(out, s);
    }
    void i32s(const std::string& k, const std::vector<int32_t>& v) {
        key(k, GgufValueType::ARRAY);
        put(out, static_cast<uint32_t>(GgufValueType::I32));
        put<uint64_t>(out, v.size());
        for (int32_t x : v) put(out, x);
    }
};

// A file descriptor written through a buffer; the file is removed unless commit() ran.
class TempFile {
  public:
    explicit TempFile(const fs::path& out) : out_(out) {
        const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
        tmp_ = dir / ("." + out.filename().string() + ".tmp." + std::to_string(::getpid()));
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("cannot create " + tmp_.string());
    }
    ~TempFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!committed_) ::unlink(tmp_.c_str());
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    void write(const void* p, size_t n) {
        buf_.append(static_cast<const char*>(p), n);
        size_ += n;
        if (buf_.size() >= (8u << 20)) flush();
    }
    uint64_t size() const { return size_; }

    void commit() {
        flush();
        if (::fsync(fd_) != 0) fail("fsync failed");
        const int rc = ::close(fd_);
        fd_ = -1;
        if (rc != 0) fail("close failed");
        if (::rename(tmp_.c_str(), out_.c_str()) != 0) fail("cannot rename " + tmp_.string());
        committed_ = true;
        fsync_directory(out_.parent_path().empty() ? fs::path(".") : out_.parent_path());
    }

  private:
    void flush() {
        size_t done = 0;
        while (done < buf_.size()) {
            const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail("write failed");
            done += static_cast<size_t>(n);
        }
        buf_.clear();
    }
    [[noreturn]] void fail(const std::string& what) const {
        throw Error(out_.string() + ": " + what + ": " + std::strerror(errno));
    }

    fs::path out_, tmp_;
    int fd_ = -1;
    bool committed_ = false;
    std::string buf_;
    uint64_t size_ = 0;  // bytes written so far (flushed or buffered)
};

GgmlType tensor_type(GgufType file_type, const TensorInfo& t) {
    if (file_type == GgufType::F32 || t.shape.size() < 2) return GgmlType::F32;
    if (file_type == GgufType::Q8_0 && t.shape.back() % kQK8_0 == 0) return GgmlType::Q8_0;
    return GgmlType::F16;
}

}  // namespace

void write_gguf(const Model& model, const GgufTokenizer& tok, const std::string& name,
                GgufType type, const fs::path& out) {
    const ModelConfig& c = model.config();
    const bool llama = c.model_type == "llama";
    const std::string arch = llama ? "llama" : "qwen2";
    const auto vocab = static_cast<size_t>(c.vocab_size);
    if (tok.tokens.size() != vocab || tok.token_types.size() != vocab) {
        throw Error(out.string() + ": the tokenizer has " + std::to_string(tok.tokens.size()) +
                    " tokens but the model's vocab_size is " + std::to_string(vocab));
    }

    KvWriter kv;
    kv.str("general.architecture", arch);
    kv.str("general.name", name);
    kv.u32("general.alignment", kAlignment);
    kv.u32("general.file_type", type == GgufType::F32 ? 0 : type == GgufType::F16 ? 1 : 7);
    kv.u32(arch + ".context_length", c.max_position_embeddings);
    kv.u32(arch + ".embedding_length", c.hidden_size);
    kv.u32(arch + ".block_count", c.num_hidden_layers);
    kv.u32(arch + ".feed_forward_length", c.intermediate_size);
    kv.u32(arch + ".attention.head_count", c.num_attention_heads);
    kv.u32(arch + ".attention.head_count_kv", c.num_key_value_heads);
    kv.f32(arch + ".rope.freq_base", c.rope_theta);
    kv.f32(arch + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
    if (llama) kv.u32(arch + ".rope.dimension_count", c.head_dim);
    if (c.head_dim * c.num_attention_heads != c.hidden_size) {  // llama.cpp assumes otherwise
        kv.u32(arch + ".attention.key_length", c.head_dim);
        kv.u32(arch + ".attention.value_length", c.head_dim);
    }
    kv.str("tokenizer.ggml.model", "gpt2");
    kv.str("tokenizer.ggml.pre", tok.pre);
    kv.strings("tokenizer.ggml.tokens", tok.tokens);
    kv.i32s("tokenizer.ggml.token_type", tok.token_types);
    kv.strings("tokenizer.ggml.merges", tok.merges);
    if (tok.eos_id >= 0) kv.u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos_id));
    if (tok.bos_id >= 0) kv.u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos_id));
    if (tok.pad_id >= 0) {
        kv.u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(tok.pad_id));
    }
    kv.boolean("tokenizer.ggml.add_bos_token", false);
    if (!tok.chat_template.empty()) kv.str("tokenizer.chat_template", tok.chat_template);

    struct Planned {
        const TensorInfo* t;
        std::string name;
        GgmlType type;
        uint64_t offset;
    };
    std::vector<Planned> plan;
    uint64_t offset = 0;
    for (const TensorInfo& t : model.tensors()) {
        const GgmlType tt = tensor_type(type, t);
        plan.push_back({&t, gguf_tensor_name(t.name), tt, offset});
        offset = align_up(offset + ggml_nbytes(tt, t.numel), kAlignment);
    }

    std::string header = "GGUF";
    put<uint32_t>(header, 3);
    put<uint64_t>(header, plan.size());
    put<uint64_t>(header, kv.count);
    header += kv.out;
    for (const Planned& p : plan) {
        put_str(header, p.name);
        put<uint32_t>(header, static_cast<uint32_t>(p.t->shape.size()));
        for (auto d = p.t->shape.rbegin(); d != p.t->shape.rend(); ++d) {
            put<uint64_t>(header, static_cast<uint64_t>(*d));
        }
        put<uint32_t>(header, static_cast<uint32_t>(p.type));
        put<uint64_t>(header, p.offset);
    }
    header.resize(align_up(header.size(), kAlignment), '\0');

    TempFile file(out);
    file.write(header.data(), header.size());
    const uint64_t data_start = header.size();
    static const char zeros[kAlignment] = {};
    for (const Planned& p : plan) {
        const TensorInfo& t = *p.t;
        const float* x = model.params() + t.offset;
        std::vector<float> permuted;
        const bool is_q = t.name.ends_with("self_attn.q_proj.weight") ||
                          t.name.ends_with("self_attn.q_proj.bias");
        const bool is_k = t.name.ends_with("self_attn.k_proj.weight") ||
                          t.name.ends_with("self_attn.k_proj.bias");
        if (llama && (is_q || is_k)) {
            const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
            permuted = llama_permute_qk(x, rows, cols,
                                        is_q ? c.num_attention_heads : c.num_key_value_heads);
            x = permuted.data();
        }
        const std::vector<uint8_t> bytes = ggml_encode(p.type, x, t.numel);
        file.write(bytes.data(), bytes.size());
        const uint64_t rel = file.size() - data_start;
        file.write(zeros, align_up(rel, kAlignment) - rel);
    }
    file.commit();
}

// ---- reading ----------------------------------------------------------------------------------

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
    ggml_decode(t->type, data(*t).data(), out.size(), out.data());
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
        case GgufValueType::U8:
        case GgufValueType::I8:
        case GgufValueType::BOOL:
            return 1;
        case GgufValueType::U16:
        case GgufValueType::I16:
            return 2;
        case GgufValueType::U32:
        case GgufValueType::I32:
        case GgufValueType::F32:
            return 4;
        case GgufValueType::ARRAY:
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
        case GgufValueType::U8:
            v.u = c.get<uint8_t>("a u8");
            break;
        case GgufValueType::I8:
            v.i = c.get<int8_t>("an i8");
            break;
        case GgufValueType::U16:
            v.u = c.get<uint16_t>("a u16");
            break;
        case GgufValueType::I16:
            v.i = c.get<int16_t>("an i16");
            break;
        case GgufValueType::U32:
            v.u = c.get<uint32_t>("a u32");
            break;
        case GgufValueType::I32:
            v.i = c.get<int32_t>("an i32");
            break;
        case GgufValueType::U64:
            v.u = c.get<uint64_t>("a u64");
            break;
        case GgufValueType::I64:
            v.i = c.get<int64_t>("an i64");
            break;
        case GgufValueType::F32:
            v.f = c.get<float>("an f32");
            break;
        case GgufValueType::F64:
            v.f = c.get<double>("an f64");
            break;
        case GgufValueType::BOOL: {
            const auto b = c.get<uint8_t>("a bool");
            if (b > 1) {
                throw Error(c.path + ": key '" + key + "': bool value " + std::to_string(b) +
                            " is not 0 or 1");
            }
            v.b = b == 1;
            break;
        }
        case GgufValueType::STRING:
            v.str = c.str("a string");
            break;
        case GgufValueType::ARRAY: {
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
        if (a.type != GgufValueType::U32 || a.u == 0 || (a.u & (a.u - 1)) != 0) {
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
        if (type != 0 && type != 1 && type != 8) {
            throw Error(p + ": tensor '" + t.name + "' has unknown or unsupported ggml type " +
                        std::to_string(type) + " (F32 0, F16 1, Q8_0 8 are read)");
        }
        t.type = static_cast<GgmlType>(type);
        if (t.type == GgmlType::Q8_0 && t.ne[0] % kQK8_0 != 0) {
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
