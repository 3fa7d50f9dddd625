#include "model/config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace crucible {

using nlohmann::json;

namespace {

template <typename T>
T get_field(const json& j, const char* key, const std::string& where, bool required, T fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) throw Error(where + ": missing required field '" + key + "'");
        return fallback;
    }
    try {
        if constexpr (std::is_same_v<T, int>) {
            if (!it->is_number_integer()) throw Error("");
            const auto v = it->get<int64_t>();
            if (v < INT32_MIN || v > INT32_MAX) throw Error("");
            return static_cast<int>(v);
        } else if constexpr (std::is_same_v<T, float>) {
            if (!it->is_number()) throw Error("");
            return it->get<float>();
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!it->is_boolean()) throw Error("");
            return it->get<bool>();
        } else {
            if (!it->is_string()) throw Error("");
            return it->get<std::string>();
        }
    } catch (const Error&) {
        const char* kind = std::is_same_v<T, int>     ? "an integer"
                           : std::is_same_v<T, float> ? "a number"
                           : std::is_same_v<T, bool>  ? "true or false"
                                                      : "a string";
        throw Error(where + ": field '" + key + "' must be " + kind + ", got " + it->dump());
    }
}

}  // namespace

void ModelConfig::validate(const std::string& where) const {
    auto positive = [&](int v, const char* name) {
        if (v <= 0)
            throw Error(where + ": field '" + name + "' must be > 0, got " + std::to_string(v));
    };
    positive(vocab_size, "vocab_size");
    positive(hidden_size, "hidden_size");
    positive(intermediate_size, "intermediate_size");
    positive(num_hidden_layers, "num_hidden_layers");
    positive(num_attention_heads, "num_attention_heads");
    positive(num_key_value_heads, "num_key_value_heads");
    positive(head_dim, "head_dim");
    positive(max_position_embeddings, "max_position_embeddings");
    if (num_attention_heads % num_key_value_heads != 0) {
        throw Error(where + ": num_attention_heads (" + std::to_string(num_attention_heads) +
                    ") must be a multiple of num_key_value_heads (" +
                    std::to_string(num_key_value_heads) + ")");
    }
    if (head_dim % 2 != 0) throw Error(where + ": head_dim must be even for RoPE");
    if (!(rms_norm_eps > 0.0f)) throw Error(where + ": field 'rms_norm_eps' must be > 0");
    if (!(rope_theta > 0.0f)) throw Error(where + ": field 'rope_theta' must be > 0");
}

ModelConfig parse_model_config(const json& j, const std::string& where) {
    if (!j.is_object()) throw Error(where + ": expected a JSON object");
    ModelConfig c;
    c.model_type = get_field<std::string>(j, "model_type", where, false, "qwen2");
    if (c.model_type != "qwen2" && c.model_type != "llama") {
        throw Error(where + ": field 'model_type' must be \"qwen2\" or \"llama\", got \"" +
                    c.model_type + "\"");
    }
    c.vocab_size = get_field<int>(j, "vocab_size", where, true, 0);
    c.hidden_size = get_field<int>(j, "hidden_size", where, true, 0);
    c.intermediate_size = get_field<int>(j, "intermediate_size", where, true, 0);
    c.num_hidden_layers = get_field<int>(j, "num_hidden_layers", where, true, 0);
    c.num_attention_heads = get_field<int>(j, "num_attention_heads", where, true, 0);
    c.num_key_value_heads =
        get_field<int>(j, "num_key_value_heads", where, false, c.num_attention_heads);
    const int default_head_dim =
        c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
    c.head_dim = get_field<int>(j, "head_dim", where, false, default_head_dim);
    c.max_position_embeddings = get_field<int>(j, "max_position_embeddings", where, false, 32768);
    c.rms_norm_eps = get_field<float>(j, "rms_norm_eps", where, false, 1e-6f);
    c.rope_theta = get_field<float>(j, "rope_theta", where, false, 10000.0f);
    if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {
        c.rope_theta =
            get_field<float>(*rp, "rope_theta", where + ": rope_parameters", false, c.rope_theta);
    }
    c.tie_word_embeddings = get_field<bool>(j, "tie_word_embeddings", where, false, false);
    if (c.model_type == "llama") {
        const bool attention_bias = get_field<bool>(j, "attention_bias", where, false, false);
        c.qkv_bias = attention_bias;
        c.o_bias = attention_bias;
        c.mlp_bias = get_field<bool>(j, "mlp_bias", where, false, false);
    }
    c.bos_token_id = get_field<int>(j, "bos_token_id", where, false, -1);
    if (auto eos = j.find("eos_token_id"); eos != j.end() && eos->is_array() && !eos->empty()) {
        c.eos_token_id = (*eos)[0].is_number_integer() ? (*eos)[0].get<int>() : -1;
    } else {
        c.eos_token_id = get_field<int>(j, "eos_token_id", where, false, -1);
    }
    c.validate(where);
    return c;
}

json to_json(const ModelConfig& c) {
    json j;
    const bool llama = c.model_type == "llama";
    j["architectures"] = json::array({llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"});
    j["model_type"] = c.model_type;
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.hidden_size;
    j["intermediate_size"] = c.intermediate_size;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["num_attention_heads"] = c.num_attention_heads;
    j["num_key_value_heads"] = c.num_key_value_heads;
    j["head_dim"] = c.head_dim;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["rms_norm_eps"] = c.rms_norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    j["hidden_act"] = "silu";
    j["torch_dtype"] = "float32";
    if (llama) {
        j["attention_bias"] = c.qkv_bias;
        j["mlp_bias"] = c.mlp_bias;
    } else {
        j["use_sliding_window"] = false;
    }
    if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
    if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
    return j;
}

}  // namespace crucible
