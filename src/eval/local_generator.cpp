#include "eval/local_generator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The same folder conventions as `crucible generate`: tokenizer.json or bytes,
// tokenizer_config.json's chat template, generation_config.json's eos ids.
class LocalGenerator : public Generator {
  public:
    LocalGenerator(const std::string& dir, int batch, int max_batch_tokens,
                   const std::string& chat_format)
        : dir_(dir), batch_(std::max(1, batch)) {
        model_ = load_model(dir);
        const int vocab = model_->config().vocab_size;
        if (fs::exists(dir_ / "tokenizer.json")) {
            bpe_ = std::make_unique<BpeTokenizer>(dir_ / "tokenizer.json");
            if (bpe_->vocab_size() > vocab)
                throw Error((dir_ / "tokenizer.json").string() + ": the tokenizer has " +
                            std::to_string(bpe_->vocab_size()) +
                            " ids but config.json's vocab_size is " + std::to_string(vocab));
        }
        chat_ = chat_format.empty() ? folder_chat_format(dir_) : parse_chat_format(chat_format);
        eos_ = eos_ids(model_->config());
        EngineOptions eo;
        eo.max_batch_tokens = max_batch_tokens;
        eo.detokenize = [this](const std::vector<int32_t>& ids) { return decode(ids); };
        engine_ = std::make_unique<Engine>(*model_, eo);
    }

    std::string name() const override { return fs::absolute(dir_).lexically_normal().string(); }

    void generate(const std::vector<EvalItem>& items, const std::vector<SampleJob>& jobs,
                  const SamplingOptions& sampling,
                  const std::function<bool(const SampleJob&, GeneratedSample)>& done) override {
        for (size_t b = 0; b < jobs.size(); b += static_cast<size_t>(batch_)) {
            const size_t e = std::min(jobs.size(), b + static_cast<size_t>(batch_));
            // Consecutive jobs of one item form one request whose samples share the prompt's
            // prefill; each sample keeps its own seed (GenerationRequest::sample_seeds), so
            // what it draws does not depend on the grouping.
            std::vector<GenerationRequest> reqs;
            std::vector<std::string> prompts;
            std::vector<size_t> first_job;  // per request
            for (size_t j = b; j < e; ++j) {
                if (!reqs.empty() && jobs[j].item == jobs[first_job.back()].item) {
                    reqs.back().n++;
                    reqs.back().sample_seeds.push_back(jobs[j].seed);
                    continue;
                }
                prompts.push_back(prompt_text(items[jobs[j].item], sampling.chat));
                GenerationRequest r;
                r.prompt = encode(prompts.back());
                r.n = 1;
                r.sample_seeds = {jobs[j].seed};
                r.params.temperature = static_cast<float>(sampling.temperature);
                r.params.top_p = static_cast<float>(sampling.top_p);
                r.params.max_tokens = sampling.max_tokens;
                r.params.stop_ids = eos_;
                reqs.push_back(std::move(r));
                first_job.push_back(j);
            }
            const auto t0 = std::chrono::steady_clock::now();
            const auto results = engine_->generate(reqs);
            // A batch finishes together: each sample's latency is the batch's wall time.
            const double wall =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            for (size_t r = 0; r < reqs.size(); ++r) {
                for (int i = 0; i < reqs[r].n; ++i) {
                    const GeneratedSequence& seq = results[r][static_cast<size_t>(i)];
                    std::vector<int32_t> shown = seq.tokens;
                    if (seq.finish_reason == "stop" && !shown.empty() &&
                        std::find(eos_.begin(), eos_.end(), shown.back()) != eos_.end())
                        shown.pop_back();  // the end-of-sequence token is not text
                    GeneratedSample g;
                    g.prompt = prompts[r];
                    g.completion = decode(shown);
                    g.prompt_tokens = static_cast<int64_t>(reqs[r].prompt.size());
                    g.completion_tokens = static_cast<int64_t>(seq.tokens.size());
                    g.finish_reason = seq.finish_reason;
                    g.latency_s = wall;
                    if (!done(jobs[first_job[r] + static_cast<size_t>(i)], std::move(g))) return;
                }
            }
        }
    }

  private:
    std::string prompt_text(const EvalItem& item, bool chat) const {
        if (item.is_chat()) {
            std::vector<ChatMessage> msgs;
            for (const auto& [role, content] : item.messages) msgs.push_back({role, content});
            return render_chat_text(chat_, msgs, true);
        }
        if (chat) return render_chat_text(chat_, {{"user", item.prompt}}, true);
        return item.prompt;
    }
    std::vector<int32_t> encode(const std::string& text) const {
        return bpe_ ? bpe_->encode(text) : bytes_.encode(text);
    }
    std::string decode(const std::vector<int32_t>& ids) const {
        if (bpe_) return bpe_->decode(ids);
        std::vector<int32_t> safe;
        for (int32_t id : ids) safe.push_back(id < ByteTokenizer::kVocabSize ? id : '?');
        return bytes_.decode(safe);
    }
    std::vector<int32_t> eos_ids(const ModelConfig& c) const {
        std::vector<int32_t> ids = generation_eos_ids(dir_);
        if (ids.empty() && c.eos_token_id >= 0) ids.push_back(c.eos_token_id);
        return ids;
    }

    fs::path dir_;
    int batch_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<BpeTokenizer> bpe_;
    ByteTokenizer bytes_;
    ChatFormat chat_ = ChatFormat::chatml;
    std::vector<int32_t> eos_;
    std::unique_ptr<Engine> engine_;
};

}  // namespace

std::unique_ptr<Generator> make_local_generator(const std::string& model_dir, int batch,
                                                int max_batch_tokens,
                                                const std::string& chat_format) {
    return std::make_unique<LocalGenerator>(model_dir, batch, max_batch_tokens, chat_format);
}

}  // namespace crucible::eval
