#include "eval/episode_generator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "model/checkpoint.h"
#include "rl/task.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::eval {

namespace fs = std::filesystem;

namespace {

class EpisodeGenerator : public Generator {
  public:
    EpisodeGenerator(const std::string& dir, const rl::RlEnvConfig& env, int batch,
                     rl::Generator policy)
        : dir_(dir), env_(env), batch_(std::max(1, batch)), policy_(std::move(policy)) {
        model_ = load_model(dir);
        tok_ = load_text_tokenizer(dir);
        if (tok_.vocab_size > model_->config().vocab_size)
            throw Error(dir + ": the tokenizer has " + std::to_string(tok_.vocab_size) +
                        " ids but config.json's vocab_size is " +
                        std::to_string(model_->config().vocab_size));
    }

    std::string name() const override { return fs::absolute(dir_).lexically_normal().string(); }

    void generate(const std::vector<EvalItem>& items, const std::vector<SampleJob>& jobs,
                  const SamplingOptions& sampling,
                  const std::function<bool(const SampleJob&, GeneratedSample)>& done) override {
        const rl::EpisodeSource source{model_.get(), policy_};
        const rl::EpisodeLimits limits = rl::episode_limits(env_, sampling.max_tokens);
        for (size_t b = 0; b < jobs.size(); b += static_cast<size_t>(batch_)) {
            const size_t e = std::min(jobs.size(), b + static_cast<size_t>(batch_));
            // One group per sample: its first turn draws with the job's seed alone.
            std::vector<env::Item> env_items(e - b);
            std::vector<std::shared_ptr<std::string>> scored(e - b);
            std::vector<rl::EpisodeGroup> groups(e - b);
            for (size_t j = b; j < e; ++j) {
                env::Item& item = env_items[j - b];
                item.id = items[jobs[j].item].id;
                item.prompt = prompt_text(items[jobs[j].item], sampling.chat);
                item.prompt_ids = tok_.encode(item.prompt);
                item.answer = items[jobs[j].item].answer;
                item.index = static_cast<int>(jobs[j].item);
                auto slot = std::make_shared<std::string>();
                scored[j - b] = slot;
                rl::EpisodeGroup& g = groups[j - b];
                g.item = &item;
                // The verdict only records what it is given; the harness scores it with the
                // item's verifier.
                g.envs.push_back(rl::make_environment(env_,
                                                      [slot](const std::string& text) {
                                                          *slot = text;
                                                          return env::Verdict{};
                                                      },
                                                      {}));
                g.params.temperature = static_cast<float>(sampling.temperature);
                g.params.top_p = static_cast<float>(sampling.top_p);
                g.params.seed = jobs[j].seed;
                g.params.stop_ids = {tok_.eos};
            }
            const auto t0 = std::chrono::steady_clock::now();
            const auto episodes = rl::run_episodes(groups, source, tok_, limits);
            const double wall =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            for (size_t j = b; j < e; ++j) {
                const rl::Episode& ep = episodes[j - b].at(0);
                GeneratedSample g;
                g.prompt = env_items[j - b].prompt;
                g.completion = rl::completion_text(tok_, ep.completion);
                g.prompt_tokens = static_cast<int64_t>(env_items[j - b].prompt_ids.size());
                g.completion_tokens = static_cast<int64_t>(ep.completion.size());
                g.finish_reason = ep.truncated ? "length" : ep.end.empty() ? "stop" : ep.end;
                g.latency_s = wall;
                g.error = ep.error;
                g.info = {{"turns", ep.turns},
                          {"tool_calls", ep.tool_calls},
                          {"malformed_calls", ep.malformed_calls},
                          {"tool_errors", ep.tool_errors},
                          {"end", ep.end},
                          {"truncated", ep.truncated}};
                if (const nlohmann::json env = ep.env->summary(); !env.is_null())
                    g.info["env"] = env;
                if (g.error.empty()) {
                    try {
                        ep.env->score();
                        g.scored = *scored[j - b];
                    } catch (const std::exception& ex) {
                        g.error = std::string("env: ") + ex.what();
                    }
                }
                if (!done(jobs[j], std::move(g))) return;
            }
        }
    }

  private:
    std::string prompt_text(const EvalItem& item, bool chat) const {
        if (item.is_chat()) {
            std::vector<ChatMessage> msgs;
            for (const auto& [role, content] : item.messages) msgs.push_back({role, content});
            return render_chat_text(tok_.chat, msgs, true);
        }
        if (chat) return render_chat_text(tok_.chat, {{"user", item.prompt}}, true);
        return item.prompt;
    }

    std::string dir_;
    rl::RlEnvConfig env_;
    int batch_;
    rl::Generator policy_;
    std::unique_ptr<Model> model_;
    TextTokenizer tok_;
};

}  // namespace

std::unique_ptr<Generator> make_episode_generator(const std::string& model_dir,
                                                  const rl::RlEnvConfig& env, int batch,
                                                  rl::Generator policy) {
    return std::make_unique<EpisodeGenerator>(model_dir, env, batch, std::move(policy));
}

}  // namespace crucible::eval
