#include "kernels/small_batch_linear.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/parallel.h"

namespace crucible::kernels {

// Why this shape. With a few rows a linear layer is a stream over the weights (tens of MB)
// with a little arithmetic per weight. OpenBLAS's sgemm copies ("packs") every weight panel
// into a buffer before multiplying, on every call: at 32 rows that copy was about a third of a
// decode step (perf, docs/PERFORMANCE.md). Here the input, which is small, is transposed
// instead, so one vector holds one input feature c of 8 or 16 consecutive rows; each weight is
// broadcast straight from its row-major row and multiplies all the rows at once. Every weight
// is read from memory once per call, front to back along its row, while the FMAs run. A vector
// lane is one output, summed over c in order: that fixes the rounding of every output
// independently of the tiling, the thread count and the instruction set.
namespace {

struct Tile {
    float* out;
    const float* inT;  // (C, NP): inT[c * NP + n] = inp[n][c], zero for n >= N
    int NP;
    const float* w0;  // weight row j0; row j0 + r at w0 + r * C
    const float* bias;
    int C, OC;
    int j0, rows;     // weight rows j0 .. j0 + rows - 1
    int n0, n_valid;  // input rows n0 .. n0 + n_valid - 1
};

// Stores a tile's accumulators, weight row r's W lanes at acc + r * W, to out, adding the bias
// last.
template <int W>
inline void store_tile(const Tile& t, const float* acc) {
    for (int r = 0; r < t.rows; r++) {
        const float b = t.bias ? t.bias[t.j0 + r] : 0.0f;
        for (int i = 0; i < t.n_valid; i++) {
            float v = acc[r * W + i];
            if (t.bias) v += b;
            t.out[(size_t)(t.n0 + i) * t.OC + t.j0 + r] = v;
        }
    }
}

// R weight rows x V vectors of 8 input rows, AVX2: 6 x 2 and 12 x 1 use 12 of the 16 ymm registers.
template <int R, int V>
void tile_avx2(const Tile& t) {
    const float* w[R];
    for (int r = 0; r < R; r++) w[r] = t.w0 + (size_t)(r < t.rows ? r : 0) * t.C;
    __m256 acc[R][V];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[r][v] = _mm256_setzero_ps();
    const float* x = t.inT + t.n0;
    const int C = t.C, NP = t.NP;
    for (int c = 0; c < C; c++, x += NP) {
        __m256 xv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) xv[v] = _mm256_loadu_ps(x + 8 * v);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m256 b = _mm256_broadcast_ss(w[r] + c);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[r][v] = _mm256_fmadd_ps(b, xv[v], acc[r][v]);
        }
    }
    alignas(32) float buf[R * V * 8];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) _mm256_store_ps(buf + (r * V + v) * 8, acc[r][v]);
    store_tile<V * 8>(t, buf);
}

// R weight rows x V vectors of 16 input rows, AVX-512: 12 x 2 uses 24 of the 32 zmm registers.
// The same loop as tile_avx2, not one template over both: target("avx512f") on a template
// would let the compiler emit AVX-512 instructions in its AVX2 instance too.
template <int R, int V>
__attribute__((target("avx512f"))) void tile_avx512(const Tile& t) {
    const float* w[R];
    for (int r = 0; r < R; r++) w[r] = t.w0 + (size_t)(r < t.rows ? r : 0) * t.C;
    __m512 acc[R][V];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
    const float* x = t.inT + t.n0;
    const int C = t.C, NP = t.NP;
    for (int c = 0; c < C; c++, x += NP) {
        __m512 xv[V];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) xv[v] = _mm512_loadu_ps(x + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
            const __m512 b = _mm512_set1_ps(w[r][c]);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(b, xv[v], acc[r][v]);
        }
    }
    alignas(64) float buf[R * V * 16];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) _mm512_store_ps(buf + (r * V + v) * 16, acc[r][v]);
    store_tile<V * 16>(t, buf);
}

// Transposes the input, then gives each thread whole R-row weight tiles; a tile covers the input
// rows `2 * LANES` at a time with `Wide`, the last chunk with `Narrow` (one vector of LANES) and
// with `Tiny` (one 8-lane vector) when that is enough. Every weight costs one broadcast and one
// FMA per vector, and Zen 4 or Skylake-X issue twice as many 8-lane FMAs per cycle as 16-lane
// ones: with 8 rows or fewer the 8-lane tile is up to twice as fast.
template <int R, int LANES, void (*Wide)(const Tile&), void (*Narrow)(const Tile&),
          void (*Tiny)(const Tile&)>
void run(float* out, const float* inp, const float* weight, const WeightRows* rows_of,
         const float* bias, int N, int C, int OC) {
    constexpr int kChunk = 2 * LANES;
    const int NP = (N + kChunk - 1) / kChunk * kChunk;
    static thread_local std::vector<float> transposed;
    transposed.resize((size_t)C * NP);
    float* inT = transposed.data();
    const int tiles = (OC + R - 1) / R;
#pragma omp parallel
    {
        int c0, c1;
        thread_slice(C, &c0, &c1);
        for (int c = c0; c < c1; c++) {
            float* dst = inT + (size_t)c * NP;
            for (int n = 0; n < N; n++) dst[n] = inp[(size_t)n * C + c];
            std::fill(dst + N, dst + NP, 0.0f);
        }
        static thread_local std::vector<float> tile_rows;  // a converted weight's tile
        if (rows_of) tile_rows.resize((size_t)R * C);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int j = 0; j < tiles; j++) {
            const int rows = std::min(R, OC - j * R);
            const float* w0 = weight + (size_t)j * R * C;
            if (rows_of) {
                rows_of->fill(rows_of->source, j * R, rows, C, tile_rows.data());
                w0 = tile_rows.data();
                // Static scheduling gives a thread consecutive tiles: the next is likely its.
                if (rows_of->prefetch && j + 1 < tiles) {
                    rows_of->prefetch(rows_of->source, (j + 1) * R, std::min(R, OC - (j + 1) * R),
                                      C);
                }
            }
            Tile t{out, inT, NP, w0, bias, C, OC, j * R, rows, 0, 0};
            for (t.n0 = 0; t.n0 < N; t.n0 += kChunk) {
                t.n_valid = std::min(kChunk, N - t.n0);
                (t.n_valid > LANES ? Wide : t.n_valid > 8 ? Narrow : Tiny)(t);
            }
        }
    }
}

void dispatch(float* out, const float* inp, const float* weight, const WeightRows* rows_of,
              const float* bias, int N, int C, int OC, SimdPath path) {
    if (path == SimdPath::avx512) {
        run<12, 16, tile_avx512<12, 2>, tile_avx512<12, 1>, tile_avx2<12, 1>>(
            out, inp, weight, rows_of, bias, N, C, OC);
    } else {
        run<6, 8, tile_avx2<6, 2>, tile_avx2<6, 1>, tile_avx2<6, 1>>(out, inp, weight, rows_of,
                                                                     bias, N, C, OC);
    }
}

}  // namespace

bool cpu_has_avx512() {
    static const bool has = __builtin_cpu_supports("avx512f");
    return has;
}

void small_batch_linear(float* out, const float* inp, const float* weight, const float* bias, int N,
                        int C, int OC, SimdPath path) {
    dispatch(out, inp, weight, nullptr, bias, N, C, OC, path);
}

void small_batch_linear(float* out, const float* inp, const WeightRows& weight, const float* bias,
                        int N, int C, int OC, SimdPath path) {
    dispatch(out, inp, nullptr, &weight, bias, N, C, OC, path);
}

}  // namespace crucible::kernels
