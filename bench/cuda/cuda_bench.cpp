// Throughput of the CUDA kernels against the device's bounds, on the Qwen2.5-0.5B shapes
// (hidden 896, 14 heads over 2 KV heads of 64, intermediate 4864, vocabulary 151936):
//   - GEMMs of a training step's forward (8192 tokens), fp32 and bf16, in TFLOP/s and as a
//     fraction of the bf16 dense peak (an upper bound on what the model's MFU can reach);
//   - the decode linear layers at batch 1, 32 and 128 with bf16 weights, in GB/s of weights
//     read and as a fraction of the HBM bandwidth (decode at batch 1 is bound by that read);
//   - paged decode attention and the sampler at batch 32, causal attention forward/backward
//     at 8 x 1024 tokens, in milliseconds.
// Each figure is the median over five rounds of --reps calls queued back to back. This measures the
// kernels, not the model: the model does not run on the GPU yet (docs/CUDA.md).
//
// Usage: crucible_cuda_bench [--json FILE] [--reps 20] [--bf16-peak-tflops 989]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "cuda/device.h"
#include "cuda/ops.h"

using namespace crucible;

namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(rng.uniform() * 2 - 1);
    return v;
}

// Seconds per call: `reps` calls queued back to back and one wait, five times; the median.
// (A wait after every call would add the launch-and-sync latency to each small decode GEMM.)
double time_call(const std::function<void()>& call, int reps) {
    for (int i = 0; i < 3; i++) call();
    cuda::synchronize();
    std::vector<double> t;
    for (int round = 0; round < 5; round++) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) call();
        cuda::synchronize();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                    reps);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    std::string json_path;
    int reps = 20;
    double peak_tflops = 0;  // 0: from the device's name
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--json" && i + 1 < argc) {
            json_path = argv[++i];
        } else if (a == "--reps" && i + 1 < argc) {
            reps = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--bf16-peak-tflops" && i + 1 < argc) {
            peak_tflops = std::atof(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: %s [--json FILE] [--reps N] [--bf16-peak-tflops T]\n",
                         argv[0]);
            return 2;
        }
    }
    std::string why;
    if (!cuda::available(&why)) {
        std::fprintf(stderr, "crucible_cuda_bench: no CUDA device (%s)\n", why.c_str());
        return 1;
    }
    const cuda::DeviceInfo dev = cuda::device_info();
    if (peak_tflops <= 0) {
        // Dense bf16 tensor-core peaks of the SXM parts (NVIDIA's data sheets).
        peak_tflops =
            dev.name.find("H100") != std::string::npos || dev.name.find("H200") != std::string::npos
                ? 989.4
                : 0;
    }
    std::string rows;
    auto row = [&](const std::string& s) { rows += (rows.empty() ? "" : ",\n") + s; };
    std::printf("%s, %d SMs, %.0f GiB, %.0f GB/s HBM (from clocks), bf16 peak %.1f TFLOP/s\n",
                dev.name.c_str(), dev.multiprocessors, dev.memory_bytes / 1073741824.0,
                dev.memory_bandwidth_gbs, peak_tflops);

    const int H = 896, I = 4864, V = 151936, heads = 14, kv_heads = 2, hd = 64, KV = kv_heads * hd;
    // ---- training-step GEMMs: 8192 tokens through one layer's linears and the head ----
    {
        const int N = 8192;
        struct Shape {
            const char* name;
            int C, OC;
        };
        const Shape shapes[] = {{"q/o (896x896)", H, H},
                                {"k/v (896->128)", H, KV},
                                {"gate/up (896->4864)", H, I},
                                {"down (4864->896)", I, H},
                                {"lm_head (896->151936)", H, V}};
        auto inp = cuda::DeviceArray<float>(random_floats((size_t)N * I, 1));
        cuda::DeviceArray<float> out((size_t)N * V);
        cuda::DeviceArray<uint16_t> w16((size_t)V * H), scratch((size_t)N * I);
        cuda::DeviceArray<float> w32((size_t)V * H);
        {
            const auto w = random_floats((size_t)V * H, 2);
            w32.upload(w);
            cuda::to_bf16(w16.data(), w32.data(), w.size());
        }
        for (const Shape& s : shapes) {
            const double flops = 2.0 * N * s.C * s.OC;
            const double t32 = time_call(
                [&] {
                    cuda::linear_forward(out.data(), inp.data(), w32.data(), nullptr, N, s.C, s.OC);
                },
                reps);
            const double t16 = time_call(
                [&] {
                    cuda::linear_forward_bf16(out.data(), inp.data(), w16.data(), nullptr, N, s.C,
                                              s.OC, scratch.data());
                },
                reps);
            const double tf32 = flops / t32 / 1e12, tf16 = flops / t16 / 1e12;
            std::printf(
                "gemm %-24s N=%d  fp32 %7.1f TFLOP/s  bf16 %7.1f TFLOP/s (%.0f%% of peak)\n",
                s.name, N, tf32, tf16, peak_tflops > 0 ? 100 * tf16 / peak_tflops : 0.0);
            row(std::string("    {\"kind\": \"gemm\", \"shape\": \"") + s.name +
                "\", \"tokens\": " + std::to_string(N) + ", \"fp32_tflops\": " + fmt("%.2f", tf32) +
                ", \"bf16_tflops\": " + fmt("%.2f", tf16) + ", \"bf16_fraction_of_peak\": " +
                fmt("%.4f", peak_tflops > 0 ? tf16 / peak_tflops : 0.0) + "}");
        }
        // ---- decode linears: the whole layer's weights read once per step ----
        for (int B : {1, 32, 128}) {
            double seconds = 0, bytes = 0;
            for (const Shape& s : shapes) {
                const int times =
                    s.OC == KV ? 2 : (s.OC == I ? 2 : (s.C == H && s.OC == H ? 2 : 1));
                const double t = time_call(
                    [&] {
                        cuda::linear_forward_bf16(out.data(), inp.data(), w16.data(), nullptr, B,
                                                  s.C, s.OC, scratch.data());
                    },
                    reps);
                seconds += times * t;
                bytes += times * 2.0 * s.C * s.OC;
            }
            const double gbs = bytes / seconds / 1e9;
            std::printf(
                "decode linears (one layer + head) batch %3d: %.1f GB/s of bf16 weights "
                "(%.0f%% of HBM)\n",
                B, gbs, 100 * gbs / dev.memory_bandwidth_gbs);
            row("    {\"kind\": \"decode_linears\", \"batch\": " + std::to_string(B) +
                ", \"weight_gbs\": " + fmt("%.1f", gbs) +
                ", \"fraction_of_hbm\": " + fmt("%.4f", gbs / dev.memory_bandwidth_gbs) + "}");
        }
    }
    // ---- paged decode attention: 32 rows at position 1023, blocks of 16 ----
    {
        const int rows_n = 32, ctx = 1024, block = 16, blocks_per_row = ctx / block;
        const int64_t token_stride = KV, block_stride = (int64_t)block * KV;
        const size_t pool = (size_t)rows_n * blocks_per_row * block_stride;
        cuda::DeviceArray<float> k(random_floats(pool, 3)), v(random_floats(pool, 4)),
            q(random_floats((size_t)rows_n * heads * hd, 5)), out((size_t)rows_n * heads * hd);
        std::vector<int32_t> pos(rows_n, ctx - 1), tables((size_t)rows_n * blocks_per_row);
        for (size_t i = 0; i < tables.size(); i++) tables[i] = (int32_t)i;
        cuda::DeviceArray<int32_t> d_pos(pos), d_tables(tables);
        const double t = time_call(
            [&] {
                cuda::paged_attention_forward(
                    out.data(), q.data(), {k.data(), v.data(), block, block_stride, token_stride},
                    {rows_n, heads, kv_heads, hd, d_pos.data(), d_tables.data(), blocks_per_row});
            },
            reps);
        const double gbs = 2.0 * pool * sizeof(float) / t / 1e9;  // each K and V read once
        std::printf("paged attention 32 rows x 1024 positions: %.3f ms (%.1f GB/s of K/V)\n",
                    t * 1e3, gbs);
        row("    {\"kind\": \"paged_attention\", \"rows\": 32, \"positions\": 1024, \"ms\": " +
            fmt("%.4f", t * 1e3) + ", \"kv_gbs\": " + fmt("%.1f", gbs) + "}");
    }
    // ---- causal attention forward and backward: 8 sequences of 1024 ----
    {
        const int S = 8, T = 1024, N = S * T;
        std::vector<int32_t> start(S), len(S, T);
        std::vector<int64_t> off(S);
        for (int s = 0; s < S; s++) {
            start[s] = s * T;
            off[s] = (int64_t)s * heads * T * T;
        }
        cuda::DeviceArray<int32_t> d_start(start), d_len(len);
        cuda::DeviceArray<int64_t> d_off(off);
        const size_t qn = (size_t)N * heads * hd, kvn = (size_t)N * KV;
        const size_t pn = (size_t)S * heads * T * T;
        cuda::DeviceArray<float> q(random_floats(qn, 6)), k(random_floats(kvn, 7)),
            v(random_floats(kvn, 8)), dout(random_floats(qn, 9)), out(qn), probs(pn), dprobs(pn),
            dq(qn), dk(kvn), dv(kvn);
        const kernels::AttentionShape sh{heads,          kv_heads,     hd,          S,
                                         d_start.data(), d_len.data(), d_off.data()};
        const double tf = time_call(
            [&] {
                cuda::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), sh,
                                        T);
            },
            reps);
        const double tb = time_call(
            [&] {
                cuda::attention_backward(dq.data(), dk.data(), dv.data(), dprobs.data(),
                                         dout.data(), q.data(), k.data(), v.data(), probs.data(),
                                         sh, T);
            },
            reps);
        // Causal: half the T x T scores, 2 flops per multiply-add, QK^T and PV.
        const double flops = 2.0 * 2.0 * S * heads * (T * (T + 1) / 2.0) * hd;
        std::printf("attention 8 x 1024: forward %.2f ms (%.1f TFLOP/s), backward %.2f ms\n",
                    tf * 1e3, flops / tf / 1e12, tb * 1e3);
        row("    {\"kind\": \"attention\", \"seqs\": 8, \"len\": 1024, \"forward_ms\": " +
            fmt("%.3f", tf * 1e3) + ", \"forward_tflops\": " + fmt("%.3f", flops / tf / 1e12) +
            ", \"backward_ms\": " + fmt("%.3f", tb * 1e3) + "}");
    }
    // ---- sampling: 32 rows of the full vocabulary, top-p 0.95 ----
    {
        const int B = 32;
        cuda::DeviceArray<float> logits(random_floats((size_t)B * V, 10));
        std::vector<SamplingParams> params(B);
        for (SamplingParams& p : params) p.top_p = 0.95f;
        std::vector<double> u(B, 0.5);
        std::vector<int32_t> tokens(B);
        const double t = time_call(
            [&] {
                cuda::sample_tokens(tokens.data(), logits.data(), B, V, params.data(), u.data());
            },
            reps);
        std::printf("sampling 32 x %d, top-p 0.95: %.3f ms\n", V, t * 1e3);
        row("    {\"kind\": \"sampling\", \"rows\": 32, \"vocab\": " + std::to_string(V) +
            ", \"ms\": " + fmt("%.4f", t * 1e3) + "}");
    }
    if (!json_path.empty()) {
        FILE* f = std::fopen(json_path.c_str(), "w");
        if (f == nullptr) {
            std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
            return 1;
        }
        std::fprintf(f,
                     "{\n  \"device\": \"%s\",\n  \"hbm_gbs\": %.1f,\n  \"bf16_peak_tflops\": "
                     "%.1f,\n  \"reps\": %d,\n  \"results\": [\n%s\n  ]\n}\n",
                     dev.name.c_str(), dev.memory_bandwidth_gbs, peak_tflops, reps, rows.c_str());
        std::fclose(f);
    }
    return 0;
}
