#include "model/model.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "kernels/bf16_linear.h"
#include "kernels/kernels.h"
#include "kernels/q8_0_linear.h"
#include "model/gguf.h"

namespace crucible {

namespace k = kernels;

// The per-layer tensor names in LayerParams' field order.
static const char* const kLayerTensorNames[] = {
    "input_layernorm.weight", "self_attn.q_proj.weight",
    "self_attn.q_proj.bias",  "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",  "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",  "self_attn.o_proj.weight",
    "self_attn.o_proj.bias",  "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",   "mlp.gate_proj.bias",
    "mlp.up_proj.weight",     "mlp.up_proj.bias",
    "mlp.down_proj.weight",   "mlp.down_proj.bias"};
static_assert(sizeof(kLayerTensorNames) / sizeof(kLayerTensorNames[0]) ==
              sizeof(Model::LayerOffsets) / sizeof(size_t));

void PackedBatch::add_sequence(const std::vector<int32_t>& inputs, const std::vector<int32_t>& next,
                               const std::vector<float>& weights) {
    seq_start.push_back(n_tokens());
    seq_len.push_back(static_cast<int32_t>(inputs.size()));
    for (size_t i = 0; i < inputs.size(); i++) {
        tokens.push_back(inputs[i]);
        targets.push_back(next[i]);
        positions.push_back(static_cast<int32_t>(i));
        loss_weight.push_back(weights[i]);
    }
}

void PackedBatch::clear() {
    tokens.clear();
    targets.clear();
    positions.clear();
    loss_weight.clear();
    seq_start.clear();
    seq_len.clear();
}

double physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? double(pages) * double(page) : 1e18;
}

namespace {

// Parameters of one decoder layer and of the embeddings (each of embed_tokens and lm_head).
double layer_param_count(const ModelConfig& c) {
    const double H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    return 2 * H + Q * H + 2 * KV * H + H * Q + 3 * I * H + (c.qkv_bias ? Q + 2 * KV : 0) +
           (c.o_bias ? H : 0) + (c.mlp_bias ? 2 * I + H : 0);
}

std::string gb(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
    return buf;
}

}  // namespace

MatmulDtype parse_matmul_dtype(const std::string& value, const std::string& key) {
    if (value == "float32") return MatmulDtype::float32;
    if (value == "bfloat16") return MatmulDtype::bfloat16;
    if (value == "q8_0") return MatmulDtype::q8_0;
    throw Error(key + ": unknown dtype '" + value + "' (expected float32, bfloat16 or q8_0)");
}

const char* to_string(MatmulDtype dtype) {
    switch (dtype) {
        case MatmulDtype::bfloat16:
            return "bfloat16";
        case MatmulDtype::q8_0:
            return "q8_0";
        case MatmulDtype::float32:
            break;
    }
    return "float32";
}

void Model::set_matmul_dtype(MatmulDtype dtype) {
    if (fp32_released_ && dtype != matmul_dtype_) {
        throw Error("model: its fp32 matrices were released (an inference-only " +
                    std::string(to_string(matmul_dtype_)) + " model); it cannot change to " +
                    to_string(dtype));
    }
    if (dtype == matmul_dtype_) return;
    if (dtype == MatmulDtype::q8_0) {
        for (const TensorInfo& t : tensors_) {
            if (t.shape.size() == 2 && t.shape[1] % k::kQ8_0Block != 0) {
                throw Error("model: q8_0 quantizes blocks of 32 inputs, but " + t.name +
                            " has input size " + std::to_string(t.shape[1]) +
                            ", not a multiple of 32");
            }
        }
    }
    matmul_dtype_ = dtype;
    allocate_copy();
    copy_stale_ = true;
}

void Model::allocate_copy() {
    // The copy of the other dtype's memory back.
    if (matmul_dtype_ != MatmulDtype::bfloat16) decltype(bf16_)().swap(bf16_);
    if (matmul_dtype_ != MatmulDtype::q8_0) {
        decltype(q8_)().swap(q8_);
        q8_at_.clear();
    }
    if (matmul_dtype_ == MatmulDtype::bfloat16) bf16_.resize(params_.size());
    if (matmul_dtype_ != MatmulDtype::q8_0 || !q8_.empty()) return;
    size_t bytes = 0;
    for (const TensorInfo& t : tensors_) {
        if (t.shape.size() != 2) continue;
        q8_at_[t.offset] = bytes;
        bytes += t.numel / k::kQ8_0Block * k::kQ8_0BlockBytes;
    }
    q8_.resize(bytes);
}

void Model::write_copy(const TensorInfo& t, const float* src) {
    if (matmul_dtype_ == MatmulDtype::bfloat16) {
        k::to_bf16(bf16_.data() + t.offset, src, t.numel);
    } else if (matmul_dtype_ == MatmulDtype::q8_0 && t.shape.size() == 2) {
        // A block's scale is an fp16 of amax / 127: past 65504 * 127 it would be inf and the
        // block NaN, and a NaN or inf has no Q8_0 value at all (ggml's rounding casts NaN).
        constexpr float kMax = 65504.0f * 127.0f;
        for (size_t i = 0; i < t.numel; i++) {
            if (!(std::fabs(src[i]) <= kMax)) {
                throw Error("model: q8_0 cannot hold " + t.name + ": element " + std::to_string(i) +
                            " is " + std::to_string(src[i]) +
                            " (Q8_0 holds finite values up to 65504 x 127 in magnitude)");
            }
        }
        encode_ggml_into(GgmlType::q8_0, src, t.numel, q8_.data() + q8_at_.at(t.offset));
    }
}

void Model::release_fp32_matrices() {
    if (matmul_dtype_ == MatmulDtype::float32) {
        throw Error("model: only a bfloat16 or q8_0 model can release its fp32 matrices");
    }
    refresh_copy();
    for (const TensorInfo& t : tensors_) {
        if (t.shape.size() == 2) release_pages(params_.data() + t.offset, t.numel * sizeof(float));
    }
    std::vector<float>().swap(grads_);
    fp32_released_ = true;
}

void Model::hold_matrices_in(MatmulDtype dtype) {
    if (dtype == MatmulDtype::float32) {
        throw Error("model: the matrices can be held alone in bfloat16 or q8_0, not float32");
    }
    set_matmul_dtype(dtype);
    copy_stale_ = false;
    fp32_released_ = true;
}

void Model::write_tensor(const TensorInfo& t, const std::function<void(float*)>& fill) {
    float* dst = params_.data() + t.offset;
    fill(dst);
    if (!fp32_released_) {
        copy_stale_ = true;
        return;
    }
    // A norm or bias stays fp32; a matrix passes through on its way to its copy.
    write_copy(t, dst);
    if (t.shape.size() == 2) release_pages(dst, t.numel * sizeof(float));
}

void Model::refresh_copy() {
    if (matmul_dtype_ == MatmulDtype::float32 || !copy_stale_) return;
    if (fp32_released_) {
        throw Error(
            "model: its weights were written after its fp32 matrices were released (an "
            "inference-only " +
            std::string(to_string(matmul_dtype_)) + " model): the copy cannot follow");
    }
    allocate_copy();
    for (const TensorInfo& t : tensors_) write_copy(t, params_.data() + t.offset);
    copy_stale_ = false;
}

void Model::linear(float* out, const float* inp, const float* w, const float* b, int N, int C,
                   int OC) const {
    switch (matmul_dtype_) {
        case MatmulDtype::bfloat16:
            return k::linear_forward_bf16(out, inp, bf16_of(w), b, N, C, OC);
        case MatmulDtype::q8_0:
            return k::linear_forward_q8_0(out, inp, q8_of(w), b, N, C, OC);
        case MatmulDtype::float32:
            break;
    }
    k::linear_forward(out, inp, w, b, N, C, OC);
}

void Model::linear_back(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                        const float* w, int N, int C, int OC) const {
    switch (matmul_dtype_) {
        case MatmulDtype::bfloat16:
            return k::linear_backward_bf16(dinp, dw, db, dout, inp, bf16_of(w), N, C, OC);
        case MatmulDtype::q8_0:
            // backward() lets a q8_0 model train its adapters only: its matrices are frozen.
            if (dw || db) throw Error("model: a q8_0 base is frozen; only LoRA adapters train");
            if (dinp) k::linear_backward_q8_0(dinp, dout, q8_of(w), N, C, OC);
            return;
        case MatmulDtype::float32:
            break;
    }
    k::linear_backward(dinp, dw, db, dout, inp, w, N, C, OC);
}

void Model::embed(float* out, const int32_t* tokens, int N) const {
    const float* table = params_.data() + find("model.embed_tokens.weight")->offset;
    switch (matmul_dtype_) {
        case MatmulDtype::bfloat16:
            return k::embedding_forward_bf16(out, tokens, bf16_of(table), N, config_.hidden_size);
        case MatmulDtype::q8_0:
            return k::embedding_forward_q8_0(out, tokens, q8_of(table), N, config_.hidden_size);
        case MatmulDtype::float32:
            break;
    }
    k::embedding_forward(out, tokens, table, N, config_.hidden_size);
}

double Model::param_count(const ModelConfig& c) {
    const double embed = double(c.vocab_size) * c.hidden_size;
    return embed * (c.tie_word_embeddings ? 1 : 2) + c.hidden_size +
           double(c.num_hidden_layers) * layer_param_count(c);
}

std::string Model::param_count_cause(const ModelConfig& c) {
    const double layers = double(c.num_hidden_layers) * layer_param_count(c);
    const double embed = double(c.vocab_size) * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
    char buf[200];
    if (layers >= embed) {
        std::snprintf(buf, sizeof buf,
                      "num_hidden_layers %d x %.3g parameters a layer (hidden_size %d, "
                      "intermediate_size %d)",
                      c.num_hidden_layers, layer_param_count(c), c.hidden_size,
                      c.intermediate_size);
    } else {
        std::snprintf(buf, sizeof buf, "vocab_size %d x hidden_size %d%s", c.vocab_size,
                      c.hidden_size, c.tie_word_embeddings ? "" : " x 2 (untied lm_head)");
    }
    return buf;
}

double Model::activation_floats(const ModelConfig& c, double n_seqs, double seq_len) {
    // As ensure_capacity() lays them out: per layer, the final block, one layer of gradients.
    const double N = n_seqs * seq_len, H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(),
                 KV = c.kv_dim(), V = c.vocab_size;
    const double P = double(c.num_attention_heads) * n_seqs * seq_len * seq_len;
    const double layer = N * (5 * H + 2 * Q + 2 * KV + 3 * I + 2) + P;
    const double tail = N * (2 * H + V + 3);
    const double grads = N * (2 * H + 2 * Q + 2 * KV + 3 * I) + P;
    return double(c.num_hidden_layers) * layer + tail + grads;
}

Model::Model(const ModelConfig& config) : config_(config) {
    config_.validate("model config");
    // Refused before allocating (or laying out) anything: parameters and gradients alone.
    const double bytes =
        8 * param_count(config_) + 4.0 * config_.max_position_embeddings * config_.head_dim;
    if (bytes > physical_memory_bytes()) {
        throw Error("model config: " + param_count_cause(config_) + ": its parameters and " +
                    "gradients need " + gb(bytes) + ", more than this machine's " +
                    gb(physical_memory_bytes()));
    }
    build_layout();
    const int half = config_.head_dim / 2;
    rope_cos_.resize((size_t)config_.max_position_embeddings * half);
    rope_sin_.resize(rope_cos_.size());
    k::rope_table_init(rope_cos_.data(), rope_sin_.data(), config_.max_position_embeddings,
                       config_.head_dim, config_.rope_theta);
}

void Model::build_layout() {
    const ModelConfig& c = config_;
    const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    size_t offset = 0;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
        size_t numel = 1;
        for (int64_t d : shape) numel *= static_cast<size_t>(d);
        index_[name] = tensors_.size();
        tensors_.push_back({name, std::move(shape), offset, numel, decay});
        offset += numel;
    };
    add("model.embed_tokens.weight", {c.vocab_size, H}, true);
    for (int l = 0; l < c.num_hidden_layers; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {H}, false);
        add(p + "self_attn.q_proj.weight", {Q, H}, true);
        if (c.qkv_bias) add(p + "self_attn.q_proj.bias", {Q}, false);
        add(p + "self_attn.k_proj.weight", {KV, H}, true);
        if (c.qkv_bias) add(p + "self_attn.k_proj.bias", {KV}, false);
        add(p + "self_attn.v_proj.weight", {KV, H}, true);
        if (c.qkv_bias) add(p + "self_attn.v_proj.bias", {KV}, false);
        add(p + "self_attn.o_proj.weight", {H, Q}, true);
        if (c.o_bias) add(p + "self_attn.o_proj.bias", {H}, false);
        add(p + "post_attention_layernorm.weight", {H}, false);
        add(p + "mlp.gate_proj.weight", {I, H}, true);
        if (c.mlp_bias) add(p + "mlp.gate_proj.bias", {I}, false);
        add(p + "mlp.up_proj.weight", {I, H}, true);
        if (c.mlp_bias) add(p + "mlp.up_proj.bias", {I}, false);
        add(p + "mlp.down_proj.weight", {H, I}, true);
        if (c.mlp_bias) add(p + "mlp.down_proj.bias", {H}, false);
    }
    add("model.norm.weight", {H}, false);
    layer_offsets_.resize(c.num_hidden_layers);
    for (int l = 0; l < c.num_hidden_layers; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (int i = 0; i < kLayerTensorCount; i++) {
            auto it = index_.find(p + kLayerTensorNames[i]);
            layer_offsets_[l][i] = it == index_.end() ? kAbsent : tensors_[it->second].offset;
        }
    }
    if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H}, true);
    params_.resize(offset);  // zeros (calloc), resident only where written
}

const TensorInfo* Model::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

float* Model::param(const std::string& name) {
    const TensorInfo* t = find(name);
    if (t) copy_stale_ = true;  // the caller may write it
    return t ? params_.data() + t->offset : nullptr;
}

float* Model::grad(const std::string& name) {
    const TensorInfo* t = find(name);
    if (!t) return nullptr;
    allocate_grads();
    return grads_.data() + t->offset;
}

Model::LayerParams Model::layer_params(float* base, int l) const {
    // Resolved once in build_layout(); absent tensors (biases a config omits) are nullptr.
    const size_t* off = layer_offsets_[l].data();
    float* p[kLayerTensorCount];
    for (int i = 0; i < kLayerTensorCount; i++) p[i] = off[i] == kAbsent ? nullptr : base + off[i];
    return {p[0], p[1], p[2],  p[3],  p[4],  p[5],  p[6],  p[7],
            p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]};
}

namespace {

// LoRA's slots in LayerParams' order of the seven projections.
const char* const kLoraTargets[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};

}  // namespace

void Model::enable_lora(const LoraConfig& config, uint64_t seed) {
    if (has_lora()) throw Error("lora: the model already has adapters");
    if (config.rank < 1) {
        throw Error("lora.rank: must be at least 1 (got " + std::to_string(config.rank) + ")");
    }
    if (!(config.alpha > 0) || !std::isfinite(config.alpha)) {
        throw Error("lora.alpha: must be a positive number");
    }
    if (config.targets.empty()) throw Error("lora.targets: name at least one projection");
    std::array<bool, kLoraSlots> on{};
    for (const std::string& t : config.targets) {
        const auto it = std::find(std::begin(kLoraTargets), std::end(kLoraTargets), t);
        if (it == std::end(kLoraTargets)) {
            throw Error("lora.targets: unknown target '" + t +
                        "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or "
                        "down_proj)");
        }
        on[it - std::begin(kLoraTargets)] = true;
    }
    const ModelConfig& c = config_;
    const int H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    const int in[kLoraSlots] = {H, H, H, Q, H, H, I};
    const int out[kLoraSlots] = {Q, KV, KV, H, I, I, H};
    for (int s = 0; s < kLoraSlots; s++) {
        if (on[s] && config.rank > std::min(in[s], out[s])) {
            throw Error("lora.rank: " + std::to_string(config.rank) + " exceeds " +
                        std::to_string(std::min(in[s], out[s])) + ", the smaller side of " +
                        kLoraTargets[s] + " (" + std::to_string(out[s]) + " x " +
                        std::to_string(in[s]) + "): B A could not have that rank");
        }
    }
    const size_t r = static_cast<size_t>(config.rank);
    size_t off = 0;
    lora_slot_.assign(c.num_hidden_layers, {});
    for (int l = 0; l < c.num_hidden_layers; l++) {
        for (int s = 0; s < kLoraSlots; s++) {
            if (!on[s]) continue;
            const std::string stem = "base_model.model.model.layers." + std::to_string(l) +
                                     (s < 4 ? ".self_attn." : ".mlp.") + kLoraTargets[s];
            LoraSlot& slot = lora_slot_[l][s];
            slot.in = in[s];
            slot.out = out[s];
            slot.a = off;
            lora_tensors_.push_back(
                {stem + ".lora_A.weight", {(int64_t)r, in[s]}, off, r * in[s], true});
            off += r * in[s];
            slot.b = off;
            lora_tensors_.push_back(
                {stem + ".lora_B.weight", {out[s], (int64_t)r}, off, r * out[s], true});
            off += r * out[s];
        }
    }
    lora_params_.assign(off, 0.0f);
    lora_grads_.assign(off, 0.0f);
    Rng rng(seed);
    for (const TensorInfo& t : lora_tensors_) {
        if (t.name.find(".lora_A.") == std::string::npos) continue;  // B stays 0
        const double bound = 1.0 / std::sqrt((double)t.shape[1]);
        float* p = lora_params_.data() + t.offset;
        for (size_t i = 0; i < t.numel; i++) p[i] = (float)((2 * rng.uniform() - 1) * bound);
    }
    lora_ = config;
}

void Model::lora_forward(int l, int s, float* out, const float* x, int N, float* h) const {
    const LoraSlot& slot = lora_slot_[l][s];
    if (slot.a == kAbsent) return;
    const int r = lora_.rank;
    k::linear_forward(h, x, lora_params_.data() + slot.a, nullptr, N, slot.in, r);
    lora_tmp_.resize((size_t)N * slot.out);
    k::linear_forward(lora_tmp_.data(), h, lora_params_.data() + slot.b, nullptr, N, r, slot.out);
    const float scale = (float)(lora_.alpha / r);
    const size_t n = (size_t)N * slot.out;
    for (size_t i = 0; i < n; i++) out[i] += scale * lora_tmp_[i];
}

void Model::lora_backward(int l, int s, float* dx, const float* dout, const float* x,
                          const float* h, int N) {
    const LoraSlot& slot = lora_slot_[l][s];
    if (slot.a == kAbsent) return;
    const int r = lora_.rank;
    const float scale = (float)(lora_.alpha / r);
    const size_t n = (size_t)N * slot.out;
    lora_tmp_.resize(n + (size_t)N * r);
    float* ds = lora_tmp_.data();
    float* dh = ds + n;
    for (size_t i = 0; i < n; i++) ds[i] = scale * dout[i];
    std::fill(dh, dh + (size_t)N * r, 0.0f);
    // h = A x, y += scale * B h: dB += ds^T h, dh = ds B, then dA += dh^T x, dx += dh A.
    k::linear_backward(dh, lora_grads_.data() + slot.b, nullptr, ds, h,
                       lora_params_.data() + slot.b, N, r, slot.out);
    k::linear_backward(dx, lora_grads_.data() + slot.a, nullptr, dh, x,
                       lora_params_.data() + slot.a, N, slot.in, r);
}

void Model::merge_lora() {
    if (!has_lora()) return;
    if (matmul_dtype_ == MatmulDtype::q8_0) {
        throw Error(
            "lora: cannot merge into a q8_0 base: the adapters were trained on the quantized "
            "weights, and quantizing W + (alpha/r) B A again would move every block's rounding; "
            "merge with the base as float32 or bfloat16 (crucible convert --lora)");
    }
    if (fp32_released_) {
        throw Error(
            "lora: cannot merge into a model whose fp32 matrices were released (an "
            "inference-only bfloat16 model): the merge writes W + (alpha/r) B A in fp32");
    }
    const int r = lora_.rank;
    const float scale = (float)(lora_.alpha / r);
    for (int l = 0; l < config_.num_hidden_layers; l++) {
        const LayerParams w = layer_params(params_.data(), l);
        float* const weights[kLoraSlots] = {w.q_w, w.k_w, w.v_w, w.o_w, w.gate_w, w.up_w, w.down_w};
        for (int s = 0; s < kLoraSlots; s++) {
            const LoraSlot& slot = lora_slot_[l][s];
            if (slot.a == kAbsent) continue;
            const float* A = lora_params_.data() + slot.a;
            const float* B = lora_params_.data() + slot.b;
            for (int o = 0; o < slot.out; o++) {
                float* row = weights[s] + (size_t)o * slot.in;
                for (int c = 0; c < slot.in; c++) {
                    float d = 0.0f;
                    for (int q = 0; q < r; q++)
                        d += B[(size_t)o * r + q] * A[(size_t)q * slot.in + c];
                    row[c] += scale * d;
                }
            }
        }
    }
    copy_stale_ = true;
    drop_lora();
}

void Model::drop_lora() {
    lora_ = LoraConfig{0, 0.0, {}};
    lora_tensors_.clear();
    std::vector<float>().swap(lora_params_);
    std::vector<float>().swap(lora_grads_);
    std::vector<float>().swap(lora_h_);
    lora_slot_.clear();
}

void Model::init_random(uint64_t seed, float std) {
    copy_stale_ = true;
    Rng rng(seed);
    for (const TensorInfo& t : tensors_) {
        float* p = params_.data() + t.offset;
        const bool is_norm = t.name.find("norm") != std::string::npos;
        const bool is_bias = t.shape.size() == 1 && !is_norm;
        for (size_t i = 0; i < t.numel; i++) {
            p[i] = is_norm ? 1.0f : is_bias ? 0.0f : static_cast<float>(rng.normal() * std);
        }
    }
}

void Model::zero_grads() {
    if (has_lora()) return std::fill(lora_grads_.begin(), lora_grads_.end(), 0.0f);
    if (grads_.size() != params_.size()) return allocate_grads();  // zeroed when allocated
    std::fill(grads_.begin(), grads_.end(), 0.0f);
}

void Model::ensure_capacity(int n_tokens, int64_t probs_per_layer) {
    if (n_tokens <= cap_tokens_ && probs_per_layer <= cap_probs_) return;
    cap_tokens_ = std::max(n_tokens, cap_tokens_);
    cap_probs_ = std::max(probs_per_layer, cap_probs_);
    const ModelConfig& c = config_;
    const size_t N = cap_tokens_, H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(),
                 KV = c.kv_dim(), V = c.vocab_size, P = cap_probs_;
    ActivationLayout a{};
    size_t off = 0;
    auto take = [&](size_t n) {
        const size_t at = off;
        off += (n + 15) & ~size_t(15);  // 64-byte aligned sub-buffers
        return at;
    };
    // Per-layer block; layer l's tensors sit at layer offset + l * layer_stride.
    a.resid = take(N * H);
    a.ln1 = take(N * H);
    a.rstd1 = take(N);
    a.q = take(N * Q);
    a.k = take(N * KV);
    a.v = take(N * KV);
    a.probs = take(P);
    a.att = take(N * Q);
    a.mid = take(N * H);
    a.ln2 = take(N * H);
    a.rstd2 = take(N);
    a.gate = take(N * I);
    a.up = take(N * I);
    a.act = take(N * I);
    a.layer_stride = off;
    off = a.layer_stride * c.num_hidden_layers;
    a.lnf = take(N * H);
    a.rstdf = take(N);
    a.logits = take(N * V);
    a.lse = take(N);
    a.losses = take(N);
    a.final_resid = take(N * H);
    // One layer's worth of activation gradients, reused by every layer in backward.
    a.d_resid = take(N * H);
    a.d_tmp = take(N * H);
    a.d_q = take(N * Q);
    a.d_k = take(N * KV);
    a.d_v = take(N * KV);
    a.d_att = take(N * Q);
    a.d_probs = take(P);
    a.d_gate = take(N * I);
    a.d_up = take(N * I);
    a.d_act = take(N * I);
    a.total = off;
    act_ = a;
    acts_.assign(a.total, 0.0f);
}

double Model::forward(const PackedBatch& batch) {
    const ModelConfig& c = config_;
    const int N = batch.n_tokens();
    const int S = batch.n_seqs();
    const int V = c.vocab_size;
    for (int s = 0; s < S; s++) {
        if (batch.seq_len[s] > c.max_position_embeddings) {
            throw Error("sequence of " + std::to_string(batch.seq_len[s]) +
                        " tokens exceeds max_position_embeddings " +
                        std::to_string(c.max_position_embeddings));
        }
    }
    for (int n = 0; n < N; n++) {
        if (batch.tokens[n] < 0 || batch.tokens[n] >= V || batch.targets[n] < 0 ||
            batch.targets[n] >= V) {
            throw Error("token id out of range [0, " + std::to_string(V) + ") at row " +
                        std::to_string(n));
        }
    }
    probs_offset_.resize(S);
    int64_t probs = 0;
    for (int s = 0; s < S; s++) {
        probs_offset_[s] = probs;
        probs += (int64_t)c.num_attention_heads * batch.seq_len[s] * batch.seq_len[s];
    }
    probs_per_layer_ = probs;
    ensure_capacity(N, probs);
    batch_ = &batch;

    float* A = acts_.data();
    const ActivationLayout& a = act_;
    const k::AttentionShape shape{
        c.num_attention_heads,  c.num_key_value_heads, c.head_dim,          S,
        batch.seq_start.data(), batch.seq_len.data(),  probs_offset_.data()};

    refresh_copy();
    embed(A + a.resid, batch.tokens.data(), N);
    for (int l = 0; l < c.num_hidden_layers; l++) {
        float* L = A + l * a.layer_stride;
        // The next layer's residual input lives in the next layer block (or lnf's input).
        float* resid_out =
            l + 1 < c.num_hidden_layers ? L + a.layer_stride + a.resid : A + a.final_resid;
        const LayerActivations la{L + a.resid, L + a.ln1, L + a.rstd1, L + a.q,   L + a.k,
                                  L + a.v,     L + a.att, L + a.mid,   L + a.ln2, L + a.rstd2,
                                  L + a.gate,  L + a.up,  L + a.act,   resid_out};
        float* lora_h = nullptr;
        if (has_lora()) {
            const size_t per_layer = (size_t)kLoraSlots * N * lora_.rank;
            if (l == 0) lora_h_.resize(per_layer * c.num_hidden_layers);
            lora_h = lora_h_.data() + l * per_layer;
        }
        forward_layer(
            l, la, batch.positions.data(), N,
            [&](const LayerActivations& x) {
                k::attention_forward(x.att, L + a.probs, x.q, x.k, x.v, shape);
            },
            lora_h);
    }
    // After the loop the last layer's output sits in final_resid.
    forward_head(A + a.logits, A + a.lnf, A + a.rstdf, A + a.final_resid, N);
    k::cross_entropy_forward(A + a.losses, A + a.lse, A + a.logits, batch.targets.data(), N, V);
    double objective = 0.0;
    for (int n = 0; n < N; n++) objective += (double)batch.loss_weight[n] * A[a.losses + n];
    return objective;
}

void Model::forward_layer(int l, const LayerActivations& a, const int32_t* positions, int N,
                          const std::function<void(const LayerActivations&)>& attend,
                          float* lora_h) const {
    const ModelConfig& c = config_;
    const int H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    const size_t NH = (size_t)N * H;
    const LayerParams w = layer(l);
    const size_t hstride = lora_h ? (size_t)N * lora_.rank : 0;  // one slot's A x
    // attention block
    k::rmsnorm_forward(a.ln1, a.rstd1, a.resid, w.ln1_w, N, H, c.rms_norm_eps);
    linear(a.q, a.ln1, w.q_w, w.q_b, N, H, Q);
    if (lora_h) lora_forward(l, 0, a.q, a.ln1, N, lora_h + 0 * hstride);
    linear(a.k, a.ln1, w.k_w, w.k_b, N, H, KV);
    if (lora_h) lora_forward(l, 1, a.k, a.ln1, N, lora_h + 1 * hstride);
    linear(a.v, a.ln1, w.v_w, w.v_b, N, H, KV);
    if (lora_h) lora_forward(l, 2, a.v, a.ln1, N, lora_h + 2 * hstride);
    k::rope_forward(a.q, positions, rope_cos_.data(), rope_sin_.data(), N, c.num_attention_heads,
                    c.head_dim);
    k::rope_forward(a.k, positions, rope_cos_.data(), rope_sin_.data(), N, c.num_key_value_heads,
                    c.head_dim);
    attend(a);
    linear(a.mid, a.att, w.o_w, w.o_b, N, Q, H);
    if (lora_h) lora_forward(l, 3, a.mid, a.att, N, lora_h + 3 * hstride);
    k::residual_forward(a.mid, a.mid, a.resid, NH);
    // MLP block
    k::rmsnorm_forward(a.ln2, a.rstd2, a.mid, w.ln2_w, N, H, c.rms_norm_eps);
    linear(a.gate, a.ln2, w.gate_w, w.gate_b, N, H, I);
    if (lora_h) lora_forward(l, 4, a.gate, a.ln2, N, lora_h + 4 * hstride);
    linear(a.up, a.ln2, w.up_w, w.up_b, N, H, I);
    if (lora_h) lora_forward(l, 5, a.up, a.ln2, N, lora_h + 5 * hstride);
    k::swiglu_forward(a.act, a.gate, a.up, (size_t)N * I);
    linear(a.resid_out, a.act, w.down_w, w.down_b, N, I, H);
    if (lora_h) lora_forward(l, 6, a.resid_out, a.act, N, lora_h + 6 * hstride);
    k::residual_forward(a.resid_out, a.resid_out, a.mid, NH);
}

void Model::forward_head(float* logits, float* ln, float* rstd, const float* x, int M) const {
    const ModelConfig& c = config_;
    const float* base = params_.data();
    k::rmsnorm_forward(ln, rstd, x, base + find("model.norm.weight")->offset, M, c.hidden_size,
                       c.rms_norm_eps);
    const TensorInfo* head =
        find(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    linear(logits, ln, base + head->offset, nullptr, M, c.hidden_size, c.vocab_size);
}

void Model::forward_cached(const int32_t* tokens, const int32_t* positions, int N,
                           const CachedAttention& attend, const int32_t* logit_rows, int M,
                           float* logits) {
    const ModelConfig& c = config_;
    const size_t n = N, H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    // x (N, H) | ln (N, H) | rstd (N) | q (N, Q) | k, v (N, KV) | att (N, Q) | mid (N, H) |
    // gate, up, act (N, I) | sel (M, H): the residual stream stays in x across layers.
    const size_t sizes[] = {n * H, n * H, n,     n * Q, n * KV, n * KV,
                            n * Q, n * H, n * I, n * I, n * I,  (size_t)M * H};
    size_t total = 0;
    for (size_t s : sizes) total += s;
    if (cached_acts_.size() < total) cached_acts_.resize(total);
    float* buf[std::size(sizes)];
    float* at = cached_acts_.data();
    for (size_t i = 0; i < std::size(sizes); i++) {
        buf[i] = at;
        at += sizes[i];
    }
    float *x = buf[0], *ln = buf[1], *rstd = buf[2], *sel = buf[11];
    refresh_copy();
    embed(x, tokens, N);
    const LayerActivations la{x,      ln, rstd, buf[3], buf[4], buf[5],  buf[6],
                              buf[7], ln, rstd, buf[8], buf[9], buf[10], x};
    float* lora_h = nullptr;  // A x of the adapters, not kept: no backward follows
    if (has_lora()) {
        lora_cached_h_.resize((size_t)kLoraSlots * N * lora_.rank);
        lora_h = lora_cached_h_.data();
    }
    for (int l = 0; l < c.num_hidden_layers; l++) {
        forward_layer(
            l, la, positions, N,
            [&](const LayerActivations& a) { attend(l, a.q, a.k, a.v, a.att); }, lora_h);
    }
    if (M == 0) return;
    for (int m = 0; m < M; m++)
        std::memcpy(sel + (size_t)m * H, x + (size_t)logit_rows[m] * H, H * sizeof(float));
    forward_head(logits, ln, rstd, sel, M);
}

void Model::backward() {
    if (!batch_) throw Error("Model::backward called without a forward pass");
    if (fp32_released_ && !has_lora()) {  // LoRA trains the adapters over the bf16 base
        throw Error(
            "model: cannot train an inference-only model (its fp32 matrices were "
            "released)");
    }
    if (matmul_dtype_ == MatmulDtype::q8_0 && !has_lora()) {
        throw Error(
            "model: a q8_0 model is a frozen base: it cannot train its own weights (LoRA "
            "adapters train beside it; full training takes float32 or bfloat16)");
    }
    // With LoRA the base is frozen: only the adapters get gradients, and no buffer of the base's
    // size is allocated (the frozen norms' gradients go to a scratch row, the rest nowhere).
    const bool frozen = has_lora();
    if (!frozen) allocate_grads();  // backward accumulates: zeros on first use
    const PackedBatch& batch = *batch_;
    const ModelConfig& c = config_;
    const int N = batch.n_tokens();
    const int S = batch.n_seqs();
    const int H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    const int V = c.vocab_size;
    float* A = acts_.data();
    const ActivationLayout& a = act_;
    const k::AttentionShape shape{
        c.num_attention_heads,  c.num_key_value_heads, c.head_dim,          S,
        batch.seq_start.data(), batch.seq_len.data(),  probs_offset_.data()};
    const size_t NH = (size_t)N * H, NI = (size_t)N * I;
    auto zero = [](float* p, size_t n) { std::memset(p, 0, n * sizeof(float)); };
    float* d_resid = A + a.d_resid;
    float* d_tmp = A + a.d_tmp;

    // LM head and final norm
    float* dlogits = A + a.logits;
    k::cross_entropy_backward_inplace(dlogits, A + a.lse, batch.targets.data(),
                                      batch.loss_weight.data(), N, V);
    const bool tied = c.tie_word_embeddings;
    const float* head =
        params_.data() + find(tied ? "model.embed_tokens.weight" : "lm_head.weight")->offset;
    float* dhead = frozen ? nullptr
                   : tied ? grad("model.embed_tokens.weight")
                          : grad("lm_head.weight");
    frozen_norm_grad_.resize(frozen ? H : 0);
    float* const norm_scratch = frozen_norm_grad_.data();
    zero(d_tmp, NH);
    linear_back(d_tmp, dhead, nullptr, dlogits, A + a.lnf, head, N, H, V);
    zero(d_resid, NH);
    k::rmsnorm_backward(d_resid, frozen ? norm_scratch : grad("model.norm.weight"), d_tmp,
                        A + a.final_resid, params_.data() + find("model.norm.weight")->offset,
                        A + a.rstdf, N, H);

    for (int l = c.num_hidden_layers - 1; l >= 0; l--) {
        const LayerParams w = layer_params(params_.data(), l);
        LayerParams g{};
        if (frozen) {
            g.ln1_w = g.ln2_w = norm_scratch;
        } else {
            g = layer_params(grads_.data(), l);
        }
        const size_t hs = frozen ? (size_t)N * lora_.rank : 0;
        const float* h = frozen ? lora_h_.data() + (size_t)l * kLoraSlots * hs : nullptr;
        auto adapters = [&](int s, float* dx, const float* dout, const float* x) {
            if (frozen) lora_backward(l, s, dx, dout, x, h + s * hs, N);
        };
        float* L = A + l * a.layer_stride;
        // MLP block: resid_out = mid + down(act)
        zero(A + a.d_act, NI);
        linear_back(A + a.d_act, g.down_w, g.down_b, d_resid, L + a.act, w.down_w, N, I, H);
        adapters(6, A + a.d_act, d_resid, L + a.act);
        zero(A + a.d_gate, NI);
        zero(A + a.d_up, NI);
        k::swiglu_backward(A + a.d_gate, A + a.d_up, A + a.d_act, L + a.gate, L + a.up, NI);
        zero(d_tmp, NH);
        linear_back(d_tmp, g.gate_w, g.gate_b, A + a.d_gate, L + a.ln2, w.gate_w, N, H, I);
        adapters(4, d_tmp, A + a.d_gate, L + a.ln2);
        linear_back(d_tmp, g.up_w, g.up_b, A + a.d_up, L + a.ln2, w.up_w, N, H, I);
        adapters(5, d_tmp, A + a.d_up, L + a.ln2);
        k::rmsnorm_backward(d_resid, g.ln2_w, d_tmp, L + a.mid, w.ln2_w, L + a.rstd2, N, H);
        // attention block: mid = resid + o(att)
        zero(A + a.d_att, (size_t)N * Q);
        linear_back(A + a.d_att, g.o_w, g.o_b, d_resid, L + a.att, w.o_w, N, Q, H);
        adapters(3, A + a.d_att, d_resid, L + a.att);
        zero(A + a.d_q, (size_t)N * Q);
        zero(A + a.d_k, (size_t)N * KV);
        zero(A + a.d_v, (size_t)N * KV);
        k::attention_backward(A + a.d_q, A + a.d_k, A + a.d_v, A + a.d_probs, A + a.d_att, L + a.q,
                              L + a.k, L + a.v, L + a.probs, shape);
        k::rope_backward(A + a.d_q, batch.positions.data(), rope_cos_.data(), rope_sin_.data(), N,
                         c.num_attention_heads, c.head_dim);
        k::rope_backward(A + a.d_k, batch.positions.data(), rope_cos_.data(), rope_sin_.data(), N,
                         c.num_key_value_heads, c.head_dim);
        zero(d_tmp, NH);
        linear_back(d_tmp, g.q_w, g.q_b, A + a.d_q, L + a.ln1, w.q_w, N, H, Q);
        adapters(0, d_tmp, A + a.d_q, L + a.ln1);
        linear_back(d_tmp, g.k_w, g.k_b, A + a.d_k, L + a.ln1, w.k_w, N, H, KV);
        adapters(1, d_tmp, A + a.d_k, L + a.ln1);
        linear_back(d_tmp, g.v_w, g.v_b, A + a.d_v, L + a.ln1, w.v_w, N, H, KV);
        adapters(2, d_tmp, A + a.d_v, L + a.ln1);
        k::rmsnorm_backward(d_resid, g.ln1_w, d_tmp, L + a.resid, w.ln1_w, L + a.rstd1, N, H);
    }
    if (!frozen) {
        k::embedding_backward(grad("model.embed_tokens.weight"), d_resid, batch.tokens.data(), N,
                              H);
    }
    batch_ = nullptr;  // logits now hold gradients; a second backward would be wrong
}

double Model::train_flops(const ModelConfig& c, const PackedBatch& batch) {
    const double H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
    const double per_token_matmul =
        c.num_hidden_layers * (H * Q + 2 * H * KV + Q * H + 3 * H * I) + H * c.vocab_size;
    double attn = 0.0;  // multiply-adds of QK^T and PV over the causal triangle only
    for (int s = 0; s < batch.n_seqs(); s++) {
        const double T = batch.seq_len[s];
        attn += T * (T + 1) * c.head_dim * c.num_attention_heads * c.num_hidden_layers;
    }
    // forward 2 FLOPs per MAC, backward twice the forward
    return 3.0 * (2.0 * per_token_matmul * batch.n_tokens() + 2.0 * attn);
}

}  // namespace crucible
