// What the benchmarks share: the model shapes (bench/torch_train.py builds them under the same
// names), the clock and the median of repeated timings.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include "model/config.h"

namespace crucible::cli {

struct BenchShape {
    const char* name;
    ModelConfig config;
    int batch;  // sequences per step
    int seq;    // tokens per sequence
};

inline ModelConfig qwen2_shape(int hidden, int layers, int heads, int kv_heads, int ffn,
                               int vocab) {
    ModelConfig c;
    c.model_type = "qwen2";
    c.hidden_size = hidden;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv_heads;
    c.head_dim = hidden / heads;
    c.intermediate_size = ffn;
    c.vocab_size = vocab;
    c.max_position_embeddings = 4096;
    c.rope_theta = 1e6f;
    c.tie_word_embeddings = false;
    return c;
}

// The shapes bench/torch_train.py builds under the same names.
inline std::vector<BenchShape> bench_shapes() {
    return {{"small", qwen2_shape(256, 4, 8, 2, 704, 512), 8, 256},
            {"medium", qwen2_shape(896, 4, 14, 2, 4864, 32768), 2, 512}};
}

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The median of timings (the middle value, or the mean of the two middle ones).
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace crucible::cli
