// write_gguf and what only the writer needs: GGUF tensor names, Llama's q/k permutation,
// metadata serialization and the temporary file renamed into place.
#include "model/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace fs = std::filesystem;

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

std::vector<float> permute_llama_qk(const float* w, int64_t rows, int64_t cols, int n_head) {
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

namespace {

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
        key(k, GgufValueType::u32);
        put(out, v);
    }
    void f32(const std::string& k, float v) {
        key(k, GgufValueType::f32);
        put(out, v);
    }
    void boolean(const std::string& k, bool v) {
        key(k, GgufValueType::boolean);
        put<uint8_t>(out, v ? 1 : 0);
    }
    void str(const std::string& k, const std::string& v) {
        key(k, GgufValueType::string);
        put_str(out, v);
    }
    void strings(const std::string& k, const std::vector<std::string>& v) {
        key(k, GgufValueType::array);
        put(out, static_cast<uint32_t>(GgufValueType::string));
        put<uint64_t>(out, v.size());
        for (const std::string& s : v) put_str(out, s);
    }
    void i32s(const std::string& k, const std::vector<int32_t>& v) {
        key(k, GgufValueType::array);
        put(out, static_cast<uint32_t>(GgufValueType::i32));
        put<uint64_t>(out, v.size());
        for (int32_t x : v) put(out, x);
    }
};

// A file descriptor written through a buffer; the file is removed unless commit() ran.
class TempFile {
  public:
    explicit TempFile(const fs::path& out) : out_(out) {
        const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
        // Appended piece by piece: "." + string trips GCC 12's -Wrestrict false positive.
        std::string name = ".";
        name += out.filename().string();
        name += ".tmp." + std::to_string(::getpid());
        tmp_ = dir / name;
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
    if (file_type == GgufType::f32 || t.shape.size() < 2) return GgmlType::f32;
    if (file_type == GgufType::q8_0 && t.shape.back() % kQ8_0BlockSize == 0) return GgmlType::q8_0;
    if (file_type == GgufType::bf16) return GgmlType::bf16;
    return GgmlType::f16;
}

}  // namespace

void write_gguf(const Model& model, const GgufTokenizer& tok, const std::string& name,
                GgufType type, const fs::path& out) {
    if (model.fp32_released()) {
        throw Error(out.string() +
                    ": cannot export an inference-only model (its fp32 matrices "
                    "were released)");
    }
    if (model.has_lora()) {
        throw Error(out.string() + ": the model has LoRA adapters: merge them first");
    }
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
    kv.u32("general.alignment", kGgufAlignment);
    // llama.cpp's llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
    kv.u32("general.file_type", type == GgufType::f32    ? 0
                                : type == GgufType::f16  ? 1
                                : type == GgufType::bf16 ? 32
                                                         : 7);
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
        offset = align_up(offset + ggml_nbytes(tt, t.numel), kGgufAlignment);
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
    header.resize(align_up(header.size(), kGgufAlignment), '\0');

    TempFile file(out);
    file.write(header.data(), header.size());
    const uint64_t data_start = header.size();
    static const char zeros[kGgufAlignment] = {};
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
            permuted = permute_llama_qk(x, rows, cols,
                                        is_q ? c.num_attention_heads : c.num_key_value_heads);
            x = permuted.data();
        }
        const std::vector<uint8_t> bytes = encode_ggml(p.type, x, t.numel);
        file.write(bytes.data(), bytes.size());
        const uint64_t rel = file.size() - data_start;
        file.write(zeros, align_up(rel, kGgufAlignment) - rel);
    }
    file.commit();
}

}  // namespace crucible
