// `crucible bench generate`: engine throughput — decode at several batch sizes, prefill, the
// gain from prefix sharing on a GRPO-shaped load — next to the memory-bandwidth bound of
// single-stream decode (weight bytes per token / memcpy bandwidth, measured in the same run).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/bench_shapes.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::cli {

using nlohmann::json;

namespace {

// Best-of-3 memcpy bandwidth over a buffer far larger than the caches, in bytes/s.
double memcpy_bandwidth() {
    const size_t n = size_t(256) << 20;
    std::vector<char> a(n, 1), b(n, 0);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        const auto t0 = Clock::now();
        std::memcpy(b.data(), a.data(), n);
        best = std::max(best, 2.0 * n / seconds_since(t0));  // read + write
    }
    return best;
}

std::vector<int32_t> random_prompt(Rng& rng, int len, int vocab) {
    std::vector<int32_t> p(len);
    for (int32_t& t : p) t = static_cast<int32_t>(rng.below(vocab));
    return p;
}

// Decode tokens per second for `requests`, best of `reps` runs. The prompts' prefill (and the
// first token it yields) is timed separately with max_tokens = 1 and taken out, so the figure
// is the decode phase alone. One untimed run first: the first generate() on an engine also
// faults in its KV cache, which once made the prefill-only run outlast the whole one.
double decode_throughput(Engine& engine, const std::vector<GenerationRequest>& requests, int reps) {
    std::vector<GenerationRequest> first_only = requests;
    for (auto& r : first_only) r.params.max_tokens = 1;
    engine.generate(first_only);
    double best = 0;
    for (int r = 0; r < reps; r++) {
        auto t0 = Clock::now();
        engine.generate(first_only);
        const double t_prefill = seconds_since(t0);
        const int64_t first_tokens = engine.decode_tokens();
        t0 = Clock::now();
        engine.generate(requests);
        const double t_all = seconds_since(t0);
        const int64_t decoded = engine.decode_tokens() - first_tokens;
        if (t_all > t_prefill) best = std::max(best, decoded / (t_all - t_prefill));
    }
    return best;
}

struct GenerateBenchOptions {
    JsonOutput json_out;
    std::vector<std::string> configs{"small", "medium"};
    std::string model;  // a model folder instead of the built-in shapes
    std::vector<int> batches{1, 8, 32, 128};
    int new_tokens = 32;
    int prompt_tokens = 32;
    bool decode_only = false;
    std::string save_model;
    std::vector<std::string> dtypes{"float32"};
    int rounds = 3;
};

// Single-stream bound: every decode step reads all weights once (2 bytes each in bf16, 34 per 32
// in Q8_0).
double bandwidth_bound(const Model& model, const std::string& dtype, double bw) {
    const double bytes_per_weight = dtype == "bfloat16" ? 2.0 : dtype == "q8_0" ? 34.0 / 32 : 4.0;
    return bw / (bytes_per_weight * model.num_params());
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Decode at each batch size in every dtype. With several dtypes they take turns, round after
// round, on the same requests: on a shared machine the load drifts over seconds, so a ratio of
// two runs far apart measures the drift as much as the kernels. Each dtype's figure is its best
// round; the ratio against the first dtype is the median of the rounds' ratios (each round's
// pair ran back to back).
json measure_decode(const char* name, Model& model, const GenerateBenchOptions& o, double bw,
                    std::map<std::string, json>& rows) {
    const int vocab = model.config().vocab_size;
    Rng rng(1);
    json ratios = json::object();
    std::map<std::string, double> batch1;
    const size_t D = o.dtypes.size();
    for (int b : o.batches) {
        std::vector<GenerationRequest> reqs(b);
        for (auto& r : reqs) {
            r.prompt = random_prompt(rng, o.prompt_tokens, vocab);
            r.params.temperature = 0.0f;
            r.params.max_tokens = o.new_tokens;
        }
        EngineOptions eo;
        eo.max_batch_seqs = std::max(b, 1);
        eo.max_batch_tokens = std::max(512, b);
        // One run per round when comparing; alone, the best of two at small batches as before.
        const int rounds = D > 1 ? o.rounds : 1, reps = D > 1 ? 1 : (b <= 8 ? 2 : 1);
        std::vector<double> best(D, 0.0);
        std::vector<std::vector<double>> round_ratio(D);
        for (int round = 0; round < rounds; round++) {
            std::vector<double> tps(D);
            for (size_t d = 0; d < D; d++) {
                model.set_matmul_dtype(parse_matmul_dtype(o.dtypes[d], "--dtype"));
                Engine engine(model, eo);
                tps[d] = decode_throughput(engine, reqs, reps);
                best[d] = std::max(best[d], tps[d]);
            }
            for (size_t d = 1; d < D; d++) round_ratio[d].push_back(tps[d] / tps[0]);
        }
        for (size_t d = 0; d < D; d++) {
            const std::string& dt = o.dtypes[d];
            rows[dt]["decode_tokens_per_s_batch_" + std::to_string(b)] = best[d];
            if (b == 1) batch1[dt] = best[d];
            const double ratio = d > 0 ? median(round_ratio[d]) : 1.0;
            if (d > 0) {
                ratios[dt + "_over_" + o.dtypes[0]]["batch_" + std::to_string(b)] = {
                    {"median_of_rounds", ratio}, {"rounds", round_ratio[d]}};
            }
            if (!o.json_out.table()) continue;
            std::printf("%-6s | %-8s | batch %4d | %9.1f decode tok/s", name, dt.c_str(), b,
                        best[d]);
            if (b == 1) {
                const double bound = bandwidth_bound(model, dt, bw);
                std::printf(" | %.2fx of the bandwidth bound (%.1f tok/s)", best[d] / bound, bound);
            }
            if (b > 1 && batch1[dt] > 0) std::printf(" | %.1fx batch 1", best[d] / batch1[dt]);
            if (d > 0) {
                std::printf(" | %.2fx %s (median of %d back-to-back rounds)", ratio,
                            o.dtypes[0].c_str(), rounds);
            }
            std::printf("\n");
            std::fflush(stdout);
        }
    }
    return ratios;
}

// Prefill and the GRPO-shaped load with and without prefix sharing, in the model's current
// dtype; timed in the process, model load excluded.
void measure_prefill_and_grpo(const char* name, Model& model, const GenerateBenchOptions& o,
                              json& row) {
    const int vocab = model.config().vocab_size;
    const int context = model.config().max_position_embeddings;
    Rng rng(2);
    const std::string dt = to_string(model.matmul_dtype());
    const int prefill_len = std::min(512, context - 1);
    {  // prefill: one 512-token prompt (shorter when the context is), one new token
        GenerationRequest r;
        r.prompt = random_prompt(rng, prefill_len, vocab);
        r.params.temperature = 0.0f;
        r.params.max_tokens = 1;
        EngineOptions eo;
        eo.max_batch_tokens = 512;
        Engine engine(model, eo);
        double best = 0;
        for (int rep = 0; rep < 2; rep++) {
            const auto t0 = Clock::now();
            engine.generate({r});
            best = std::max(best, engine.prefill_tokens() / seconds_since(t0));
        }
        row["prefill_tokens_per_s"] = best;
        if (o.json_out.table()) {
            std::printf("%-6s | %-8s | prefill %d tokens | %9.1f tok/s\n", name, dt.c_str(),
                        prefill_len, best);
        }
    }
    {  // GRPO-shaped: 32 prompts x 8 samples, shared prefix vs 256 independent requests
        const int prompts = 32, samples = 8, plen = std::min(128, context - o.new_tokens);
        std::vector<GenerationRequest> shared(prompts), separate;
        for (auto& r : shared) {
            r.prompt = random_prompt(rng, plen, vocab);
            r.params.temperature = 1.0f;
            r.params.max_tokens = o.new_tokens;
            r.n = samples;
            GenerationRequest one = r;
            one.n = 1;
            for (int i = 0; i < samples; i++) {
                one.params.seed = i;
                separate.push_back(one);
            }
        }
        EngineOptions eo;
        eo.max_batch_seqs = prompts * samples;
        Engine engine(model, eo);
        auto t0 = Clock::now();
        engine.generate(shared);
        const double t_shared = seconds_since(t0);
        t0 = Clock::now();
        engine.generate(separate);
        const double t_separate = seconds_since(t0);
        row["grpo_shared_prefix_s"] = t_shared;
        row["grpo_separate_s"] = t_separate;
        row["prefix_sharing_speedup"] = t_separate / t_shared;
        if (o.json_out.table()) {
            std::printf(
                "%-6s | %-8s | 32 prompts x 8 samples (128-token prompts) | shared %.2f s, "
                "separate %.2f s | %.2fx\n",
                name, dt.c_str(), t_shared, t_separate, t_separate / t_shared);
        }
    }
}

// Everything on `model` for every dtype. One dtype: its row (as it always was). Several: a row
// per dtype under "by_dtype" and the decode ratios against the first.
json measure_engine(const char* name, Model& model, const GenerateBenchOptions& o, double bw) {
    const int context = model.config().max_position_embeddings;
    if (o.prompt_tokens + o.new_tokens > context || o.new_tokens + 1 > context) {
        throw Error(std::string(name) + ": --prompt-tokens " + std::to_string(o.prompt_tokens) +
                    " + --new-tokens " + std::to_string(o.new_tokens) +
                    " exceed the model's context of " + std::to_string(context));
    }
    std::map<std::string, json> rows;
    for (size_t d = 0; d < o.dtypes.size(); d++) {
        if (std::find(o.dtypes.begin(), o.dtypes.begin() + d, o.dtypes[d]) !=
            o.dtypes.begin() + d) {
            throw Error("--dtype names " + o.dtypes[d] + " twice");
        }
    }
    for (const std::string& dt : o.dtypes) {
        rows[dt] = {{"dtype", dt},
                    {"bandwidth_bound_tokens_per_s", bandwidth_bound(model, dt, bw)}};
    }
    const json ratios = measure_decode(name, model, o, bw, rows);
    if (!o.decode_only) {
        for (const std::string& dt : o.dtypes) {
            model.set_matmul_dtype(parse_matmul_dtype(dt, "--dtype"));
            measure_prefill_and_grpo(name, model, o, rows[dt]);
        }
    }
    if (o.dtypes.size() == 1) return rows[o.dtypes[0]];
    json row = {{"by_dtype", rows}, {"decode_ratios", ratios}};
    return row;
}

}  // namespace

std::function<int()> add_bench_generate(CLI::App& bench) {
    CLI::App* cmd = bench.add_subcommand(
        "generate", "Engine decode/prefill throughput, prefix sharing, vs the bandwidth bound");
    auto o = std::make_shared<GenerateBenchOptions>();
    add_json_option(cmd, &o->json_out);
    cmd->add_option("--configs", o->configs, "small, medium, qwen2.5-0.5b")->delimiter(',');
    cmd->add_option("--model", o->model,
                    "a model folder (config.json, model.safetensors) instead of the built-in "
                    "shapes; its load is not timed, its peak memory is reported")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--batches", o->batches, "decode batch sizes")->delimiter(',');
    cmd->add_option("--new-tokens", o->new_tokens, "tokens generated per sequence");
    cmd->add_option("--prompt-tokens", o->prompt_tokens, "prompt length for the decode runs");
    cmd->add_flag("--decode-only", o->decode_only, "skip the prefill and GRPO-shaped runs");
    cmd->add_option("--dtype", o->dtypes,
                    "the matmuls' precision: float32, bfloat16 or q8_0; several (comma-separated) "
                    "take turns round after round and print each one's ratio to the first")
        ->delimiter(',')
        ->check(CLI::IsMember({"float32", "bfloat16", "q8_0"}));
    cmd->add_option("--rounds", o->rounds,
                    "with several dtypes: rounds of back-to-back decode runs per batch size")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--save-model", o->save_model,
                    "write each chosen config's model (the benchmarked random weights, byte "
                    "tokenizer files) to DIR/NAME as an HF folder, then exit without measuring");
    return [o]() {
        // The same weights the measurements use, for other engines (bench/llamacpp_bench.py).
        if (!o->save_model.empty()) {
            for (const BenchShape& shape : bench_shapes()) {
                if (std::find(o->configs.begin(), o->configs.end(), shape.name) ==
                    o->configs.end()) {
                    continue;
                }
                Model model(shape.config);
                model.init_random(7);
                const std::filesystem::path dir = std::filesystem::path(o->save_model) / shape.name;
                std::filesystem::create_directories(dir);
                save_model(model, dir);
                ByteTokenizer::save_hf_files(dir, shape.config.max_position_embeddings);
                std::printf("wrote %s\n", dir.string().c_str());
            }
            return 0;
        }
        const double bw = memcpy_bandwidth();
        json result = {{"threads", omp_get_max_threads()}, {"memcpy_gbytes_per_s", bw / 1e9}};
        if (o->json_out.table()) {
            std::printf("threads %d | memcpy bandwidth %.1f GB/s\n", omp_get_max_threads(),
                        bw / 1e9);
        }
        if (!o->model.empty()) {
            const auto t0 = Clock::now();
            std::unique_ptr<Model> model = load_model(o->model);
            const double load_s = seconds_since(t0);
            const std::string name = std::filesystem::path(o->model).filename().string();
            // The bandwidth buffers are gone: the peak from here is the model's and the engine's.
            const bool peak_reset = reset_peak_memory();
            const MemoryUse loaded = memory_use();
            if (o->json_out.table()) {
                std::printf(
                    "%s: %zu parameters, loaded in %.1f s (not in the figures), resident "
                    "%.0f MiB\n",
                    o->model.c_str(), model->num_params(), load_s, loaded.rss_mib);
            }
            json row = measure_engine(name.c_str(), *model, *o, bw);
            const MemoryUse end = memory_use();
            row["model"] = o->model;
            row["params"] = model->num_params();
            row["load_s"] = load_s;
            row["resident_mib_after_load"] = loaded.rss_mib;
            // Without the reset, the peak includes the bandwidth measurement's 512 MiB.
            row[peak_reset ? "peak_resident_mib" : "peak_resident_mib_with_bandwidth_buffers"] =
                end.peak_mib;
            if (o->json_out.table()) {
                std::printf("%s: peak resident %.0f MiB (model, engines, KV pools)%s\n",
                            name.c_str(), end.peak_mib,
                            peak_reset ? "" : " + 512 MiB of bandwidth buffers");
            }
            result["model"] = row;
        }
        for (const BenchShape& shape : bench_shapes()) {
            if (!o->model.empty()) break;
            if (std::find(o->configs.begin(), o->configs.end(), shape.name) == o->configs.end()) {
                continue;
            }
            Model model(shape.config);
            model.init_random(7);
            result[shape.name] = measure_engine(shape.name, model, *o, bw);
        }
        o->json_out.write(result);
        return 0;
    };
}

}  // namespace crucible::cli
