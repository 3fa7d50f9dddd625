// `crucible generate`: completions for a JSONL file of prompts with the batched engine.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

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

}  // namespace

std::function<int()> add_generate(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("generate", "Complete prompts from a JSONL file (batched)");
    struct Options {
        std::string model, in, out, chat_format;
        int n = 1, max_tokens = 64, top_k = 0, logprobs = -1, max_batch_tokens = 512;
        float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
        uint64_t seed = 0;
        std::vector<std::string> stop;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("--model", o->model, "model folder (config.json + model.safetensors)")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--in", o->in, "JSONL: prompt | messages | prompt_ids, other fields copied")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--out", o->out, "JSONL output, one line per sample")->required();
    cmd->add_option("--n", o->n, "samples per prompt (they share the prompt's KV cache)");
    cmd->add_option("--temperature", o->temperature, "0 is greedy");
    cmd->add_option("--top-k", o->top_k);
    cmd->add_option("--top-p", o->top_p);
    cmd->add_option("--min-p", o->min_p);
    cmd->add_option("--max-tokens", o->max_tokens);
    cmd->add_option("--seed", o->seed, "sample i of input line j uses a stream derived from it");
    cmd->add_option("--stop", o->stop, "stop strings (repeatable)");
    cmd->add_option("--logprobs", o->logprobs, "logprobs of sampled tokens and N alternatives");
    cmd->add_option("--chat-format", o->chat_format, "chatml, qwen2, qwen2.5 or llama3");
    cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "rows per forward pass");
    return [o]() {
        o->model = resolve_model_dir(o->model).string();  // a run folder: its latest checkpoint
        auto model = load_model(o->model);
        const TextCodec tok = codec_for(o->model, model->config().vocab_size);
        const ChatFormat chat = o->chat_format.empty() ? folder_chat_format(o->model)
                                                       : parse_chat_format(o->chat_format);
        const std::vector<int32_t> eos = eos_ids_of(o->model, model->config());
        std::vector<json> lines;
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
        });
        EngineOptions eo;
        eo.max_batch_tokens = o->max_batch_tokens;
        eo.detokenize = tok.decode;
        Engine engine(*model, eo);
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t total = (int64_t)reqs.size() * o->n;
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
        const auto results = engine.generate(reqs, progress);
        std::string out_text;
        for (size_t r = 0; r < results.size(); r++) {
            for (size_t i = 0; i < results[r].size(); i++) {
                const GeneratedSequence& g = results[r][i];
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
        }
        write_file_durable(o->out, out_text);
        return 0;
    };
}

}  // namespace crucible::cli
