// `crucible bench train`: our training step next to PyTorch's and OpenBLAS's sgemm peak,
// measured in the same invocation with the same thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/bench_shapes.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"

namespace crucible::cli {

using nlohmann::json;

namespace {

// OpenBLAS sgemm at a large square size: the practical FLOP ceiling of this machine.
double sgemm_peak_gflops(int reps) {
    const int n = 2048;
    std::vector<float> a((size_t)n * n), b((size_t)n * n), c((size_t)n * n);
    Rng rng(1);
    for (auto& x : a) x = (float)rng.normal();
    for (auto& x : b) x = (float)rng.normal();
    double best = 0;
    for (int r = 0; r < reps + 1; r++) {
        const auto t0 = Clock::now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                    n, 0.0f, c.data(), n);
        const double s = seconds_since(t0);
        if (r > 0) best = std::max(best, 2.0 * n * n * (double)n / s / 1e9);
    }
    return best;
}

struct StepTiming {
    double step_s;
    double tokens_per_s;
    double gflops;
    size_t params;
};

// One training step = forward + backward + grad clip + AdamW over B full-length sequences.
StepTiming time_training_step(const BenchShape& shape, int warmup, int steps) {
    Model model(shape.config);
    model.init_random(7);
    std::vector<float> m(model.num_params(), 0.0f), v(model.num_params(), 0.0f);
    PackedBatch batch;
    Rng rng(3);
    const float w = 1.0f / (float)(shape.batch * shape.seq);
    for (int s = 0; s < shape.batch; s++) {
        std::vector<int32_t> in(shape.seq), next(shape.seq);
        for (int t = 0; t < shape.seq; t++) {
            in[t] = (int32_t)rng.below(shape.config.vocab_size);
            next[t] = (int32_t)rng.below(shape.config.vocab_size);
        }
        batch.add_sequence(in, next, std::vector<float>(shape.seq, w));
    }
    std::vector<double> times;
    for (int i = 0; i < warmup + steps; i++) {
        const auto t0 = Clock::now();
        model.zero_grads();
        model.forward(batch);
        model.backward();
        kernels::clip_grad_norm(model.grads(), model.num_params(), 1.0);
        for (const TensorInfo& t : model.tensors()) {
            const kernels::AdamWParams hp{1e-4f, 0.9f, 0.999f, 1e-8f, t.decay ? 0.1f : 0.0f};
            kernels::adamw_update(model.params() + t.offset, model.grads() + t.offset,
                                  m.data() + t.offset, v.data() + t.offset, t.numel, hp, i + 1);
        }
        const double s = seconds_since(t0);
        if (i >= warmup) times.push_back(s);
    }
    const double step_s = median(times);
    const double tokens = (double)batch.n_tokens();
    return {step_s, tokens / step_s, Model::train_flops(shape.config, batch) / step_s / 1e9,
            model.num_params()};
}

json run_torch(const std::string& python, const std::string& script, const char* config,
               int threads, int warmup, int steps) {
    // PyTorch runs with the environment the user gave us, not the spin count we defaulted.
    const char* restore =
        std::getenv("CRUCIBLE_DEFAULTED_GOMP_SPINCOUNT") ? "env -u GOMP_SPINCOUNT " : "";
    const std::string cmd = restore + python + " " + script + " --config " + config +
                            " --threads " + std::to_string(threads) + " --steps " +
                            std::to_string(steps) + " --warmup " + std::to_string(warmup) + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) throw Error("cannot run " + cmd);
    std::string out;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0) throw Error("PyTorch baseline failed (" + cmd + "):\n" + out);
    const size_t brace =
        out.rfind("\n{") == std::string::npos ? out.find('{') : out.rfind("\n{") + 1;
    try {
        return json::parse(out.substr(brace));
    } catch (const json::exception&) {
        throw Error("PyTorch baseline printed no JSON (" + cmd + "):\n" + out);
    }
}

}  // namespace

std::function<int()> add_bench(CLI::App& app) {
    CLI::App* bench = app.add_subcommand("bench", "Benchmarks against a reference");
    bench->require_subcommand(1);
    CLI::App* train = bench->add_subcommand(
        "train", "Training step (forward+backward+AdamW) vs PyTorch CPU and the sgemm peak");
    struct Options {
        JsonOutput json_out;
        std::vector<std::string> configs{"small", "medium"};
        int steps = 5;
        int warmup = 1;
        bool no_torch = false;
        std::string python = "/usr/bin/python3";
        std::string script = std::string(CRUCIBLE_SOURCE_DIR) + "/bench/torch_train.py";
    };
    auto opt = std::make_shared<Options>();
    add_json_option(train, &opt->json_out);
    train->add_option("--configs", opt->configs, "which shapes: small, medium")->delimiter(',');
    train->add_option("--steps", opt->steps, "timed steps per side (median reported)");
    train->add_option("--warmup", opt->warmup, "untimed warm-up steps per side");
    train->add_flag("--no-torch", opt->no_torch, "skip the PyTorch baseline");
    train->add_option("--python", opt->python, "interpreter with PyTorch (Debian python3-torch)");
    train->add_option("--torch-script", opt->script, "path of bench/torch_train.py");
    auto tokenize = add_bench_tokenize(*bench);
    auto generate = add_bench_generate(*bench);
    auto linear = add_bench_linear(*bench);
    auto episodes = add_bench_episodes(*bench);
    return [opt, bench, tokenize, generate, linear, episodes]() {
        if (bench->got_subcommand("episodes")) return episodes();
        if (bench->got_subcommand("tokenize")) return tokenize();
        if (bench->got_subcommand("generate")) return generate();
        if (bench->got_subcommand("linear")) return linear();
        const int threads = omp_get_max_threads();
        openblas_set_num_threads(threads);
        const double peak = sgemm_peak_gflops(3);
        json result = {{"threads", threads},
                       {"blas", std::string("OpenBLAS ") + openblas_get_config()},
                       {"sgemm_peak_gflops", peak}};
        if (opt->json_out.table()) {
            std::printf("threads %d | %s | sgemm peak %.1f GFLOP/s (2048^3, best of 3)\n", threads,
                        openblas_get_config(), peak);
        }
        for (const BenchShape& shape : bench_shapes()) {
            if (std::find(opt->configs.begin(), opt->configs.end(), shape.name) ==
                opt->configs.end()) {
                continue;
            }
            const StepTiming ours = time_training_step(shape, opt->warmup, opt->steps);
            json row = {{"tokens_per_step", shape.batch * shape.seq},
                        {"params", ours.params},
                        {"step_s", ours.step_s},
                        {"tokens_per_s", ours.tokens_per_s},
                        {"gflops", ours.gflops},
                        {"fraction_of_sgemm_peak", ours.gflops / peak},
                        {"sgemm_peak_gflops", peak}};
            if (!opt->no_torch) {
                const json t = run_torch(opt->python, opt->script, shape.name, threads, opt->warmup,
                                         opt->steps);
                row["torch_tokens_per_s"] = t["tokens_per_s"];
                row["torch_step_s"] = t["step_s_median"];
                row["ratio_vs_torch"] = ours.tokens_per_s / t["tokens_per_s"].get<double>();
                row["torch_blas"] = t.value("blas", "");
                row["torch_version"] = t.value("torch_version", "");
            }
            result[shape.name] = row;
            if (opt->json_out.table()) {
                std::printf("%-6s | crucible %8.0f tok/s %6.1f GFLOP/s (%.0f%% of peak)",
                            shape.name, ours.tokens_per_s, ours.gflops, 100 * ours.gflops / peak);
                if (!opt->no_torch) {
                    std::printf(" | torch %8.0f tok/s | ratio %.2fx",
                                row["torch_tokens_per_s"].get<double>(),
                                row["ratio_vs_torch"].get<double>());
                }
                std::printf("\n");
                std::fflush(stdout);
            }
        }
        if (!opt->no_torch && opt->json_out.table()) {
            std::printf("torch BLAS: %s\n",
                        result.value("small", json::object()).value("torch_blas", "?").c_str());
        }
        opt->json_out.write(result);
        return 0;
    };
}

}  // namespace crucible::cli
