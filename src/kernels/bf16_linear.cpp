// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the
// _mm512_undefined_* operand of the lane extractions that horizontal sums use).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/bf16_linear.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/kernels.h"

namespace crucible::kernels {

// Two kernels, chosen by the number of input rows, as for fp32 (linear.cpp):
//  - up to 4 rows (decode of a few sequences) a stream over the weights: each weight row is read
//    once, 32 values at a time, into per-row accumulators summed across lanes at the end.
//  - from 5 rows, the broadcast kernel: the input is rounded and transposed into pairs
//    (xT[k/2][n] holds x[n][k], x[n][k+1]), so one vector holds a pair of input features of 16
//    (or 8) rows, and each pair of adjacent weights of a row, one 32-bit load, is broadcast and
//    multiplies all the rows at once (vdpbf16ps does two multiply-adds per lane). The weights are
//    read in place, row-major, never repacked; a lane is one output summed over k in order, so
//    its bits do not depend on how many rows came with it. The backward's two matmuls are the
//    same kernel over transposed operands.
namespace {

constexpr int kStreamMaxRows = 4;

inline uint32_t pair_at(const uint16_t* w, int kp) {
    uint32_t p;
    std::memcpy(&p, w + 2 * (size_t)kp, 4);
    return p;
}

// out[r][o] (+)= sum_k X[r][k] * W[o][k] (+ bias[o]), X given as xT pairs.
struct Gemm {
    float* out;
    size_t ldo;
    bool accumulate;
    const uint32_t* xT;  // (ceil(K/2), RP): the pair (X[r][2kp], X[r][2kp+1]), 0 past K and R
    int RP;
    const uint16_t* w;  // (O, ldw) row-major
    size_t ldw;
    const float* bias;
    int K;
};

struct Tile {
    int o0, rows;   // weight rows o0 .. o0 + rows - 1
    int r0, valid;  // input rows r0 .. r0 + valid - 1
};

template <int W>
inline void store_tile(const Gemm& g, const Tile& t, const float* acc) {
    for (int i = 0; i < t.rows; i++) {
        const int o = t.o0 + i;
        for (int n = 0; n < t.valid; n++) {
            float v = acc[i * W + n];
            float* dst = g.out + (size_t)(t.r0 + n) * g.ldo + o;
            if (g.accumulate) v = *dst + v;
            if (g.bias) v += g.bias[o];
            *dst = v;
        }
    }
}

// The weight pair of row `w` at pair index kp, the odd K's last one alone (its partner is 0).
inline uint32_t weight_pair(const uint16_t* w, int kp, int K) {
    return 2 * kp + 1 < K ? pair_at(w, kp) : w[2 * (size_t)kp];
}

// RW weight rows x V vectors of 16 input rows: 12 x 2 holds 24 accumulators in zmm registers.
template <int RW, int V>
__attribute__((target("avx512f,avx512bf16"))) void tile_dpbf16(const Gemm& g, const Tile& t) {
    const uint16_t* w[RW];
    for (int i = 0; i < RW; i++) w[i] = g.w + (size_t)(t.o0 + (i < t.rows ? i : 0)) * g.ldw;
    __m512 acc[RW][V];
#pragma GCC unroll 16
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
    const uint32_t* x = g.xT + t.r0;
    const int full = g.K / 2;
    // Every loop over i and v is unrolled, here and in the tail, so the accumulators stay in
    // registers (a loop the compiler does not unroll indexes them and spills all 24 to the
    // stack around every vdpbf16ps).
    for (int kp = 0; kp < full; kp++, x += g.RP) {
        __m512bh xv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) xv[v] = (__m512bh)_mm512_loadu_si512(x + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < RW; i++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)pair_at(w[i], kp));
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], b, xv[v]);
        }
    }
    if (g.K % 2) {  // the last feature alone: its pair's partner is 0 on both sides
        __m512bh xv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) xv[v] = (__m512bh)_mm512_loadu_si512(x + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < RW; i++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)w[i][2 * (size_t)full]);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], b, xv[v]);
        }
    }
    alignas(64) float buf[RW * V * 16];
#pragma GCC unroll 16
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) _mm512_store_ps(buf + (i * V + v) * 16, acc[i][v]);
    store_tile<V * 16>(g, t, buf);
}

// Widens the high (odd) or low (even) bf16 of each 32-bit lane to fp32.
inline __m256 odd_half(__m256i pairs) {
    return _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32((int)0xffff0000u)));
}
inline __m256 even_half(__m256i pairs) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
}

// The same chains with AVX2 FMAs: 6 weight rows x V vectors of 8 input rows.
template <int RW, int V>
void tile_fma(const Gemm& g, const Tile& t) {
    const uint16_t* w[RW];
    for (int i = 0; i < RW; i++) w[i] = g.w + (size_t)(t.o0 + (i < t.rows ? i : 0)) * g.ldw;
    __m256 acc[RW][V];
#pragma GCC unroll 16
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[i][v] = _mm256_setzero_ps();
    const uint32_t* x = g.xT + t.r0;
    const int KP = (g.K + 1) / 2;
    for (int kp = 0; kp < KP; kp++, x += g.RP) {
        __m256 xo[V], xe[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            const __m256i p = _mm256_loadu_si256((const __m256i*)(x + 8 * v));
            xo[v] = odd_half(p);
            xe[v] = even_half(p);
        }
#pragma GCC unroll 16
        for (int i = 0; i < RW; i++) {
            const uint32_t p = weight_pair(w[i], kp, g.K);
            const __m256 bo = _mm256_set1_ps(from_bf16((uint16_t)(p >> 16)));
            const __m256 be = _mm256_set1_ps(from_bf16((uint16_t)(p & 0xffff)));
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) {
                acc[i][v] = _mm256_fmadd_ps(bo, xo[v], acc[i][v]);
                acc[i][v] = _mm256_fmadd_ps(be, xe[v], acc[i][v]);
            }
        }
    }
    alignas(32) float buf[RW * V * 8];
#pragma GCC unroll 16
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) _mm256_store_ps(buf + (i * V + v) * 8, acc[i][v]);
    store_tile<V * 8>(g, t, buf);
}

// xT (ceil(K/2), RP) pairs of X[r][k] = src[r * sr + k * sk], rounded; zero past R and K.
void pack_pairs(std::vector<uint32_t>& xT, int RP, const float* src, size_t sr, size_t sk, int R,
                int K) {
    const int KP = (K + 1) / 2;
    xT.resize((size_t)KP * RP);
    constexpr int kBlock = 16;
    const int blocks = (RP + kBlock - 1) / kBlock;
    if (sk == 1) {
        // Rows in place (the forward's input): each row of a block rounded along its length,
        // where the loop vectorizes, then the block's pairs written out kp by kp. Column by
        // column instead, the rounding was a tenth of batch-32 decode.
#pragma omp parallel for schedule(static)
        for (int b = 0; b < blocks; b++) {
            const int r0 = b * kBlock, r1 = std::min(RP, r0 + kBlock);
            static thread_local std::vector<uint16_t> h;
            h.assign((size_t)kBlock * 2 * KP, 0);  // zeros: rows past R and the odd K's pair
            for (int r = r0; r < std::min(r1, R); r++) {
                const float* row = src + (size_t)r * sr;
                uint16_t* hr = h.data() + (size_t)(r - r0) * 2 * KP;
                for (int k = 0; k < K; k++) hr[k] = to_bf16(row[k]);
            }
            for (int kp = 0; kp < KP; kp++) {
                uint32_t* dst = xT.data() + (size_t)kp * RP;
                for (int r = r0; r < r1; r++) {
                    const uint16_t* pair = h.data() + (size_t)(r - r0) * 2 * KP + 2 * kp;
                    dst[r] = pair[0] | uint32_t(pair[1]) << 16;
                }
            }
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int r0 = b * kBlock, r1 = std::min(RP, r0 + kBlock);
        for (int kp = 0; kp < KP; kp++) {
            uint32_t* dst = xT.data() + (size_t)kp * RP;
            const int k = 2 * kp;
            for (int r = r0; r < r1; r++) {
                if (r >= R) {
                    dst[r] = 0;
                    continue;
                }
                const float* row = src + (size_t)r * sr;
                const uint32_t lo = to_bf16(row[k * sk]);
                const uint32_t hi = k + 1 < K ? to_bf16(row[(k + 1) * sk]) : 0;
                dst[r] = lo | hi << 16;
            }
        }
    }
}

// Runs the gemm over R input rows and O weight rows: input rows in blocks that stay in cache
// while every weight tile passes over them; threads split the weight tiles.
template <int RW, int LANES, void (*Wide)(const Gemm&, const Tile&),
          void (*Narrow)(const Gemm&, const Tile&)>
void run_gemm(const Gemm& g, int R, int O) {
    constexpr int kChunk = 2 * LANES;
    // Input rows per block: xT of a block (K/2 pairs x kRowBlock x 4 bytes) stays in L2 for
    // typical K while the weight tiles stream over it.
    const int row_block = std::max(kChunk, (262144 / std::max(1, 2 * g.K)) / kChunk * kChunk);
    const int tiles = (O + RW - 1) / RW;
    for (int rb = 0; rb < R; rb += row_block) {
        const int rb_end = std::min(R, rb + row_block);
#pragma omp parallel for schedule(static)
        for (int j = 0; j < tiles; j++) {
            Tile t{j * RW, std::min(RW, O - j * RW), 0, 0};
            for (t.r0 = rb; t.r0 < rb_end; t.r0 += kChunk) {
                t.valid = std::min(kChunk, rb_end - t.r0);
                (t.valid > LANES ? Wide : Narrow)(g, t);
            }
        }
    }
}

void gemm(const Gemm& g, int R, int O, Bf16Path path) {
    if (path == Bf16Path::dpbf16) {
        run_gemm<12, 16, tile_dpbf16<12, 2>, tile_dpbf16<12, 1>>(g, R, O);
    } else {
        run_gemm<6, 8, tile_fma<6, 2>, tile_fma<6, 1>>(g, R, O);
    }
}

// out (R, O) (+)= X (R, K) @ W (O, K)^T + bias, X from src with strides (sr, sk).
void matmul(float* out, size_t ldo, bool accumulate, const float* src, size_t sr, size_t sk, int R,
            int K, const uint16_t* w, size_t ldw, int O, const float* bias, Bf16Path path) {
    if (R <= 0 || O <= 0) return;
    const int lanes = path == Bf16Path::dpbf16 ? 32 : 16;
    const int RP = (R + lanes - 1) / lanes * lanes;
    static thread_local std::vector<uint32_t> xT;
    pack_pairs(xT, RP, src, sr, sk, R, K);
    gemm({out, ldo, accumulate, xT.data(), RP, w, ldw, bias, K}, R, O, path);
}

// ---- up to 4 rows: a stream over the weights ----------------------------------------------

// Weight rows j0..j1 one after another: one forward stream through memory, which this CPU's
// prefetchers follow better than several interleaved ones (on the 0.5B shape's matrices, 64-byte
// aligned, 85-92 GB/s on two cores against 55-68 for four rows interleaved: the fp32 stream's
// rate at half the bytes). Four accumulators per input row over 128 weights hide vdpbf16ps's
// latency; consecutive rows overlap in the out-of-order window. A software prefetch 4 KB ahead
// covers the step from one row (and one thread's chunk) to the next (a prefetch past the
// matrix's end is harmless: it never faults).
// The parallel loop is outside (stream_dpbf16): an OpenMP region's outlined body does not inherit
// a target attribute under every compiler (clang's does not).
template <int NR>
__attribute__((target("avx512f,avx512bf16"))) void stream_rows_dpbf16(float* out, const uint16_t* x,
                                                                      const uint16_t* w,
                                                                      const float* bias, int C,
                                                                      int OC, bool accumulate,
                                                                      int j0, int j1) {
    constexpr size_t kAhead = 2048;  // weights (4 KB)
    for (int j = j0; j < j1; j++) {
        const uint16_t* r = w + (size_t)j * C;
        __m512 acc[NR][4];
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) acc[n][k] = _mm512_setzero_ps();
        int c = 0;
        for (; c + 128 <= C; c += 128) {
            _mm_prefetch((const char*)(r + c + kAhead), _MM_HINT_T0);
            _mm_prefetch((const char*)(r + c + kAhead + 64), _MM_HINT_T0);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512bh wv = (__m512bh)_mm512_loadu_si512(r + c + 32 * k);
#pragma GCC unroll 4
                for (int n = 0; n < NR; n++) {
                    const __m512bh xv =
                        (__m512bh)_mm512_loadu_si512(x + (size_t)n * C + c + 32 * k);
                    acc[n][k] = _mm512_dpbf16_ps(acc[n][k], wv, xv);
                }
            }
        }
        for (; c + 32 <= C; c += 32) {
            const __m512bh wv = (__m512bh)_mm512_loadu_si512(r + c);
#pragma GCC unroll 4
            for (int n = 0; n < NR; n++) {
                const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + (size_t)n * C + c);
                acc[n][0] = _mm512_dpbf16_ps(acc[n][0], wv, xv);
            }
        }
#pragma GCC unroll 4
        for (int n = 0; n < NR; n++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[n][0], acc[n][1]),
                                                         _mm512_add_ps(acc[n][2], acc[n][3])));
            const uint16_t* xn = x + (size_t)n * C;
            for (int t = c; t < C; t++) s += from_bf16(r[t]) * from_bf16(xn[t]);
            float* o = out + (size_t)n * OC + j;
            float v = accumulate ? *o + s : s;
            if (bias) v += bias[j];
            *o = v;
        }
    }
}

// Each thread one contiguous range of rows (a static schedule's split, so one stream each).
template <int NR>
void stream_dpbf16(float* out, const uint16_t* x, const uint16_t* w, const float* bias, int C,
                   int OC, bool accumulate) {
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int per = (OC + T - 1) / T, j0 = std::min(OC, t * per), j1 = std::min(OC, j0 + per);
        if (j0 < j1) stream_rows_dpbf16<NR>(out, x, w, bias, C, OC, accumulate, j0, j1);
    }
}

template <int NR>
void stream_fma(float* out, const uint16_t* x, const uint16_t* w, const float* bias, int C, int OC,
                bool accumulate) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < OC; j++) {
        const uint16_t* r = w + (size_t)j * C;
        __m256 acc[NR][2];
        for (int n = 0; n < NR; n++) acc[n][0] = acc[n][1] = _mm256_setzero_ps();
        int c = 0;
        for (; c + 16 <= C; c += 16) {
            const __m256i wi = _mm256_loadu_si256((const __m256i*)(r + c));
            const __m256 w0 = _mm256_castsi256_ps(
                _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(wi)), 16));
            const __m256 w1 = _mm256_castsi256_ps(
                _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(wi, 1)), 16));
#pragma GCC unroll 4
            for (int n = 0; n < NR; n++) {
                const __m256i xi = _mm256_loadu_si256((const __m256i*)(x + (size_t)n * C + c));
                const __m256 x0 = _mm256_castsi256_ps(
                    _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(xi)), 16));
                const __m256 x1 = _mm256_castsi256_ps(
                    _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(xi, 1)), 16));
                acc[n][0] = _mm256_fmadd_ps(w0, x0, acc[n][0]);
                acc[n][1] = _mm256_fmadd_ps(w1, x1, acc[n][1]);
            }
        }
        for (int n = 0; n < NR; n++) {
            alignas(32) float lanes[8];
            _mm256_store_ps(lanes, _mm256_add_ps(acc[n][0], acc[n][1]));
            float s = 0.0f;
            for (float l : lanes) s += l;
            const uint16_t* xn = x + (size_t)n * C;
            for (int t = c; t < C; t++) s += from_bf16(r[t]) * from_bf16(xn[t]);
            float* o = out + (size_t)n * OC + j;
            float v = accumulate ? *o + s : s;
            if (bias) v += bias[j];
            *o = v;
        }
    }
}

template <int NR>
void stream(float* out, const uint16_t* x, const uint16_t* w, const float* bias, int C, int OC,
            bool accumulate, Bf16Path path) {
    if (path == Bf16Path::dpbf16) return stream_dpbf16<NR>(out, x, w, bias, C, OC, accumulate);
    stream_fma<NR>(out, x, w, bias, C, OC, accumulate);
}

// dst (cols, rows) = the transpose of the (rows, cols) matrix whose element (r, c) is at(r, c),
// in 32 x 32 blocks so that both sides move along cache lines.
template <class At>
void transpose(uint16_t* dst, int rows, int cols, const At& at) {
    constexpr int kB = 32;
    const int rb = (rows + kB - 1) / kB, cb = (cols + kB - 1) / kB;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < rb * cb; b++) {
        const int r0 = b / cb * kB, c0 = b % cb * kB;
        const int r1 = std::min(rows, r0 + kB), c1 = std::min(cols, c0 + kB);
        for (int c = c0; c < c1; c++)
            for (int r = r0; r < r1; r++) dst[(size_t)c * rows + r] = at(r, c);
    }
}

}  // namespace

void to_bf16(uint16_t* dst, const float* src, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = to_bf16(src[i]);
}

bool cpu_has_avx512_bf16() {
    static const bool has =
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    return has;
}

Bf16Path default_bf16_path() {
    return cpu_has_avx512_bf16() ? Bf16Path::dpbf16 : Bf16Path::fma;
}

void linear_forward_bf16(float* out, const float* inp, const uint16_t* weight, const float* bias,
                         int N, int C, int OC, bool accumulate, Bf16Path path) {
    if (N <= 0) return;
    if (N <= kStreamMaxRows) {
        static thread_local std::vector<uint16_t> x;
        x.resize((size_t)N * C);
        for (size_t i = 0; i < x.size(); i++) x[i] = to_bf16(inp[i]);
        switch (N) {
            case 1:
                return stream<1>(out, x.data(), weight, bias, C, OC, accumulate, path);
            case 2:
                return stream<2>(out, x.data(), weight, bias, C, OC, accumulate, path);
            case 3:
                return stream<3>(out, x.data(), weight, bias, C, OC, accumulate, path);
            default:
                return stream<4>(out, x.data(), weight, bias, C, OC, accumulate, path);
        }
    }
    matmul(out, OC, accumulate, inp, C, 1, N, C, weight, C, OC, bias, path);
}

void linear_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const uint16_t* weight, int N, int C, int OC,
                          Bf16Path path) {
    static thread_local std::vector<uint16_t> t;
    if (dinp) {
        // dinp[n][c] += sum_o dout[n][o] W[o][c]: the forward kernel over W^T (C, OC).
        t.resize((size_t)C * OC);
        transpose(t.data(), OC, C, [&](int o, int c) { return weight[(size_t)o * C + c]; });
        matmul(dinp, C, true, dout, OC, 1, N, OC, t.data(), OC, C, nullptr, path);
    }
    // dW[o][c] += sum_n dout[n][o] inp[n][c]: rows o of dout^T against bf16(inp)^T (C, N).
    if (dweight) {
        t.resize((size_t)C * N);
        transpose(t.data(), N, C, [&](int n, int c) { return to_bf16(inp[(size_t)n * C + c]); });
        matmul(dweight, C, true, dout, 1, OC, OC, N, t.data(), N, C, nullptr, path);
    }
    if (dbias) bias_backward(dbias, dout, N, OC);
}

void embedding_forward_bf16(float* out, const int32_t* tokens, const uint16_t* wte, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const uint16_t* src = wte + (size_t)tokens[n] * C;
        float* dst = out + (size_t)n * C;
        for (int c = 0; c < C; c++) dst[c] = from_bf16(src[c]);
    }
}

}  // namespace crucible::kernels
