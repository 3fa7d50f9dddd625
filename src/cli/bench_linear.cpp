// `crucible bench linear`: the linear layers of one decode step at decode row counts —
// crucible's linear_forward (the weight-stream kernel, the small-batch kernel or sgemm, by row
// count), or with --dtype bfloat16 linear_forward_bf16 on the weights rounded to bf16, next to
// OpenBLAS sgemm (fp32) on the same operands, in the same process, alternating.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/bench_shapes.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/bf16_linear.h"
#include "kernels/kernels.h"
#include "kernels/small_batch_linear.h"

namespace crucible::cli {

using nlohmann::json;

namespace {

struct Matrix {
    const char* name;
    int C, OC;  // inputs, outputs
    int count;  // how many such matrices one decode step multiplies
};

// The matrices of a decode step of `c`, grouped by shape.
std::vector<Matrix> step_matrices(const ModelConfig& c) {
    const int L = c.num_hidden_layers;
    return {{"q_proj", c.hidden_size, c.q_dim(), L},
            {"k_proj,v_proj", c.hidden_size, c.kv_dim(), 2 * L},
            {"o_proj", c.q_dim(), c.hidden_size, L},
            {"gate_proj,up_proj", c.hidden_size, c.intermediate_size, 2 * L},
            {"down_proj", c.intermediate_size, c.hidden_size, L},
            {"lm_head", c.hidden_size, c.vocab_size, 1}};
}

const char* kernel_for_rows(int n, bool bf16) {
    if (bf16) {
        const bool dp = kernels::default_bf16_path() == kernels::Bf16Path::dpbf16;
        if (n <= 4) return dp ? "bf16 weight stream (vdpbf16ps)" : "bf16 weight stream (fma)";
        return dp ? "bf16 broadcast (vdpbf16ps)" : "bf16 broadcast (fma)";
    }
    switch (kernels::linear_kernel(n)) {
        case kernels::LinearKernel::weight_stream:
            return "weight stream";
        case kernels::LinearKernel::small_batch:
            return kernels::cpu_has_avx512() ? "small-batch avx512" : "small-batch avx2";
        case kernels::LinearKernel::blas:
            break;
    }
    return "sgemm";
}

template <class F>
double seconds(F&& f) {
    const auto t0 = Clock::now();
    f();
    return seconds_since(t0);
}

}  // namespace

std::function<int()> add_bench_linear(CLI::App& bench) {
    CLI::App* cmd = bench.add_subcommand(
        "linear", "Linear layers at decode row counts vs OpenBLAS sgemm on the same operands");
    struct Options {
        JsonOutput json_out;
        std::string config = "medium";
        std::vector<int> rows{1, 2, 8, 32, 64, 128, 256};
        int reps = 5;
        std::string dtype = "float32";
    };
    auto o = std::make_shared<Options>();
    add_json_option(cmd, &o->json_out);
    cmd->add_option("--config", o->config, "which shape: small, medium");
    cmd->add_option("--rows", o->rows, "row counts (sequences in a decode step)")
        ->delimiter(',')
        ->check(CLI::PositiveNumber);
    cmd->add_option("--dtype", o->dtype, "crucible's side: float32 or bfloat16 weights and matmul")
        ->check(CLI::IsMember({"float32", "bfloat16"}));
    cmd->add_option("--reps", o->reps, "timed runs per side (best kept), alternating")
        ->check(CLI::PositiveNumber);
    return [o]() {
        const std::vector<BenchShape> shapes = bench_shapes();
        const auto shape = std::find_if(shapes.begin(), shapes.end(),
                                        [&](const BenchShape& s) { return s.name == o->config; });
        if (shape == shapes.end()) throw Error("bench linear: unknown --config " + o->config);
        const int threads = omp_get_max_threads();
        openblas_set_num_threads(threads);
        const bool bf16 = o->dtype == "bfloat16";
        json result = {{"config", o->config},
                       {"threads", threads},
                       {"dtype", o->dtype},
                       {"rows", json::array()}};
        if (o->json_out.table()) {
            std::printf("%s, %d threads, crucible in %s\n", o->config.c_str(), threads,
                        o->dtype.c_str());
        }
        Rng rng(1);
        for (int n : o->rows) {
            double ours_step = 0, blas_step = 0, flops_step = 0;
            json per_matrix = json::array();
            for (const Matrix& m : step_matrices(shape->config)) {
                std::vector<float> w((size_t)m.OC * m.C), x((size_t)n * m.C), out((size_t)n * m.OC);
                for (float& v : w) v = (float)rng.normal();
                for (float& v : x) v = (float)rng.normal();
                std::vector<uint16_t> w16(bf16 ? w.size() : 0);
                if (bf16) kernels::to_bf16(w16.data(), w.data(), w.size());
                double ours = 1e30, blas = 1e30;
                for (int r = 0; r <= o->reps; r++) {  // the first round warms up
                    const double a = seconds([&] {
                        if (bf16) {
                            kernels::linear_forward_bf16(out.data(), x.data(), w16.data(), nullptr,
                                                         n, m.C, m.OC);
                        } else {
                            kernels::linear_forward(out.data(), x.data(), w.data(), nullptr, n, m.C,
                                                    m.OC);
                        }
                    });
                    const double b = seconds([&] {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m.OC, m.C, 1.0f,
                                    x.data(), m.C, w.data(), m.C, 0.0f, out.data(), m.OC);
                    });
                    if (r > 0) ours = std::min(ours, a), blas = std::min(blas, b);
                }
                const double flops = 2.0 * n * m.C * (double)m.OC;
                ours_step += m.count * ours;
                blas_step += m.count * blas;
                flops_step += m.count * flops;
                per_matrix.push_back({{"matrix", m.name},
                                      {"C", m.C},
                                      {"OC", m.OC},
                                      {"crucible_gflops", flops / ours / 1e9},
                                      {"sgemm_gflops", flops / blas / 1e9},
                                      {"speedup", blas / ours}});
                if (o->json_out.table()) {
                    std::printf(
                        "rows %4d | %-17s %5d -> %5d | crucible %7.1f GFLOP/s | sgemm %7.1f "
                        "GFLOP/s | %.2fx\n",
                        n, m.name, m.C, m.OC, flops / ours / 1e9, flops / blas / 1e9, blas / ours);
                }
            }
            result["rows"].push_back({{"rows", n},
                                      {"kernel", kernel_for_rows(n, bf16)},
                                      {"step_crucible_s", ours_step},
                                      {"step_sgemm_s", blas_step},
                                      {"step_speedup", blas_step / ours_step},
                                      {"matrices", per_matrix}});
            if (o->json_out.table()) {
                std::printf(
                    "rows %4d | one decode step's matmuls (%s): crucible %.2f ms, sgemm "
                    "%.2f ms | %.2fx | %.1f vs %.1f GFLOP/s\n",
                    n, kernel_for_rows(n, bf16), ours_step * 1e3, blas_step * 1e3,
                    blas_step / ours_step, flops_step / ours_step / 1e9,
                    flops_step / blas_step / 1e9);
                std::fflush(stdout);
            }
        }
        o->json_out.write(result);
        return 0;
    };
}

}  // namespace crucible::cli
