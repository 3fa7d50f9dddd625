// `crucible generate`: completions for a JSONL file of prompts with the batched engine.
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "run/run_folder.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::cli {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The prompt of one input line: `prompt` (text), `messages` (chat) or `prompt_ids`.
// Text in and out of token ids: the folder's tokenizer.json, or the byte tokenizer for
// folders without one.
struct TextCodec {
    std::function<std::vector<int32_t>(const std::string&)> encode;
    std::function<std::string(const std::vector<int32_t>&)> decode;
};

TextCodec codec_for(const fs::path& dir, int model_vocab) {
    if (!fs::exists(dir / "tokenizer.json")) {
        auto tok = std::make_shared<ByteTokenizer>();
        return {[tok](const std::string& t) { return tok->encode(t); },
                [tok](const std::vector<int32_t>& ids) {
                    std::vector<int32_t> safe;
                    for (int32_t id : ids)
                        safe.push_back(id < ByteTokenizer::kVocabSize ? id : '?');
                    return tok->decode(safe);
                }};
    }
    auto tok = std::make_shared<BpeTokenizer>(dir / "tokenizer.json");
    if (tok->vocab_size() > model_vocab) {
        throw Error((dir / "tokenizer.json").string() + ": the tokenizer has " +
                    std::to_string(tok->vocab_size()) + " ids but config.json's vocab_size is " +
                    std::to_string(model_vocab));
    }
    return {[tok](const std::string& t) { return tok->encode(t); },
            [tok](const std::vector<int32_t>& ids) { return tok->decode(ids); }};
}

std::vector<int32_t> prompt_of(const json& line, const std::string& where, const TextCodec& tok,
                               ChatFormat chat, int vocab) {
    if (line.contains("prompt_ids")) {
        const json& ids = line["prompt_ids"];
        if (!ids.is_array()) throw Error(where + ": field 'prompt_ids' must be an array of ids");
        std::vector<int32_t> out;
        for (const json& id : ids) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab) {
                throw Error(where + ": field 'prompt_ids' holds " + id.dump() +
                            ", not a token id in [0, " + std::to_string(vocab) + ")");
            }
            out.push_back(id.get<int32_t>());
        }
        return out;
    }
    if (line.contains("messages")) {
        const json& msgs = line["messages"];
        if (!msgs.is_array()) throw Error(where + ": field 'messages' must be an array");
        std::vector<ChatMessage> chat_messages;
        for (const json& m : msgs) {
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
                !m.contains("content") || !m["content"].is_string()) {
                throw Error(where + ": each message needs string 'role' and 'content'");
            }
            chat_messages.push_back(
                {m["role"].get<std::string>(), m["content"].get<std::string>()});
        }
        return tok.encode(render_chat_text(chat, chat_messages, true));
    }
    if (line.contains("prompt")) {
        if (!line["prompt"].is_string()) throw Error(where + ": field 'prompt' must be a string");
        return tok.encode(line["prompt"].get<std::string>());
    }
    throw Error(where + ": needs 'prompt', 'messages' or 'prompt_ids'");
}

// Stop ids from generation_config.json's eos_token_id (a number or a list).
std::vector<int32_t> eos_ids_of(const fs::path& dir, const ModelConfig& c) {
    std::vector<int32_t> ids = generation_eos_ids(dir);
    if (ids.empty() && c.eos_token_id >= 0) ids.push_back(c.eos_token_id);
    return ids;
}

// The fields generate writes into each output line (over the input's fields of that name).
const std::set<std::string> kWrittenFields = {"input_line",     "sample",        "completion",
                                              "completion_ids", "finish_reason", "logprobs",
                                              "top_logprobs"};

// The requests an earlier run already wrote to `out` in full (all n samples), by input line.
// The file keeps exactly those: a request interrupted between its samples, or a line cut by
// a kill, is dropped (the file is rewritten atomically) and generated again. Throws Error for
// a file that crucible generate did not write, or wrote for another input or --n.
std::set<int> resume_output(const fs::path& out, const std::vector<json>& inputs,
                            const std::vector<int>& input_lines, int n) {
    std::set<int> done;
    if (!fs::exists(out)) return done;
    const std::string text = read_file(out);
    std::map<int, int> index;  // input line -> request
    for (size_t r = 0; r < input_lines.size(); r++) index[input_lines[r]] = (int)r;
    std::map<int, std::vector<std::string>> lines;  // input line -> its output lines
    std::map<int, std::set<int>> samples;           // ... and their sample numbers
    size_t at = 0;
    int number = 0;
    while (at < text.size()) {
        const size_t nl = text.find('\n', at);
        if (nl == std::string::npos) break;  // a line cut by a kill
        const std::string line = text.substr(at, nl - at);
        at = nl + 1;
        number++;
        const std::string where = out.string() + ":" + std::to_string(number);
        const json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("input_line") ||
            !j["input_line"].is_number_integer() || !j.contains("sample") ||
            !j["sample"].is_number_integer()) {
            throw Error(where +
                        ": not a line crucible generate wrote (it needs input_line and sample); "
                        "--out must be a new file or one this command wrote");
        }
        // Read as 64-bit: a number past int's range must not wrap into a valid one.
        const int64_t input_line64 = j["input_line"].get<int64_t>();
        const int64_t sample = j["sample"].get<int64_t>();
        const int input_line =
            input_line64 < 1 || input_line64 > INT32_MAX ? 0 : static_cast<int>(input_line64);
        const auto r = index.find(input_line);
        if (r == index.end() || sample < 0 || sample >= n) {
            throw Error(where + ": input line " + std::to_string(input_line64) + " sample " +
                        j["sample"].dump() + " is not in this input with --n " + std::to_string(n) +
                        ": resume with the same --in and --n, or choose "
                        "another --out");
        }
        for (const auto& [key, value] : inputs[r->second].items()) {
            if (kWrittenFields.count(key)) continue;  // the input's own value was replaced
            if (!j.contains(key) || j[key] != value) {
                throw Error(where + ": field '" + key + "' differs from input line " +
                            std::to_string(input_line) +
                            ": this --out was written for another input; choose another --out");
            }
        }
        lines[input_line].push_back(line);
        samples[input_line].insert(static_cast<int>(sample));
    }
    std::string kept;
    for (const auto& [input_line, ls] : lines) {
        if ((int)samples[input_line].size() != n || (int)ls.size() != n) continue;
        done.insert(input_line);
        for (const std::string& l : ls) kept += l + "\n";
    }
    if (kept.size() != text.size()) write_file_durable(out, kept);
    return done;
}

}  // namespace

std::function<int()> add_generate(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("generate", "Complete prompts from a JSONL file (batched)");
    struct Options {
        std::string model, in, out, chat_format, dtype = "float32";
        int n = 1, max_tokens = 64, top_k = 0, logprobs = -1, max_batch_tokens = 512;
        float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
        uint64_t seed = 1;
        std::vector<std::string> stop;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("--model", o->model, "model folder (config.json + model.safetensors)")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--data,--in", o->in,
                    "JSONL: prompt | messages | prompt_ids, other fields copied (--in: the old "
                    "name, kept for one release)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--out", o->out,
                    "JSONL output, one line per sample, written as each prompt completes; "
                    "an existing one is resumed")
        ->required();
    cmd->add_option("--n", o->n, "samples per prompt (they share the prompt's KV cache)");
    cmd->add_option("--temperature", o->temperature, "0 is greedy");
    cmd->add_option("--top-k", o->top_k);
    cmd->add_option("--top-p", o->top_p);
    cmd->add_option("--min-p", o->min_p);
    cmd->add_option("--max-tokens", o->max_tokens);
    cmd->add_option("--seed", o->seed, "sample i of input line j uses a stream derived from it");
    cmd->add_option("--stop", o->stop, "stop strings (repeatable)");
    cmd->add_option("--logprobs", o->logprobs,
                    "logprobs of sampled tokens and N alternatives (-1: none)");
    cmd->add_option("--chat-format", o->chat_format, "chatml, qwen2, qwen2.5 or llama3");
    cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "rows per forward pass");
    cmd->add_option("--dtype", o->dtype, "the matmuls' precision: float32, bfloat16 or q8_0")
        ->check(CLI::IsMember({"float32", "bfloat16", "q8_0"}));
    return [o]() {
        o->model = resolve_model_dir(o->model).string();  // a run folder: its latest checkpoint
        // Generation never trains: in bf16 or q8_0 the matrices are loaded in that alone.
        auto model = load_model(o->model, parse_matmul_dtype(o->dtype, "--dtype"));
        const TextCodec tok = codec_for(o->model, model->config().vocab_size);
        const ChatFormat chat = o->chat_format.empty() ? folder_chat_format(o->model)
                                                       : parse_chat_format(o->chat_format);
        const std::vector<int32_t> eos = eos_ids_of(o->model, model->config());
        std::vector<json> lines;
        std::vector<int> input_lines;  // 1-based line of each request in --in
        std::vector<GenerationRequest> reqs;
        for_each_jsonl_line(o->in, "", [&](const JsonlLine& line) {
            const std::string where = line.where();
            json j = json::parse(line.text, nullptr, false);
            if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
            GenerationRequest r;
            r.prompt = prompt_of(j, where, tok, chat, model->config().vocab_size);
            r.n = o->n;
            r.params.temperature = o->temperature;
            r.params.top_k = o->top_k;
            r.params.top_p = o->top_p;
            r.params.min_p = o->min_p;
            r.params.max_tokens = o->max_tokens;
            r.params.seed = Rng::mix(o->seed, static_cast<uint64_t>(reqs.size()));
            r.params.stop_ids = eos;
            r.params.stop_strings = o->stop;
            r.params.logprobs = o->logprobs;
            reqs.push_back(std::move(r));
            lines.push_back(std::move(j));
            input_lines.push_back(line.number);
        });
        // The output is opened before any work: a bad path fails now, and an earlier run's
        // complete prompts are skipped (their seeds are per input line, so the rest come out
        // as an uninterrupted run would have written them).
        const std::set<int> done = resume_output(o->out, lines, input_lines, o->n);
        if (!fs::exists(o->out)) write_file_durable(o->out, "");
        std::vector<size_t> todo;  // request indices still to generate
        for (size_t r = 0; r < reqs.size(); r++)
            if (!done.count(input_lines[r])) todo.push_back(r);
        if (!done.empty()) {
            std::fprintf(stderr, "generate: %s already holds %zu of %zu prompts; generating %zu\n",
                         o->out.c_str(), done.size(), reqs.size(), todo.size());
        }
        std::vector<GenerationRequest> pending;
        for (size_t r : todo) pending.push_back(reqs[r]);
        EngineOptions eo;
        eo.max_batch_tokens = o->max_batch_tokens;
        eo.detokenize = tok.decode;
        Engine engine(*model, eo);
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t total = (int64_t)pending.size() * o->n;
        const bool tty = isatty(STDERR_FILENO);
        auto progress = [&](int64_t done, int64_t tokens) {
            const double s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (tty || done == total) {
                std::fprintf(stderr,
                             "\rgenerate: %lld/%lld sequences | %lld tokens | %.0f tok/s   %s",
                             (long long)done, (long long)total, (long long)tokens,
                             tokens / std::max(s, 1e-9), done == total ? "\n" : "");
            }
        };
        // The lines of request `k` (of `pending`) in one append: a prompt's samples are in the
        // file all together or not at all.
        auto write_request = [&](size_t k, const std::vector<GeneratedSequence>& samples) {
            const size_t r = todo[k];
            std::string out_text;
            for (size_t i = 0; i < samples.size(); i++) {
                const GeneratedSequence& g = samples[i];
                json line = lines[r];
                std::vector<int32_t> shown = g.tokens;
                if (g.finish_reason == "stop" && !shown.empty() &&
                    std::find(eos.begin(), eos.end(), shown.back()) != eos.end()) {
                    shown.pop_back();  // the end-of-sequence token is not text
                }
                std::string completion = eo.detokenize(shown);
                for (const std::string& stop : o->stop) {
                    const size_t at = completion.find(stop);
                    if (!stop.empty() && at != std::string::npos) completion.resize(at);
                }
                line["input_line"] = input_lines[r];
                line["sample"] = i;
                line["completion"] = completion;
                line["completion_ids"] = g.tokens;
                line["finish_reason"] = g.finish_reason;
                if (o->logprobs >= 0) {
                    line["logprobs"] = g.logprobs;
                    if (o->logprobs > 0) {
                        json top = json::array();
                        for (const auto& alts : g.top_logprobs) {
                            json a = json::array();
                            for (const TokenLogprob& t : alts)
                                a.push_back({{"id", t.token}, {"logprob", t.logprob}});
                            top.push_back(a);
                        }
                        line["top_logprobs"] = top;
                    }
                }
                // Byte-level completions may end inside a UTF-8 sequence: replace, never throw.
                out_text += line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
            }
            append_file_checked(o->out, out_text);
        };
        // Without logprobs each prompt is written as soon as its samples finish; logprobs come
        // from the re-scoring pass after the last sample, so those lines are written then.
        const bool stream = o->logprobs < 0;
        const auto results = engine.generate(
            pending, progress, [&](size_t k, const std::vector<GeneratedSequence>& samples) {
                if (stream) write_request(k, samples);
            });
        if (!stream)
            for (size_t k = 0; k < results.size(); k++) write_request(k, results[k]);
        return 0;
    };
}

}  // namespace crucible::cli
