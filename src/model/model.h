// The Qwen2/Llama decoder: parameters, gradients and activations each in one allocation, and
// a training forward/backward over packed batches (sequences back to back, no padding).
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/file_io.h"
#include "model/config.h"

namespace crucible {

// One named parameter tensor inside the flat parameter buffer (HF name and shape).
struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;
    size_t offset = 0;  // in floats, into the flat buffer
    size_t numel = 0;
    bool decay = false;  // matrices get weight decay; norms and biases do not
};

// Sequences packed into N rows. Row n predicts targets[n] from tokens[0..n] of its sequence.
struct PackedBatch {
    std::vector<int32_t> tokens;     // (N)
    std::vector<int32_t> targets;    // (N)
    std::vector<int32_t> positions;  // (N) position within its sequence
    std::vector<float> loss_weight;  // (N) weight of row n's loss in the objective (0 = masked)
    std::vector<int32_t> seq_start;  // (S)
    std::vector<int32_t> seq_len;    // (S)

    int n_tokens() const { return static_cast<int>(tokens.size()); }
    int n_seqs() const { return static_cast<int>(seq_len.size()); }
    // Appends one sequence. `weights` has one entry per row (same length as `inputs`).
    void add_sequence(const std::vector<int32_t>& inputs, const std::vector<int32_t>& next,
                      const std::vector<float>& weights);
    void clear();
};

// The machine's physical memory in bytes (sysconf): what memory estimates are checked against.
double physical_memory_bytes();

// LoRA adapters (Hu et al. 2021, as PEFT computes them): a targeted linear layer computes
// y = W x + b + (alpha / rank) * B (A x), A (rank, in) and B (out, rank) trainable, the base
// frozen. Targets name the projections: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj.
struct LoraConfig {
    int rank = 16;
    double alpha = 32.0;
    std::vector<std::string> targets{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                     "gate_proj", "up_proj", "down_proj"};
};

// The precision of the matmuls. float32: exact fp32, what the PyTorch fixtures check.
// bfloat16: every matrix (embeddings, projections, lm_head) is read as its bf16 rounding and the
// matmuls' inputs are rounded to bf16, products summed in fp32 (kernels/bf16_linear.h); norms,
// biases, RoPE, attention, softmax and the loss stay fp32, and so do the weights training
// updates (params(): the master copy) and every gradient — mixed precision as GPU stacks run it.
// q8_0: every matrix is read as its GGUF Q8_0 quantization (blocks of 32 inputs sharing an fp16
// scale, ggml's rounding; every matrix's input size a multiple of 32) and the matmuls are the
// fp32 ones over those values, exactly (kernels/q8_0_linear.h). A q8_0 model is a frozen base:
// it generates and LoRA adapters train beside it, but its own weights do not train.
enum class MatmulDtype { float32, bfloat16, q8_0 };
// "float32", "bfloat16" or "q8_0"; anything else is an Error naming `key`.
MatmulDtype parse_matmul_dtype(const std::string& value, const std::string& key);
const char* to_string(MatmulDtype dtype);

class Model {
  public:
    // Allocates parameters and gradients (zeroed). Call init_random() or load weights. Throws
    // Error naming the dominant size field when those alone would exceed physical memory.
    explicit Model(const ModelConfig& config);

    // Memory estimates, computed without allocating (in doubles: no overflow). The number of
    // parameters a model of `c` has (num_params() of Model(c)).
    static double param_count(const ModelConfig& c);
    // Floats of activations and their gradients for one forward/backward over `n_seqs`
    // sequences of at most `seq_len` tokens each.
    static double activation_floats(const ModelConfig& c, double n_seqs, double seq_len);
    // "FIELD VALUE x N parameters ..." for the term of param_count(c) that dominates.
    static std::string param_count_cause(const ModelConfig& c);

    const ModelConfig& config() const { return config_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    // The tensor with this HF name, or nullptr.
    const TensorInfo* find(const std::string& name) const;
    size_t num_params() const { return params_.size(); }
    // Non-const access may write the weights: the matrices' bf16 or Q8_0 copy is then re-derived
    // before the next forward pass, so no write path can leave it stale.
    float* params() {
        copy_stale_ = true;
        return params_.data();
    }
    const float* params() const { return params_.data(); }
    // The gradient buffer, allocated (zeroed) on first use: a model that only generates
    // (serving, sampling, a frozen reference) never holds a second copy of its weights' size.
    float* grads() {
        allocate_grads();
        return grads_.data();
    }
    const float* grads() const { return grads_.empty() ? nullptr : grads_.data(); }  // none yet
    float* param(const std::string& name);
    float* grad(const std::string& name);

    // The matmul precision (float32 until set). The weights stay fp32 either way; bfloat16 and
    // q8_0 compute from a copy of the matrices in that format. q8_0 is an Error naming the first
    // matrix whose input size is not a multiple of 32.
    void set_matmul_dtype(MatmulDtype dtype);
    MatmulDtype matmul_dtype() const { return matmul_dtype_; }
    // For a bfloat16 or q8_0 model that only runs (generate, serve) or is a frozen LoRA base:
    // gives the fp32 matrices' memory back, keeping their copy (a half or about a quarter of the
    // bytes) and the fp32 norms and biases. Afterwards the model cannot train (but its LoRA
    // adapters can: the base is frozen), be saved or change dtype, and writing its weights is
    // refused at the next forward pass: each is an Error, never a silent use of the released
    // values.
    void release_fp32_matrices();
    bool fp32_released() const { return fp32_released_; }
    // The same before any weights are written (a load), for `dtype` bfloat16 or q8_0: from here
    // on every matrix written through write_tensor() is kept in that format only, so loading
    // never holds it in fp32 — the resident peak is the copy plus one tensor. Only on a fresh
    // model.
    void hold_matrices_in(MatmulDtype dtype);
    // Writes one parameter tensor: fill(dst) fills its numel floats. The way loaders write
    // weights (a matrix held in bf16 or Q8_0 alone goes straight to its copy).
    void write_tensor(const TensorInfo& t, const std::function<void(float*)>& fill);

    // LoRA: adapters on the configured projections of every layer, A ~ U(-1/sqrt(in),
    // 1/sqrt(in)) from `seed` (PEFT's kaiming-uniform with a = sqrt(5)), B = 0, so the model
    // computes exactly what it did. From then on the base is frozen: backward() computes the
    // adapters' gradients only (no gradient buffer of the base's size is ever allocated) and
    // what trains are lora_params(). Throws Error for a rank < 1, an unknown target, or a
    // second call.
    void enable_lora(const LoraConfig& config, uint64_t seed);
    bool has_lora() const { return lora_.rank > 0; }
    const LoraConfig& lora_config() const { return lora_; }
    // The adapters' tensors (PEFT names, base_model.model.<module>.lora_A.weight / lora_B.weight,
    // shapes (rank, in) and (out, rank)), with offsets into lora_params() / lora_grads().
    const std::vector<TensorInfo>& lora_tensors() const { return lora_tensors_; }
    size_t lora_num_params() const { return lora_params_.size(); }
    float* lora_params() { return lora_params_.data(); }
    const float* lora_params() const { return lora_params_.data(); }
    float* lora_grads() { return lora_grads_.data(); }
    const float* lora_grads() const { return lora_grads_.data(); }
    // W += (alpha / rank) * B A for every adapter, then the adapters are gone: the model is a
    // plain one again (trainable, savable as an HF folder). Refused (Error) on a model whose
    // fp32 matrices were released: the merge needs them.
    void merge_lora();
    // Removes the adapters unmerged: the base model as it was.
    void drop_lora();

    // What training updates: the adapters with LoRA, else every parameter. The optimizer, the
    // gradient norm and the optimizer state go through this one view.
    struct Trainable {
        float* params;
        float* grads;
        size_t size;
        const std::vector<TensorInfo>& tensors;
    };
    Trainable trainable() {
        if (has_lora()) {
            return {lora_params_.data(), lora_grads_.data(), lora_params_.size(), lora_tensors_};
        }
        return {params(), grads(), params_.size(), tensors_};
    }

    // HF-style init: linear weights and embeddings N(0, std), biases 0, norm weights 1.
    void init_random(uint64_t seed, float std = 0.02f);
    void zero_grads();

    // Runs the forward pass and returns sum_n loss_weight[n] * CE(logits[n], targets[n]).
    // Keeps the activations for backward(). Rows of logits() hold the logits afterwards.
    double forward(const PackedBatch& batch);
    // Accumulates d(objective)/d(params) into grads() for the last forward() batch.
    // Overwrites logits() with their gradient.
    void backward();

    // Cached inference (the generation engine's step): N new tokens at `positions` of
    // sequences whose earlier keys and values the caller keeps. In every layer `attend(l, q,
    // k, v, att)` gets the rows' queries and keys (RoPE applied) and values, (N, q_dim) and
    // (N, kv_dim) each; it must store k and v and write the rows' attention output into att
    // (N, q_dim). The same layer sequence as forward(). Writes the logits of the M rows listed
    // in `logit_rows` (in that order) into `logits` (M, vocab_size); the LM head runs on those
    // rows only. Uses its own buffers: forward()'s activations are left as they were.
    using CachedAttention =
        std::function<void(int layer, const float* q, const float* k, const float* v, float* att)>;
    void forward_cached(const int32_t* tokens, const int32_t* positions, int N,
                        const CachedAttention& attend, const int32_t* logit_rows, int M,
                        float* logits);

    const float* logits() const { return acts_.data() + act_.logits; }
    const float* token_losses() const { return acts_.data() + act_.losses; }
    // Useful FLOPs of one forward+backward over this batch: 6 x multiply-adds of the matmuls
    // and of causal attention (the lower triangle only), as MFU is usually counted.
    static double train_flops(const ModelConfig& c, const PackedBatch& batch);

    // Pointers to one layer's tensors inside a flat buffer (parameters or gradients); absent
    // biases are nullptr. Shapes as HF stores them, a linear weight (out, in); H hidden,
    // Q = q_dim, KV = kv_dim, I intermediate.
    struct LayerParams {
        float* ln1_w;            // (H) input_layernorm
        float *q_w, *q_b;        // (Q, H), (Q)
        float *k_w, *k_b;        // (KV, H), (KV)
        float *v_w, *v_b;        // (KV, H), (KV)
        float *o_w, *o_b;        // (H, Q), (H)
        float* ln2_w;            // (H) post_attention_layernorm
        float *gate_w, *gate_b;  // (I, H), (I)
        float *up_w, *up_b;      // (I, H), (I)
        float *down_w, *down_b;  // (H, I), (H)
    };
    // Layer l's parameters (for inference paths such as the engine's cached decoder).
    LayerParams layer(int l) const { return layer_params(const_cast<float*>(params_.data()), l); }
    const float* rope_cos() const { return rope_cos_.data(); }  // (max_pos, head_dim/2)
    const float* rope_sin() const { return rope_sin_.data(); }

    // Offsets of one layer's tensors in the flat buffers, in LayerParams' order.
    static constexpr int kLayerTensorCount = 16;
    using LayerOffsets = std::array<size_t, kLayerTensorCount>;

  private:
    static constexpr size_t kAbsent = SIZE_MAX;
    // Offsets (in floats) of each activation tensor inside acts_, for the current capacity.
    // N rows, H hidden, Q = q_dim, KV = kv_dim, I intermediate, V vocab, L layers, P the
    // attention probabilities of one layer (attention_probs_size).
    struct ActivationLayout {
        // One block per layer, layer l at l * layer_stride: (L, ...) of
        size_t resid;          // (N, H) the layer's input
        size_t ln1, rstd1;     // (N, H), (N)
        size_t q, k, v;        // (N, Q), (N, KV), (N, KV) after RoPE
        size_t probs;          // (P)
        size_t att;            // (N, Q)
        size_t mid;            // (N, H) resid + o_proj(att)
        size_t ln2, rstd2;     // (N, H), (N)
        size_t gate, up, act;  // (N, I) each
        size_t layer_stride;
        size_t lnf, rstdf;   // (N, H), (N)
        size_t logits;       // (N, V); their gradient after backward()
        size_t lse, losses;  // (N) each
        size_t final_resid;  // (N, H) the last layer's output
        // One layer of activation gradients, reused by every layer in backward():
        size_t d_resid, d_tmp;       // (N, H)
        size_t d_q, d_k, d_v;        // (N, Q), (N, KV), (N, KV)
        size_t d_att;                // (N, Q)
        size_t d_probs;              // (P)
        size_t d_gate, d_up, d_act;  // (N, I)
        size_t total;
    };
    // One layer's activations for N rows, wherever they live (forward()'s per-layer blocks or
    // forward_cached()'s reused buffers).
    struct LayerActivations {
        float* resid;            // (N, H) input
        float *ln1, *rstd1;      // (N, H), (N)
        float *q, *k, *v;        // (N, Q), (N, KV), (N, KV)
        float* att;              // (N, Q) written by the attention step
        float* mid;              // (N, H)
        float *ln2, *rstd2;      // (N, H), (N)
        float *gate, *up, *act;  // (N, I)
        float* resid_out;        // (N, H) output; may be resid itself
    };
    // The transformer layer l over N rows at `positions`: the one definition of the layer
    // sequence. `attend` turns a.q, a.k, a.v into a.att.
    // lora_h: (kLoraSlots, N, rank) the adapters' A x of this layer (kept for backward), or
    // nullptr without LoRA.
    void forward_layer(int l, const LayerActivations& a, const int32_t* positions, int N,
                       const std::function<void(const LayerActivations&)>& attend,
                       float* lora_h = nullptr) const;
    // logits (M, V) = lm_head(rmsnorm(x)) for M rows of x (N, H); ln, rstd: scratch.
    void forward_head(float* logits, float* ln, float* rstd, const float* x, int M) const;

    void build_layout();
    LayerParams layer_params(float* base, int l) const;
    void ensure_capacity(int n_tokens, int64_t probs_per_layer);

    ModelConfig config_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::vector<LayerOffsets> layer_offsets_;
    // Zeroed pages from the kernel (mmap), not written: fresh pages that become resident as they
    // are written, so matrices held only in bf16 never cost their fp32 size. Page-aligned, so
    // every tensor and row whose offset is a multiple of 64 bytes is too: a 64-byte vector load
    // then reads one cache line, not two (calloc's 16-byte offset cost the weight streams a
    // fifth of their rate).
    template <class T>
    struct LazyZeroAllocator {
        using value_type = T;
        LazyZeroAllocator() = default;
        template <class U>
        LazyZeroAllocator(const LazyZeroAllocator<U>&) {}
        T* allocate(size_t n) { return static_cast<T*>(allocate_zero_pages(n * sizeof(T))); }
        void deallocate(T* p, size_t n) { free_zero_pages(p, n * sizeof(T)); }
        template <class U>
        void construct(U*) {}  // the pages' zeros stand
        template <class U, class... A>
        void construct(U* p, A&&... a) {
            ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
        }
        bool operator==(const LazyZeroAllocator&) const { return true; }
    };
    std::vector<float, LazyZeroAllocator<float>> params_;  // all parameters, one allocation
    std::vector<float> grads_;  // same layout as params_; empty until first needed
    void allocate_grads() {
        if (grads_.size() != params_.size()) grads_.assign(params_.size(), 0.0f);
    }
    // LoRA: slot s of layer l (q, k, v, o, gate, up, down) has A at lora_slot_[l][s].a and B at
    // .b in lora_params_, or kAbsent.
    static constexpr int kLoraSlots = 7;
    struct LoraSlot {
        size_t a = kAbsent, b = kAbsent;
        int in = 0, out = 0;
    };
    LoraConfig lora_{0, 0.0, {}};
    std::vector<TensorInfo> lora_tensors_;
    std::vector<float> lora_params_, lora_grads_;
    std::vector<std::array<LoraSlot, kLoraSlots>> lora_slot_;
    std::vector<float> lora_h_;                            // (L, kLoraSlots, N, rank) for backward
    mutable std::vector<float> lora_tmp_, lora_cached_h_;  // scratch
    std::vector<float> frozen_norm_grad_;                  // where frozen norms' gradients go
    // out (N, OUT) += scale * B (A x) for slot s of layer l, A x kept in h (N, rank).
    void lora_forward(int l, int s, float* out, const float* x, int N, float* h) const;
    // The adapters' backward for slot s of layer l: dA, dB +=, dx += (nullptr to skip).
    void lora_backward(int l, int s, float* dx, const float* dout, const float* x, const float* h,
                       int N);
    MatmulDtype matmul_dtype_ = MatmulDtype::float32;
    std::vector<uint16_t, LazyZeroAllocator<uint16_t>>
        bf16_;  // bfloat16: params_ rounded, same layout; refreshed when stale
    std::vector<uint8_t, LazyZeroAllocator<uint8_t>>
        q8_;                                    // q8_0: the matrices' Q8_0 bytes, one after another
    std::unordered_map<size_t, size_t> q8_at_;  // a matrix's offset in params_ -> its bytes in q8_
    bool copy_stale_ = true;  // the copy the matmul dtype reads may not match params_
    bool fp32_released_ = false;
    // Sizes (bfloat16) or lays out (q8_0) the copy of the matrices for matmul_dtype_.
    void allocate_copy();
    // Writes tensor t's part of the copy from its fp32 values at src (norms and biases have none
    // in q8_0: they stay fp32).
    void write_copy(const TensorInfo& t, const float* src);
    void refresh_copy();
    // The bf16 copy of the parameter at `p` (a pointer into params_).
    const uint16_t* bf16_of(const float* p) const { return bf16_.data() + (p - params_.data()); }
    // The Q8_0 bytes of the matrix at `p`.
    const uint8_t* q8_of(const float* p) const {
        return q8_.data() + q8_at_.at((size_t)(p - params_.data()));
    }
    // linear_forward / linear_backward in the model's matmul precision.
    void linear(float* out, const float* inp, const float* w, const float* b, int N, int C,
                int OC) const;
    void linear_back(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                     const float* w, int N, int C, int OC) const;
    void embed(float* out, const int32_t* tokens, int N) const;
    std::vector<float> acts_;         // all activations and activation gradients, one allocation
    std::vector<float> cached_acts_;  // forward_cached()'s buffers, grown as needed
    std::vector<float> rope_cos_, rope_sin_;  // (max_position_embeddings, head_dim/2)
    ActivationLayout act_{};
    int cap_tokens_ = 0;
    int64_t cap_probs_ = 0;
    // The batch of the last forward(), its probs offsets, and the active sizes.
    const PackedBatch* batch_ = nullptr;
    std::vector<int64_t> probs_offset_;
    int64_t probs_per_layer_ = 0;
};

}  // namespace crucible
