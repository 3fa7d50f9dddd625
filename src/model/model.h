// The Qwen2/Llama decoder: parameters, gradients and activations each in one allocation, and
// a training forward/backward over packed batches (sequences back to back, no padding).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

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
    float* params() { return params_.data(); }
    const float* params() const { return params_.data(); }
    float* grads() { return grads_.data(); }
    const float* grads() const { return grads_.data(); }
    float* param(const std::string& name);
    float* grad(const std::string& name);

    // HF-style init: linear weights and embeddings N(0, std), biases 0, norm weights 1.
    void init_random(uint64_t seed, float std = 0.02f);
    void zero_grads();

    // Runs the forward pass and returns sum_n loss_weight[n] * CE(logits[n], targets[n]).
    // Keeps the activations for backward(). Rows of logits() hold the logits afterwards.
    double forward(const PackedBatch& batch);
    // Accumulates d(objective)/d(params) into grads() for the last forward() batch.
    // Overwrites logits() with their gradient.
    void backward();

    const float* logits() const { return acts_.data() + act_.logits; }
    const float* token_losses() const { return acts_.data() + act_.losses; }
    // Useful FLOPs of one forward+backward over this batch: 6 x multiply-adds of the matmuls
    // and of causal attention (the lower triangle only), as MFU is usually counted.
    static double train_flops(const ModelConfig& c, const PackedBatch& batch);

    // Pointers to one layer's tensors inside a flat buffer (parameters or gradients); absent
    // biases are nullptr.
    struct LayerParams {
        float *ln1_w, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
        float *ln2_w, *gate_w, *gate_b, *up_w, *up_b, *down_w, *down_b;
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
    struct ActivationLayout {
        size_t resid, ln1, rstd1, q, k, v, probs, att, mid, ln2, rstd2, gate, up, act;  // per layer
        size_t layer_stride;
        size_t lnf, rstdf, logits, lse, losses, final_resid;
        size_t d_resid, d_tmp, d_q, d_k, d_v, d_att, d_probs, d_gate, d_up, d_act;
        size_t total;
    };

    void build_layout();
    LayerParams layer_params(float* base, int l) const;
    void ensure_capacity(int n_tokens, int64_t probs_per_layer);

    ModelConfig config_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::vector<LayerOffsets> layer_offsets_;
    std::vector<float> params_;  // all parameters, one allocation
    std::vector<float> grads_;   // same layout as params_
    std::vector<float> acts_;    // all activations and activation gradients, one allocation
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
