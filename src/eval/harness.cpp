#include "eval/harness.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/rng.h"
#include "eval/math_answer.h"
#include "eval/verifiers.h"
#include "serve/openai_client.h"

namespace crucible::eval {

using nlohmann::json;

uint64_t sample_seed(uint64_t seed, const std::string& id, int sample) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across platforms and runs
    for (unsigned char c : id) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return Rng::mix(Rng::mix(seed, h), static_cast<uint64_t>(sample));
}

std::string scored_text(const std::string& completion, bool strip_think) {
    if (!strip_think) return completion;
    const size_t close = completion.rfind("</think>");
    if (close != std::string::npos) return completion.substr(close + 8);
    // An unfinished reasoning trace has no answer (lm-eval #2682).
    if (completion.find("<think>") != std::string::npos) return {};
    return completion;
}

double score_sample(const EvalItem& item, const std::string& text, std::string* answer) {
    const std::string& kind = item.verifier;
    if (kind == "math" || kind == "numeric") {
        const auto a = extract_math_answer(text);
        *answer = a ? normalize_math(*a) : normalize_math(text);
    } else if (kind == "mc" || kind == "choice") {
        const auto c = extract_choice(text);
        *answer = c ? std::string(1, *c) : std::string();
    } else {
        *answer = normalize_text(text);
    }
    if (answer->size() > 200) answer->clear();  // not an answer: abstains from the vote
    return verify(kind, item.answer, text) ? 1.0 : 0.0;
}

namespace {

// ---- OpenAI-compatible endpoint ---------------------------------------------------------------

class OpenAIGenerator : public Generator {
  public:
    OpenAIGenerator(std::string base_url, std::string model, int concurrency)
        : model_(std::move(model)), concurrency_(std::max(1, concurrency)) {
        ClientOptions o;
        o.base_url = std::move(base_url);
        o.max_concurrency = concurrency_;
        client_ = std::make_unique<OpenAIClient>(o);
    }
    std::string name() const override { return "openai:" + client_->base_url() + "#" + model_; }

    void generate(const std::vector<EvalItem>& items, const std::vector<SampleJob>& jobs,
                  const SamplingOptions& sampling,
                  const std::function<bool(const SampleJob&, GeneratedSample)>& done) override {
        std::atomic<size_t> next{0};
        std::mutex done_mutex;
        bool stop = false;  // guarded by done_mutex
        auto worker = [&] {
            for (size_t j = next++; j < jobs.size(); j = next++) {
                GeneratedSample g = one(items[jobs[j].item], jobs[j], sampling);
                std::lock_guard<std::mutex> lock(done_mutex);
                if (stop) return;
                if (!done(jobs[j], std::move(g))) {
                    stop = true;
                    return;
                }
            }
        };
        std::vector<std::thread> threads;
        const size_t n = std::min<size_t>(static_cast<size_t>(concurrency_), jobs.size());
        for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
        for (auto& t : threads) t.join();
    }

  private:
    GeneratedSample one(const EvalItem& item, const SampleJob& job,
                        const SamplingOptions& sampling) {
        GeneratedSample g;
        const auto t0 = std::chrono::steady_clock::now();
        // Seeds go out as non-negative 63-bit integers (JSON readers differ above that).
        const int64_t seed = static_cast<int64_t>(job.seed >> 1);
        try {
            if (item.is_chat() || sampling.chat) {
                ChatRequest r;
                r.model = model_;
                json shown = json::array();
                if (item.is_chat()) {
                    for (const auto& [role, content] : item.messages) {
                        r.messages.push_back({role, content});
                        shown.push_back({{"role", role}, {"content", content}});
                    }
                } else {
                    r.messages.push_back({"user", item.prompt});
                    shown.push_back({{"role", "user"}, {"content", item.prompt}});
                }
                g.prompt = shown.dump();
                r.max_tokens = sampling.max_tokens;
                r.temperature = sampling.temperature;
                r.top_p = sampling.top_p;
                r.seed = seed;
                const ChatResult res = client_->chat(r);
                take(res.choices, res.usage, &g);
            } else {
                CompletionRequest r;
                r.model = model_;
                r.prompt = item.prompt;
                g.prompt = item.prompt;
                r.max_tokens = sampling.max_tokens;
                r.temperature = sampling.temperature;
                r.top_p = sampling.top_p;
                r.seed = seed;
                const CompletionResult res = client_->complete(r);
                take(res.choices, res.usage, &g);
            }
        } catch (const std::exception& e) {
            g.error = e.what();
        }
        g.latency_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return g;
    }
    static void take(const std::vector<Choice>& choices, const Usage& usage, GeneratedSample* g) {
        if (choices.empty()) {
            g->error = "the endpoint returned no choices";
            return;
        }
        g->completion = choices[0].text;
        g->finish_reason = choices[0].finish_reason;
        g->prompt_tokens = usage.prompt_tokens;
        g->completion_tokens = usage.completion_tokens;
    }

    std::string model_;
    int concurrency_;
    std::unique_ptr<OpenAIClient> client_;
};

}  // namespace

std::unique_ptr<Generator> make_openai_generator(const std::string& spec, int concurrency) {
    const std::string prefix = "openai:";
    const size_t hash = spec.rfind('#');
    if (spec.rfind(prefix, 0) != 0 || hash == std::string::npos || hash <= prefix.size() ||
        hash + 1 >= spec.size())
        throw Error("--model '" + spec +
                    "': an endpoint is written openai:BASE_URL#MODEL, e.g. "
                    "openai:http://127.0.0.1:8000/v1#qwen");
    return std::make_unique<OpenAIGenerator>(spec.substr(prefix.size(), hash - prefix.size()),
                                             spec.substr(hash + 1), concurrency);
}

EvalSummary run_eval(const std::vector<EvalItem>& items, Generator& generator,
                     const EvalOptions& options) {
    if (options.k < 1)
        throw Error("--n must be at least 1 (got " + std::to_string(options.k) + ")");
    SampleStore store(options.run_dir);
    char buf[64];
    auto num = [&buf](double v) {
        std::snprintf(buf, sizeof buf, "%.17g", v);
        return std::string(buf);
    };
    const SamplingOptions& s = options.sampling;
    store.check_settings({{"model", generator.name()},
                          {"temperature", num(s.temperature)},
                          {"top_p", num(s.top_p)},
                          {"max_tokens", std::to_string(s.max_tokens)},
                          {"seed", std::to_string(s.seed)},
                          {"chat", s.chat ? "true" : "false"},
                          {"strip_think", options.strip_think ? "true" : "false"}});
    store.set_setting("k", std::to_string(options.k));
    store.set_setting("data", options.data);
    store.put_items(items);

    const auto done = store.done();
    std::vector<SampleJob> jobs;
    EvalSummary summary;
    for (size_t i = 0; i < items.size(); ++i) {
        std::set<int> have;
        if (auto it = done.find(items[i].id); it != done.end())
            have.insert(it->second.begin(), it->second.end());
        for (int j = 0; j < options.k; ++j) {
            if (have.count(j)) {
                ++summary.skipped;
                continue;
            }
            jobs.push_back({i, j, sample_seed(s.seed, items[i].id, j)});
        }
    }
    const int64_t total = static_cast<int64_t>(jobs.size());
    std::string first_error;
    if (options.on_progress) options.on_progress(0, total);
    generator.generate(items, jobs, s, [&](const SampleJob& job, GeneratedSample g) {
        const EvalItem& item = items[job.item];
        SampleRecord r;
        r.item_id = item.id;
        r.sample = job.sample;
        r.seed = job.seed;
        r.prompt = std::move(g.prompt);
        r.completion = std::move(g.completion);
        r.prompt_tokens = g.prompt_tokens;
        r.completion_tokens = g.completion_tokens;
        r.finish_reason = std::move(g.finish_reason);
        r.latency_s = g.latency_s;
        r.error = std::move(g.error);
        if (r.error.empty()) {
            try {
                r.score =
                    score_sample(item, scored_text(r.completion, options.strip_think), &r.answer);
            } catch (const Error& e) {
                r.error = std::string("scoring: ") + e.what();
            }
        }
        if (!r.error.empty()) {
            ++summary.failed;
            if (first_error.empty()) first_error = r.error;
        }
        store.put(r);
        ++summary.generated;
        if (options.on_progress) options.on_progress(summary.generated, total);
        return !(summary.failed >= kMaxFailuresBeforeSuccess &&
                 summary.failed == summary.generated);
    });
    if (summary.failed >= kMaxFailuresBeforeSuccess && summary.failed == summary.generated &&
        summary.generated < total)
        throw Error("eval: stopped after the first " + std::to_string(summary.failed) +
                    " samples all failed (" + generator.name() +
                    "); the first error: " + first_error);
    return summary;
}

}  // namespace crucible::eval
