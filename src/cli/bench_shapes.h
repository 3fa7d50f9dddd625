// What the benchmarks share: the model shapes (bench/torch_train.py builds them under the same
// names), the clock and the median of repeated timings.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "model/config.h"

namespace crucible::cli {

// The process's resident memory now and at its peak (Linux: /proc/self/status VmRSS, VmHWM),
// in MiB; 0 where unknown.
struct MemoryUse {
    double rss_mib = 0;
    double peak_mib = 0;
};
inline MemoryUse memory_use() {
    MemoryUse m;
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        const auto kib = [&line] { return std::strtod(line.c_str() + 6, nullptr) / 1024.0; };
        if (line.rfind("VmRSS:", 0) == 0) m.rss_mib = kib();
        if (line.rfind("VmHWM:", 0) == 0) m.peak_mib = kib();
    }
    return m;
}

// Starts the peak (VmHWM) again from the current resident size (Linux >= 4.0: writing 5 to
// /proc/self/clear_refs), so that a peak measures one phase. False where it cannot.
inline bool reset_peak_memory() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    out.flush();
    return static_cast<bool>(out);
}

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

// Qwen2.5-0.5B's full shape (24 layers, 151,936 ids, tied embeddings): 494M parameters,
// 1.98 GB in F32. Not in the benchmarks' default lists (minutes per run on 2 cores); `bench
// generate --save-model DIR --configs qwen2.5-0.5b` writes it as a folder for `--model`.
inline ModelConfig qwen25_05b_shape() {
    ModelConfig c = qwen2_shape(896, 24, 14, 2, 4864, 151936);
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 32768;
    return c;
}

// The shapes bench/torch_train.py builds under the same names.
inline std::vector<BenchShape> bench_shapes() {
    return {{"small", qwen2_shape(256, 4, 8, 2, 704, 512), 8, 256},
            {"medium", qwen2_shape(896, 4, 14, 2, 4864, 32768), 2, 512},
            {"qwen2.5-0.5b", qwen25_05b_shape(), 2, 512}};
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
