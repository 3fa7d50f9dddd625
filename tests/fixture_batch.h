// What the PyTorch fixtures (scripts/gen_model_fixtures.py, gen_lora_fixture.py) share: the
// packed batch they were computed on, their fp32 tensors, and the error measure the tests use.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/safetensors.h"

namespace crucible::testutil {

inline std::vector<float> fixture_f32(const SafetensorsFile& file, const std::string& name) {
    std::vector<float> v(file.at(name).numel());
    file.at(name).to_f32(v.data());
    return v;
}

// batch.tokens/targets/positions/seq_lens/mask as a PackedBatch whose loss weights are the mask
// over its sum (the fixtures' loss is the masked token mean).
inline PackedBatch fixture_batch(const SafetensorsFile& file) {
    auto ints = [&](const char* t) {
        std::vector<int32_t> v(file.at(t).numel());
        file.at(t).to_i32(v.data());
        return v;
    };
    PackedBatch batch;
    batch.tokens = ints("batch.tokens");
    batch.targets = ints("batch.targets");
    batch.positions = ints("batch.positions");
    batch.seq_len = ints("batch.seq_lens");
    const std::vector<float> mask = fixture_f32(file, "batch.mask");
    float total = 0;
    for (float m : mask) total += m;
    for (float m : mask) batch.loss_weight.push_back(m / total);
    int32_t start = 0;
    for (int32_t len : batch.seq_len) {
        batch.seq_start.push_back(start);
        start += len;
    }
    return batch;
}

// max |a - b| / (max |b| over the tensor): a relative error that tiny entries cannot inflate.
inline double rel_error(const float* a, const std::vector<float>& b) {
    double diff = 0, scale = 1e-12;
    for (size_t i = 0; i < b.size(); i++) {
        diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
        scale = std::max(scale, (double)std::fabs(b[i]));
    }
    return diff / scale;
}

}  // namespace crucible::testutil
