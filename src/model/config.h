// The model configuration: the fields of an HF config.json for Qwen2 and Llama.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace crucible {

struct ModelConfig {
    std::string model_type = "qwen2";  // "qwen2" or "llama"
    int vocab_size = 0;
    int hidden_size = 0;
    int intermediate_size = 0;
    int num_hidden_layers = 0;
    int num_attention_heads = 0;
    int num_key_value_heads = 0;
    int head_dim = 0;  // hidden_size / num_attention_heads unless given
    int max_position_embeddings = 0;
    float rms_norm_eps = 1e-6f;
    float rope_theta = 10000.0f;
    bool tie_word_embeddings = false;
    // Qwen2: q/k/v carry a bias and o_proj does not. Llama: one flag for q/k/v/o.
    bool qkv_bias = true;
    bool o_bias = false;
    bool mlp_bias = false;
    int bos_token_id = -1;
    int eos_token_id = -1;

    int q_dim() const { return num_attention_heads * head_dim; }
    int kv_dim() const { return num_key_value_heads * head_dim; }

    // Checks ranges and divisibility; throws Error naming `where` and the field.
    void validate(const std::string& where) const;
};

// Parses an HF config.json object. `where` (usually the file path) prefixes every error.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where);
// The HF config.json for this configuration (Qwen2ForCausalLM or LlamaForCausalLM).
nlohmann::json to_json(const ModelConfig& c);

}  // namespace crucible
