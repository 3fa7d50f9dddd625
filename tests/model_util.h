// The tiny model the end-to-end tests serve and generate from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "model/checkpoint.h"
#include "model/model.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::testutil {

// The tests' tiny Qwen2 shape: 2 layers, 32 wide, MLP 48, 4 query and 2 key/value heads of 8,
// untied, other fields at their defaults.
inline ModelConfig tiny_model_config(int vocab, int context) {
    ModelConfig c;
    c.vocab_size = vocab;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = context;
    return c;
}

// The RL and training-limit tests' tiny shape: 2 layers, 32 wide, MLP 64, 2 query heads and
// 1 key/value head of 16, tied, the byte tokenizer's ids padded to 264, 64 positions.
inline ModelConfig tiny_gqa_config() {
    ModelConfig c;
    c.model_type = "qwen2";
    c.vocab_size = 264;
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 16;
    c.max_position_embeddings = 64;
    c.tie_word_embeddings = true;
    return c;
}

// Writes an HF model folder to `dir`: a 2-layer, 32-wide Qwen2-shaped model over the byte
// tokenizer's 264 ids (tied embeddings, 4 query and 2 key/value heads of 8), random weights
// (seed, scale 0.2), and the byte tokenizer's files (ChatML, eos 256 and 258). Returns the
// model as written. Its completions are noise: enough for plumbing, never for accuracy.
inline std::unique_ptr<Model> write_byte_model(const std::filesystem::path& dir, int context,
                                               uint64_t seed = 3) {
    ModelConfig c = tiny_model_config(264, context);
    c.tie_word_embeddings = true;
    auto model = std::make_unique<Model>(c);
    model->init_random(seed, 0.2f);
    std::filesystem::create_directories(dir);
    save_model(*model, dir);
    ByteTokenizer::save_hf_files(dir, context);
    return model;
}

}  // namespace crucible::testutil
