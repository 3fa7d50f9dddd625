// The generation engine's paged attention kernel against the training attention kernel
// (attention_forward over packed sequences, itself checked against a double-precision
// reference in kernels_test.cpp): the same keys and values, scattered into a block pool in a
// shuffled block order beside other layers' slots, must give the same outputs for every query
// row (prefill) and for the last row of each sequence (decode). Slots a row must not see hold
// NaN, so a read past its position or into another layer or sequence shows.
#include "kernels/paged_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

using namespace crucible::kernels;

namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec randn(size_t n, uint64_t seed) {
    crucible::Rng rng(seed);
    Vec v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
}

// Packed sequences and their keys and values copied into a pool of `layers` layers
// ((block, layer, slot, kv) as the engine's KvCache lays it out), this test's layer being
// `layer`, blocks handed out in a shuffled order. Every other float of the pool is NaN.
struct PagedCase {
    static constexpr int kLayers = 3, kLayer = 1, kBlock = 4;
    int nh, nkv, hd;
    std::vector<int32_t> seq_len, seq_start, positions, row_seq;
    Vec q, k, v, pool_k, pool_v;
    std::vector<std::vector<int32_t>> tables;  // per sequence

    PagedCase(int nh_, int nkv_, int hd_, std::vector<int32_t> lens)
        : nh(nh_), nkv(nkv_), hd(hd_), seq_len(std::move(lens)) {
        int N = 0, blocks = 0;
        for (size_t s = 0; s < seq_len.size(); s++) {
            seq_start.push_back(N);
            for (int t = 0; t < seq_len[s]; t++) {
                positions.push_back(t);
                row_seq.push_back(static_cast<int32_t>(s));
            }
            N += seq_len[s];
            blocks += (seq_len[s] + kBlock - 1) / kBlock;
        }
        const int KV = nkv * hd;
        q = randn((size_t)N * nh * hd, 11);
        k = randn((size_t)N * KV, 12);
        v = randn((size_t)N * KV, 13);
        blocks += 2;  // unused blocks as well
        std::vector<int32_t> order(blocks);
        std::iota(order.begin(), order.end(), 0);
        crucible::Rng rng(14);
        for (int i = blocks - 1; i > 0; i--) std::swap(order[i], order[rng.next_u64() % (i + 1)]);
        const size_t pool = (size_t)blocks * kLayers * kBlock * KV;
        pool_k.assign(pool, kNaN);
        pool_v.assign(pool, kNaN);
        int next = 0;
        for (size_t s = 0; s < seq_len.size(); s++) {
            std::vector<int32_t> table;
            for (int t = 0; t < seq_len[s]; t++) {
                if (t % kBlock == 0) table.push_back(order[next++]);
                const size_t row = seq_start[s] + t;
                const size_t at = ((size_t)table.back() * kLayers + kLayer) * kBlock * KV +
                                  (size_t)(t % kBlock) * KV;
                std::copy_n(k.begin() + row * KV, KV, pool_k.begin() + at);
                std::copy_n(v.begin() + row * KV, KV, pool_v.begin() + at);
            }
            tables.push_back(std::move(table));
        }
    }
    int n_rows() const { return static_cast<int>(positions.size()); }
    PagedKvView view() const {
        const int64_t KV = (int64_t)nkv * hd, at = (int64_t)kLayer * kBlock * KV;
        return {pool_k.data() + at, pool_v.data() + at, kBlock, kLayers * kBlock * KV, KV};
    }
    // attention_forward over the packed sequences: every row's output.
    Vec packed_attention() const {
        std::vector<int64_t> probs_offset;
        int64_t probs = 0;
        for (int32_t T : seq_len) {
            probs_offset.push_back(probs);
            probs += (int64_t)nh * T * T;
        }
        Vec out(q.size()), p(probs);
        const AttentionShape shape{nh,
                                   nkv,
                                   hd,
                                   static_cast<int>(seq_len.size()),
                                   seq_start.data(),
                                   seq_len.data(),
                                   probs_offset.data()};
        attention_forward(out.data(), p.data(), q.data(), k.data(), v.data(), shape);
        return out;
    }
    // The paged kernel over the given rows (indices into the packed rows).
    Vec paged_attention(const std::vector<int>& rows) const {
        const size_t width = (size_t)nh * hd;
        Vec qr(rows.size() * width), out(rows.size() * width, kNaN);
        std::vector<int32_t> pos;
        std::vector<const int32_t*> table;
        for (size_t i = 0; i < rows.size(); i++) {
            std::copy_n(q.begin() + rows[i] * width, width, qr.begin() + i * width);
            pos.push_back(positions[rows[i]]);
            table.push_back(tables[row_seq[rows[i]]].data());
        }
        const PagedQueryRows query{
            static_cast<int>(rows.size()), nh, nkv, hd, pos.data(), table.data()};
        paged_attention_forward(out.data(), qr.data(), view(), query);
        return out;
    }
};

// The paged outputs of `rows` equal attention_forward's rows: they differ only in summation
// order (a GEMM against in-order loops), so within 1e-5 relative to the row's scale.
void expect_rows_match(const PagedCase& c, const std::vector<int>& rows) {
    const Vec want = c.packed_attention();
    const Vec got = c.paged_attention(rows);
    const size_t width = (size_t)c.nh * c.hd;
    for (size_t i = 0; i < rows.size(); i++) {
        for (size_t d = 0; d < width; d++) {
            const float w = want[rows[i] * width + d], g = got[i * width + d];
            ASSERT_TRUE(std::isfinite(g)) << "row " << rows[i] << " element " << d;
            EXPECT_NEAR(g, w, 1e-5f * std::max(1.0f, std::fabs(w)))
                << "row " << rows[i] << " element " << d;
        }
    }
}

void check_prefill_and_decode(int nh, int nkv) {
    const PagedCase c(nh, nkv, 8, {1, 5, 13, 4});
    std::vector<int> all(c.n_rows());
    std::iota(all.begin(), all.end(), 0);
    expect_rows_match(c, all);
    std::vector<int> last;  // decode: the newest token of each sequence, out of order
    for (int s = static_cast<int>(c.seq_len.size()) - 1; s >= 0; s--)
        last.push_back(c.seq_start[s] + c.seq_len[s] - 1);
    expect_rows_match(c, last);
}

}  // namespace

TEST(KernelsPagedAttention, MatchesPackedAttentionGqa) {
    check_prefill_and_decode(4, 2);
}

TEST(KernelsPagedAttention, MatchesPackedAttentionMhaAndMqa) {
    check_prefill_and_decode(4, 4);
    check_prefill_and_decode(4, 1);
}

TEST(KernelsPagedAttention, EqualKeysAverageTheValuesSeen) {
    // Worked by hand: with every key equal the softmax is uniform over positions 0..pos, so
    // each head's output is the mean of the values it sees (the later slots are NaN).
    PagedCase c(2, 1, 4, {6});
    const PagedKvView view = c.view();
    for (int t = 0; t < 6; t++) {
        float* slot_k = const_cast<float*>(view.k) +
                        c.tables[0][t / PagedCase::kBlock] * view.block_stride +
                        (t % PagedCase::kBlock) * view.token_stride;
        float* slot_v = const_cast<float*>(view.v) + (slot_k - view.k);
        for (int d = 0; d < 4; d++) {
            slot_k[d] = 0.5f;
            slot_v[d] = static_cast<float>(t * 10 + d);
        }
    }
    const Vec out = c.paged_attention({3});
    for (int h = 0; h < 2; h++) {
        for (int d = 0; d < 4; d++) {
            const float mean = (0 + 10 + 20 + 30) / 4.0f + d;  // positions 0..3
            EXPECT_NEAR(out[h * 4 + d], mean, 1e-5f) << "head " << h << " dim " << d;
        }
    }
}
