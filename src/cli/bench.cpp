// `crucible bench train`: our training step next to PyTorch's and OpenBLAS's sgemm peak,
// measured in the same invocation with the same thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
#include "model/checkpoint.h"
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

// One training step = forward + backward + grad clip + AdamW over `batch_size` full-length
// sequences of `seq` tokens, on `model` (its weights change).
StepTiming time_training_step(Model& model, int batch_size, int seq, int warmup, int steps) {
    const ModelConfig& config = model.config();
    std::vector<float> m(model.num_params(), 0.0f), v(model.num_params(), 0.0f);
    PackedBatch batch;
    Rng rng(3);
    const float w = 1.0f / (float)(batch_size * seq);
    for (int s = 0; s < batch_size; s++) {
        std::vector<int32_t> in(seq), next(seq);
        for (int t = 0; t < seq; t++) {
            in[t] = (int32_t)rng.below(config.vocab_size);
            next[t] = (int32_t)rng.below(config.vocab_size);
        }
        batch.add_sequence(in, next, std::vector<float>(seq, w));
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
    return {step_s, tokens / step_s, Model::train_flops(config, batch) / step_s / 1e9,
            model.num_params()};
}

// `which`: "--config NAME" (a built-in shape) or "--model-config FILE --batch B --seq T".
json run_torch(const std::string& python, const std::string& script, const std::string& which,
               int threads, int warmup, int steps) {
    // PyTorch runs with the environment the user gave us, not the spin count we defaulted.
    const char* restore =
        std::getenv("CRUCIBLE_DEFAULTED_GOMP_SPINCOUNT") ? "env -u GOMP_SPINCOUNT " : "";
    const std::string cmd = restore + python + " " + script + " " + which + " --threads " +
                            std::to_string(threads) + " --steps " + std::to_string(steps) +
                            " --warmup " + std::to_string(warmup) + " 2>&1";
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
        std::string torch_dtype = "fp32";  // or bf16: torch.autocast (faster on AVX-512 BF16)
        std::string python = "/usr/bin/python3";
        std::string script = std::string(CRUCIBLE_SOURCE_DIR) + "/bench/torch_train.py";
        std::string model;  // a model folder instead of the built-in shapes
        int batch = 2, seq = 512;
        std::string dtype = "float32";
    };
    auto opt = std::make_shared<Options>();
    add_json_option(train, &opt->json_out);
    train->add_option("--configs", opt->configs, "which shapes: small, medium, qwen2.5-0.5b")
        ->delimiter(',');
    train
        ->add_option("--model", opt->model,
                     "a model folder (config.json, model.safetensors) instead of the built-in "
                     "shapes: its load is not timed, its peak memory is reported; PyTorch builds "
                     "the same architecture from its config.json")
        ->check(CLI::ExistingDirectory);
    train->add_option("--batch", opt->batch, "with --model: sequences per step")
        ->check(CLI::PositiveNumber);
    train->add_option("--seq", opt->seq, "with --model: tokens per sequence (at most the context)")
        ->check(CLI::PositiveNumber);
    train->add_option("--steps", opt->steps, "timed steps per side (median reported)");
    train->add_option("--warmup", opt->warmup, "untimed warm-up steps per side");
    train->add_flag("--no-torch", opt->no_torch, "skip the PyTorch baseline");
    train
        ->add_option("--dtype", opt->dtype,
                     "our matmuls' precision: float32 or bfloat16 (fp32 master weights, "
                     "gradients and AdamW state either way)")
        ->check(CLI::IsMember({"float32", "bfloat16"}));
    train
        ->add_option("--torch-dtype", opt->torch_dtype,
                     "PyTorch's compute: fp32 (as ours) or bf16 (torch.autocast, fp32 master "
                     "weights: faster than its fp32 on CPUs with AVX-512 BF16)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
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
        // One row: our step on `model` and PyTorch's on the same architecture (`which`).
        const auto measure = [&](const std::string& name, Model& model, int B, int T,
                                 const std::string& which) {
            model.set_matmul_dtype(parse_matmul_dtype(opt->dtype, "--dtype"));
            const StepTiming ours = time_training_step(model, B, T, opt->warmup, opt->steps);
            json row = {{"dtype", opt->dtype},
                        {"tokens_per_step", B * T},
                        {"params", ours.params},
                        {"step_s", ours.step_s},
                        {"tokens_per_s", ours.tokens_per_s},
                        {"gflops", ours.gflops},
                        {"fraction_of_sgemm_peak", ours.gflops / peak},
                        {"sgemm_peak_gflops", peak}};
            if (!opt->no_torch) {
                const json t =
                    run_torch(opt->python, opt->script,
                              which + (opt->torch_dtype == "bf16" ? " --autocast-bf16" : ""),
                              threads, opt->warmup, opt->steps);
                row["torch_tokens_per_s"] = t["tokens_per_s"];
                row["torch_step_s"] = t["step_s_median"];
                row["ratio_vs_torch"] = ours.tokens_per_s / t["tokens_per_s"].get<double>();
                row["torch_blas"] = t.value("blas", "");
                row["torch_version"] = t.value("torch_version", "");
                row["torch_dtype"] = t.value("dtype", "fp32");
            }
            if (opt->json_out.table()) {
                std::printf(
                    "%-6s | crucible (%s) %8.0f tok/s %6.1f GFLOP/s (%.0f%% of the sgemm "
                    "peak)",
                    name.c_str(), opt->dtype.c_str(), ours.tokens_per_s, ours.gflops,
                    100 * ours.gflops / peak);
                if (!opt->no_torch) {
                    std::printf(" | torch (%s) %8.0f tok/s | ratio %.2fx",
                                row["torch_dtype"].get<std::string>().c_str(),
                                row["torch_tokens_per_s"].get<double>(),
                                row["ratio_vs_torch"].get<double>());
                }
                std::printf("\n");
                std::fflush(stdout);
            }
            return row;
        };
        if (!opt->model.empty()) {
            const auto t0 = Clock::now();
            std::unique_ptr<Model> model = load_model(opt->model);
            const double load_s = seconds_since(t0);
            const int T = std::min(opt->seq, model->config().max_position_embeddings);
            const bool peak_reset = reset_peak_memory();  // the sgemm buffers are gone
            const MemoryUse loaded = memory_use();
            const std::string name = std::filesystem::path(opt->model).filename().string();
            if (opt->json_out.table()) {
                std::printf(
                    "%s: %zu parameters, loaded in %.1f s (not in the figures), resident "
                    "%.0f MiB; %d x %d tokens per step\n",
                    opt->model.c_str(), model->num_params(), load_s, loaded.rss_mib, opt->batch, T);
            }
            json row = measure(
                name, *model, opt->batch, T,
                "--model-config " + (std::filesystem::path(opt->model) / "config.json").string() +
                    " --batch " + std::to_string(opt->batch) + " --seq " + std::to_string(T));
            const MemoryUse end = memory_use();
            row["model"] = opt->model;
            row["load_s"] = load_s;
            row["resident_mib_after_load"] = loaded.rss_mib;
            // Weights, gradients, AdamW state, activations: the training step's own peak.
            row[peak_reset ? "peak_resident_mib" : "peak_resident_mib_with_sgemm_buffers"] =
                end.peak_mib;
            if (opt->json_out.table()) {
                std::printf(
                    "%s: peak resident %.0f MiB (weights, gradients, AdamW state, "
                    "activations)\n",
                    name.c_str(), end.peak_mib);
            }
            result["model"] = row;
        }
        for (const BenchShape& shape : bench_shapes()) {
            if (!opt->model.empty()) break;
            if (std::find(opt->configs.begin(), opt->configs.end(), shape.name) ==
                opt->configs.end()) {
                continue;
            }
            Model model(shape.config);
            model.init_random(7);
            result[shape.name] = measure(shape.name, model, shape.batch, shape.seq,
                                         std::string("--config ") + shape.name);
        }
        if (!opt->no_torch && opt->json_out.table()) {
            const json& any = opt->model.empty() ? result.value("small", json::object())
                                                 : result.value("model", json::object());
            std::printf("torch BLAS: %s\n", any.value("torch_blas", "?").c_str());
        }
        opt->json_out.write(result);
        return 0;
    };
}

}  // namespace crucible::cli
