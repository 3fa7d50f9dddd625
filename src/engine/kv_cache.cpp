#include "engine/kv_cache.h"

#include <algorithm>
#include <cstring>

namespace crucible {

KvCache::KvCache(const ModelConfig& config, int num_blocks)
    : layers_(config.num_hidden_layers), kv_dim_(config.kv_dim()), num_blocks_(num_blocks) {
    const size_t n = (size_t)num_blocks * layers_ * kBlockSize * kv_dim_;
    k_.reset(new float[n]);  // not value-initialised: see the header
    v_.reset(new float[n]);
    refs_.assign(num_blocks, 0);
    for (int b = num_blocks - 1; b >= 0; b--) free_.push_back(b);
}

int32_t KvCache::allocate() {
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[b] = 1;
    return b;
}

bool KvCache::reserve(Table& t, int n) {
    const int have = static_cast<int>(t.blocks.size()) * kBlockSize;
    const int need_blocks = (t.length + n - have + kBlockSize - 1) / kBlockSize;
    // A partly filled last block that another table shares must be copied before writing.
    const bool cow = t.length % kBlockSize != 0 && n > 0 && refs_[t.blocks.back()] > 1;
    if (std::max(need_blocks, 0) + (cow ? 1 : 0) > free_blocks()) return false;
    if (cow) {
        const int32_t old = t.blocks.back();
        const int32_t copy = allocate();
        const size_t block_floats = (size_t)layers_ * kBlockSize * kv_dim_;
        std::memcpy(k_.get() + copy * block_floats, k_.get() + old * block_floats,
                    block_floats * sizeof(float));
        std::memcpy(v_.get() + copy * block_floats, v_.get() + old * block_floats,
                    block_floats * sizeof(float));
        refs_[old]--;
        t.blocks.back() = copy;
    }
    for (int i = 0; i < need_blocks; i++) t.blocks.push_back(allocate());
    return true;
}

KvCache::Table KvCache::fork(const Table& t) {
    for (int32_t b : t.blocks) refs_[b]++;
    return t;
}

void KvCache::release(Table& t) {
    for (int32_t b : t.blocks) {
        if (--refs_[b] == 0) free_.push_back(b);
    }
    t.blocks.clear();
    t.length = 0;
}

}  // namespace crucible
