// A paged KV cache: fixed-size blocks of token slots in one pool, a block table per sequence,
// reference counts so that sequences can share a prompt's blocks (copy-on-write on append).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/paged_attention.h"
#include "model/config.h"

namespace crucible {

class KvCache {
  public:
    static constexpr int kBlockSize = 16;  // tokens per block

    // Reserves `num_blocks` blocks for every layer of `config`. The pool is reserved, not
    // written: the system backs a block's pages with memory when a sequence first writes
    // there (blocks are handed out lowest first, freed ones reused first), so resident
    // memory follows the blocks in use, not the budget.
    KvCache(const ModelConfig& config, int num_blocks);

    int num_blocks() const { return num_blocks_; }
    int free_blocks() const { return static_cast<int>(free_.size()); }

    // A sequence's view: its blocks in order and how many token slots are filled.
    struct Table {
        std::vector<int32_t> blocks;
        int32_t length = 0;
    };

    // Makes room for `n` more tokens in `t` (allocating blocks, and copying a shared last
    // block before it is written). Returns false, changing nothing, if the pool is too small.
    bool reserve(Table& t, int n);
    // A second table sharing all of `t`'s blocks (reference counts incremented).
    Table fork(const Table& t);
    // Releases the table's blocks (freed when no other table holds them).
    void release(Table& t);

    // Slot pointers: K or V of token `pos` of table `t` in layer `layer`, kv_dim floats.
    float* k_at(const Table& t, int layer, int pos) { return slot(k_.get(), t, layer, pos); }
    float* v_at(const Table& t, int layer, int pos) { return slot(v_.get(), t, layer, pos); }
    const float* k_at(const Table& t, int layer, int pos) const {
        return slot(k_.get(), t, layer, pos);
    }
    const float* v_at(const Table& t, int layer, int pos) const {
        return slot(v_.get(), t, layer, pos);
    }
    // Layer `layer` of the pool as the paged attention kernel reads it (block ids index it).
    kernels::PagedKvView layer_view(int layer) const {
        const int64_t token = kv_dim_, block = (int64_t)layers_ * kBlockSize * kv_dim_;
        const int64_t at = (int64_t)layer * kBlockSize * kv_dim_;
        return {k_.get() + at, v_.get() + at, kBlockSize, block, token};
    }
    int refcount(int32_t block) const { return refs_[block]; }

  private:
    float* slot(float* pool, const Table& t, int layer, int pos) const {
        const size_t block = static_cast<size_t>(t.blocks[pos / kBlockSize]);
        return pool + ((block * layers_ + layer) * kBlockSize + pos % kBlockSize) * kv_dim_;
    }
    int32_t allocate();

    int layers_, kv_dim_, num_blocks_;
    // (num_blocks, layers, kBlockSize, kv_dim); default-initialised, so not written (above).
    std::unique_ptr<float[]> k_, v_;
    std::vector<int32_t> refs_;
    std::vector<int32_t> free_;
};

}  // namespace crucible
