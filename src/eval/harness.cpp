#include "eval/harness.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "core/deadline_call.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/strings.h"
#include "core/worker_pool.h"
#include "dist/world.h"
#include "reward/verify/math_answer.h"
#include "reward/verify/verifiers.h"
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

reward::PythonRewardOptions python_verifier_options(const std::string& kind) {
    // python:FILE:FUNCTION[:verl][:sandbox]; FILE may not contain ':'.
    std::vector<std::string> parts;
    for (size_t at = 0;;) {
        const size_t colon = kind.find(':', at);
        parts.push_back(kind.substr(at, colon == std::string::npos ? colon : colon - at));
        if (colon == std::string::npos) break;
        at = colon + 1;
    }
    bool verl = false, sandbox = false, bad = parts.size() < 3 || parts.size() > 5;
    for (size_t i = 3; i < parts.size(); i++) {
        bool& flag = parts[i] == "verl" ? verl : sandbox;
        if ((parts[i] != "verl" && parts[i] != "sandbox") || flag) bad = true;
        flag = true;
    }
    if (bad || parts[1].empty() || parts[2].empty())
        throw Error("verifier '" + kind + "': expected python:FILE:FUNCTION, then optionally " +
                    ":verl (the verl signature) and :sandbox (each call in crucible sandbox)");
    reward::PythonRewardOptions o;
    o.sandbox = sandbox;
    o.file = parts[1];
    o.function = parts[2];
    o.signature = verl ? reward::PythonRewardOptions::Signature::verl
                       : reward::PythonRewardOptions::Signature::trl;
    o.workers = 1;
    return o;
}

double score_sample(const EvalItem& item, const std::string& text, std::string* answer) {
    if (item.is_rubric())
        throw Error("item '" + item.id + "' is scored by its rubric, not by a verifier");
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
        context_ = published_context();
    }
    std::string name() const override { return "openai:" + client_->base_url() + "#" + model_; }
    int context() const override { return context_; }

    void generate(const std::vector<EvalItem>& items, const std::vector<SampleJob>& jobs,
                  const SamplingOptions& sampling,
                  const std::function<bool(const SampleJob&, GeneratedSample)>& done) override {
        std::mutex done_mutex;
        bool stop = false;  // guarded by done_mutex: a sample finished after it is dropped
        run_parallel_until(jobs.size(), static_cast<size_t>(concurrency_), [&](size_t j) {
            GeneratedSample g = one(items[jobs[j].item], jobs[j], sampling);
            std::lock_guard<std::mutex> lock(done_mutex);
            if (stop) return false;
            if (!done(jobs[j], std::move(g))) stop = true;
            return !stop;
        });
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
                set_sampling(r, sampling, seed);
                const ChatResult res = within_context(r, [&] { return client_->chat(r); });
                take(res.choices, res.usage, &g);
            } else {
                CompletionRequest r;
                r.model = model_;
                r.prompt = item.prompt;
                g.prompt = item.prompt;
                set_sampling(r, sampling, seed);
                const CompletionResult res =
                    within_context(r, [&] { return client_->complete(r); });
                take(res.choices, res.usage, &g);
            }
        } catch (const std::exception& e) {
            g.error = e.what();
        }
        g.latency_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return g;
    }
    // The context the endpoint publishes for the model in GET /models (`max_model_len`, as
    // vLLM and crucible serve write it); 0 when it publishes none or cannot be asked.
    int published_context() {
        try {
            const json list = client_->get_json("models");
            if (!list.contains("data") || !list["data"].is_array()) return 0;
            for (const json& m : list["data"]) {
                if (m.value("id", "") == model_ && m.contains("max_model_len") &&
                    m["max_model_len"].is_number_integer() && m["max_model_len"].get<int64_t>() > 1)
                    return static_cast<int>(
                        std::min<int64_t>(m["max_model_len"].get<int64_t>(), INT32_MAX));
            }
        } catch (const std::exception&) {
        }
        return 0;
    }
    // Sends `r` with max_tokens capped by the published context. The prompt's length is the
    // server's to count: asked for more than fits, it answers 400 with both counts ("...
    // (P in the prompt, ..."; vLLM: "P in the messages"), and the request is sent once more
    // with max_tokens = context - P.
    template <typename Request, typename Send>
    auto within_context(Request& r, const Send& send) -> decltype(send()) {
        if (context_ <= 0) return send();
        r.max_tokens = std::min(r.max_tokens, context_ - 1);
        try {
            return send();
        } catch (const Error& e) {
            const std::string what = e.what();
            if (what.find("maximum context length") == std::string::npos) throw;
            const size_t at = what.find(" in the ");
            size_t b = what.rfind('(', at);
            if (at == std::string::npos || b == std::string::npos) throw;
            int64_t prompt = 0;
            for (size_t i = b + 1; i < at; i++) {
                if (!std::isdigit(static_cast<unsigned char>(what[i]))) throw;
                prompt = std::min<int64_t>(prompt * 10 + (what[i] - '0'), INT32_MAX);
            }
            if (prompt <= 0 || prompt >= context_ || context_ - prompt >= r.max_tokens) throw;
            r.max_tokens = static_cast<int>(context_ - prompt);
            return send();
        }
    }
    // The sampling fields a chat and a completion request share.
    template <typename Request>
    static void set_sampling(Request& r, const SamplingOptions& sampling, int64_t seed) {
        r.max_tokens = sampling.max_tokens;
        r.temperature = sampling.temperature;
        r.top_p = sampling.top_p;
        r.seed = seed;
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
    int context_ = 0;
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

namespace {

// Adds what a scorer's judge spent since `*last` to the run's stored totals under `key`.
void add_judge_stats(SampleStore& store, const char* key, const reward::RubricScorer& scorer,
                     reward::JudgeStats* last) {
    const reward::JudgeStats now = scorer.judge_stats();
    if (now.requests == last->requests && now.cache_hits == last->cache_hits &&
        now.failures == last->failures)
        return;
    const auto settings = store.settings();
    json total = json::object();
    if (auto it = settings.find(key); it != settings.end()) {
        total = json::parse(it->second, nullptr, false);
        if (!total.is_object()) total = json::object();
    }
    const json delta = {
        {"judge_requests", now.requests - last->requests},
        {"judge_cache_hits", now.cache_hits - last->cache_hits},
        {"judge_parse_retries", now.parse_retries - last->parse_retries},
        {"judge_failures", now.failures - last->failures},
        {"judge_prompt_tokens", now.prompt_tokens - last->prompt_tokens},
        {"judge_completion_tokens", now.completion_tokens - last->completion_tokens},
        {"judge_cost_usd", now.cost_usd - last->cost_usd}};
    for (const auto& [k, v] : delta.items()) {
        if (v.is_number_float())
            total[k] = total.value(k, 0.0) + v.get<double>();
        else
            total[k] = total.value(k, int64_t{0}) + v.get<int64_t>();
    }
    store.set_setting(key, total.dump());
    *last = now;
}

// A generated sample of a rubric item waiting for its score.
struct PendingRubric {
    const EvalItem* item;
    SampleRecord record;
    std::string text;      // what is scored
    bool rejudge = false;  // a stored sample whose judging failed before, not a new one
};

// A stored sample whose generation succeeded and whose rubric judging failed (the harness
// stores those with an error "rubric: <why>"): a re-run judges its completion again.
bool judging_failed(const SampleRecord& r) {
    return r.error.rfind("rubric: ", 0) == 0 && !r.rubric.empty();
}

// The scoring thread of rubric samples: push() queues a sample; the thread takes whatever has
// queued (up to `batch`), scores it in one score_batch call and hands each record to `store`.
// finish() (also run by the destructor, e.g. when the generator throws) scores what is left,
// joins, and rethrows an exception the thread met. (One long-lived thread fed while generation
// runs, not core/worker_pool's run_parallel, which runs a batch known in advance.)
class RubricScoringQueue {
  public:
    RubricScoringQueue(const reward::RubricScorer& scorer, int batch,
                       std::function<void(SampleRecord, bool rubric_failed, bool rejudged)> store,
                       std::function<void()> after_batch)
        : scorer_(scorer),
          batch_(static_cast<size_t>(std::max(1, batch))),
          store_(std::move(store)),
          after_batch_(std::move(after_batch)),
          thread_([this] { loop(); }) {}
    ~RubricScoringQueue() {
        try {
            finish();
        } catch (...) {  // already unwinding, or finish() ran: nothing more to report
        }
    }
    void push(PendingRubric p) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queue_.push_back(std::move(p));
        }
        cv_.notify_one();
    }
    void finish() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            closed_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

  private:
    void loop() {
        for (;;) {
            std::vector<PendingRubric> batch;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
                if (queue_.empty()) return;  // closed and drained
                while (!queue_.empty() && batch.size() < batch_) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            if (error_) continue;  // drain without scoring after a failure
            try {
                score(batch);
            } catch (...) {
                error_ = std::current_exception();
            }
        }
    }
    void score(std::vector<PendingRubric>& batch) {
        std::vector<reward::RubricItem> items;
        std::vector<std::string> texts;
        for (const PendingRubric& p : batch) {
            items.push_back(*p.item->rubric);
            texts.push_back(p.text);
        }
        const std::vector<reward::RubricResult> results = scorer_.score_batch(items, texts);
        for (size_t i = 0; i < batch.size(); ++i) {
            SampleRecord& r = batch[i].record;
            const reward::RubricResult& res = results[i];
            r.rubric = res.to_json().dump(-1, ' ', false, json::error_handler_t::replace);
            if (res.failed) {
                r.score.reset();
                r.error = "rubric: " + res.failure;
            } else {
                r.score = res.score;
            }
            store_(std::move(r), res.failed, batch[i].rejudge);
        }
        after_batch_();
    }

    const reward::RubricScorer& scorer_;
    size_t batch_;
    std::function<void(SampleRecord, bool, bool)> store_;
    std::function<void()> after_batch_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<PendingRubric> queue_;
    bool closed_ = false;
    std::exception_ptr error_;  // written by the thread, read after join
    std::thread thread_;        // last: starts once everything above is constructed
};

// The second judge's pass: every scored rubric sample it has not scored (or failed on).
void judge_b_pass(const std::vector<EvalItem>& items, SampleStore& store,
                  const EvalOptions& options, EvalSummary* summary) {
    const reward::RubricScorer& scorer = *options.rubric_scorer_b;
    reward::JudgeStats last = scorer.judge_stats();
    std::map<std::string, const EvalItem*> by_id;
    for (const EvalItem& it : items)
        if (it.is_rubric()) by_id[it.id] = &it;
    std::vector<SampleRecord> todo;
    for (SampleRecord& s : store.samples()) {
        if (!s.error.empty() || s.rubric.empty() || !by_id.count(s.item_id)) continue;
        if (!s.rubric_b.empty()) {
            const json b = json::parse(s.rubric_b, nullptr, false);
            if (b.is_object() && !b.value("failed", true)) continue;  // scored already
        }
        todo.push_back(std::move(s));
    }
    const size_t batch = static_cast<size_t>(std::max(1, options.rubric_batch));
    for (size_t from = 0; from < todo.size(); from += batch) {
        const size_t to = std::min(todo.size(), from + batch);
        std::vector<reward::RubricItem> rubric_items;
        std::vector<std::string> texts;
        for (size_t i = from; i < to; ++i) {
            rubric_items.push_back(*by_id.at(todo[i].item_id)->rubric);
            texts.push_back(scored_text(todo[i].completion, options.strip_think));
        }
        const auto results = scorer.score_batch(rubric_items, texts);
        for (size_t i = from; i < to; ++i) {
            const reward::RubricResult& res = results[i - from];
            store.put_rubric_b(todo[i].item_id, todo[i].sample,
                               res.to_json().dump(-1, ' ', false, json::error_handler_t::replace));
            ++summary->judged_b;
            if (res.failed) ++summary->judged_b_failed;
        }
        add_judge_stats(store, kJudgeBStatsKey, scorer, &last);
    }
}

}  // namespace

namespace {

using PythonPools = std::map<std::string, std::unique_ptr<reward::PythonRewardPool>>;

// Python verifiers: one pool per kind, started before any generation so that a file that does
// not load stops the run first.
PythonPools make_python_pools(const std::vector<EvalItem>& items) {
    PythonPools pools;
    for (const EvalItem& item : items) {
        if (is_python_verifier(item.verifier) && !pools.count(item.verifier))
            pools[item.verifier] =
                std::make_unique<reward::PythonRewardPool>(python_verifier_options(item.verifier));
    }
    return pools;
}

// A generated sample as a record: its fields, and its score by the item's verifier (Python
// verifiers through their pools; rubric items are scored later, by the judge). `text` gets what
// was scored.
SampleRecord finish_sample(const EvalItem& item, const SampleJob& job, GeneratedSample g,
                           const EvalOptions& options, PythonPools& python_pools,
                           std::string* text_out) {
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
    if (!g.info.is_null())
        r.info = g.info.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string text = g.scored ? scored_text(*g.scored, options.strip_think)
                                      : scored_text(r.completion, options.strip_think);
    if (r.error.empty() && is_python_verifier(item.verifier)) {
        const reward::PythonRewardResult p =
            python_pools.at(item.verifier)
                ->score(
                    {{r.prompt, text, item.answer, {{"id", item.id}, {"answer", item.answer}}}})[0];
        if (!p.score) {
            r.error = "scoring: " + p.error;
        } else if (*p.score < 0.0 || *p.score > 1.0) {
            r.error = "scoring: " + item.verifier + " returned " + std::to_string(*p.score) +
                      ", not a score in [0, 1]";
        } else {
            r.score = *p.score;
            r.answer = normalize_text(text);
            if (r.answer.size() > 200) r.answer.clear();
        }
    } else if (r.error.empty() && !item.is_rubric()) {
        try {
            const auto verdict = call_with_deadline<std::pair<double, std::string>>(
                [item, text] {
                    std::string answer;
                    const double score = score_sample(item, text, &answer);
                    return std::make_pair(score, answer);
                },
                options.verifier_timeout_s, "the verifier");
            if (verdict) {
                r.score = verdict->first;
                r.answer = verdict->second;
            } else {
                char why[128];
                std::snprintf(why, sizeof why,
                              "scoring: reward_timeout: no verdict within %g s "
                              "(--verifier-timeout-s)",
                              options.verifier_timeout_s);
                r.error = why;
            }
        } catch (const Error& e) {
            r.error = std::string("scoring: ") + e.what();
        }
    }
    *text_out = text;
    return r;
}

// Ranks > 0 of a sharded eval: rank 0's job list, this rank's share (every N-th job) generated
// and scored here, each record sent to rank 0, which alone stores.
EvalSummary run_eval_shard(const std::vector<EvalItem>& items, Generator& generator,
                           const EvalOptions& options) {
    std::string text;
    dist::broadcast(text);
    const nlohmann::json all = nlohmann::json::parse(text);
    std::vector<SampleJob> mine;
    for (size_t i = (size_t)dist::rank(); i < all.size(); i += (size_t)dist::size()) {
        mine.push_back({all[i][0].get<size_t>(), all[i][1].get<int>(), all[i][2].get<uint64_t>()});
    }
    PythonPools python_pools = make_python_pools(items);
    EvalSummary summary;
    generator.generate(items, mine, options.sampling, [&](const SampleJob& job, GeneratedSample g) {
        std::string scored;
        const SampleRecord r =
            finish_sample(items[job.item], job, std::move(g), options, python_pools, &scored);
        ++summary.generated;
        if (!r.error.empty()) ++summary.failed;
        // A rubric item's sample goes to rank 0 unjudged, with the text its judge scores.
        const bool judge = r.error.empty() && items[job.item].is_rubric();
        dist::send_to_root(record_to_message(r, judge ? &scored : nullptr));
        return !(summary.failed >= kMaxFailuresBeforeSuccess &&
                 summary.failed == summary.generated);
    });
    dist::done_sending();
    return summary;
}

}  // namespace

EvalSummary run_eval(const std::vector<EvalItem>& items, Generator& generator,
                     const EvalOptions& options) {
    if (options.k < 1)
        throw Error("--n must be at least 1 (got " + std::to_string(options.k) + ")");
    bool has_rubric = false;
    for (const EvalItem& it : items) has_rubric = has_rubric || it.is_rubric();
    // Under mpirun the samples are shared out by rank and rank 0 alone opens and writes the
    // store and judges rubric items: a re-run resumes as on one process, and the seeds are the
    // samples' own.
    if (!dist::is_root()) return run_eval_shard(items, generator, options);
    if (has_rubric && !options.rubric_scorer)
        throw Error("eval: the dataset has rubric items and no rubric scorer was given");
    SampleStore store(options.run_dir);
    char buf[64];
    auto num = [&buf](double v) {
        std::snprintf(buf, sizeof buf, "%.17g", v);
        return std::string(buf);
    };
    const SamplingOptions& s = options.sampling;
    std::map<std::string, std::string> settings{
        {"model", generator.name()},
        {"temperature", num(s.temperature)},
        {"top_p", num(s.top_p)},
        {"max_tokens", std::to_string(s.max_tokens)},
        {"seed", std::to_string(s.seed)},
        {"chat", s.chat ? "true" : "false"},
        {"strip_think", options.strip_think ? "true" : "false"}};
    if (has_rubric) settings.insert(options.rubric_settings.begin(), options.rubric_settings.end());
    settings["env"] = options.env.empty() ? "none" : options.env;
    store.check_settings(settings);
    // Recorded, not checked: a server restarted with a longer context is the same model.
    if (generator.context() > 0)
        store.set_setting("endpoint_context", std::to_string(generator.context()));
    store.set_setting("k", std::to_string(options.k));
    store.set_setting("data", options.data);
    // The data's content, so that a file edited between two runs is told apart (compare).
    if (!options.data.empty() && std::filesystem::is_regular_file(options.data))
        store.set_setting("data_hash", fnv1a64_hex(read_file(options.data)));
    if (has_rubric && options.rubric_scorer_b) {
        const auto stored = store.settings();
        const auto it = stored.find("judge_b");
        if (it == stored.end() || it->second != options.judge_b) {
            store.clear_rubric_b();
            store.set_setting("judge_b", options.judge_b);
            store.set_setting(kJudgeBStatsKey, "{}");
        }
    }
    store.put_items(items);

    const auto done = store.done();
    // Samples whose judge failed keep their completion: they are judged again, not regenerated.
    std::map<std::pair<std::string, int>, SampleRecord> to_rejudge;
    if (has_rubric) {
        for (SampleRecord& r : store.samples()) {
            if (judging_failed(r)) to_rejudge[{r.item_id, r.sample}] = std::move(r);
        }
    }
    std::vector<SampleJob> jobs;
    std::vector<PendingRubric> rejudge;
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
            auto old = to_rejudge.find({items[i].id, j});
            if (items[i].is_rubric() && old != to_rejudge.end()) {
                SampleRecord r = std::move(old->second);
                r.error.clear();
                r.rubric.clear();
                std::string text = scored_text(r.completion, options.strip_think);
                rejudge.push_back({&items[i], std::move(r), std::move(text), true});
                continue;
            }
            jobs.push_back({i, j, sample_seed(s.seed, items[i].id, j)});
        }
    }
    const int64_t total = static_cast<int64_t>(jobs.size() + rejudge.size());
    std::string first_error;
    // The generator's callback and the rubric scoring thread both store samples.
    std::mutex store_mutex;
    const auto store_sample = [&](const SampleRecord& r, bool rubric_failed, bool rejudged) {
        std::lock_guard<std::mutex> lock(store_mutex);
        store.put(r);
        ++(rejudged ? summary.rejudged : summary.generated);
        if (!r.error.empty()) ++summary.failed;
        if (rubric_failed) ++summary.rubric_failed;
        if (options.on_progress) options.on_progress(summary.generated + summary.rejudged, total);
    };
    std::unique_ptr<RubricScoringQueue> rubric_queue;
    reward::JudgeStats judge_last;
    if (has_rubric) {
        judge_last = options.rubric_scorer->judge_stats();
        rubric_queue = std::make_unique<RubricScoringQueue>(
            *options.rubric_scorer, options.rubric_batch,
            [&](SampleRecord r, bool failed, bool rejudged) { store_sample(r, failed, rejudged); },
            [&] {
                std::lock_guard<std::mutex> lock(store_mutex);
                add_judge_stats(store, kJudgeStatsKey, *options.rubric_scorer, &judge_last);
            });
    }
    PythonPools python_pools = make_python_pools(items);
    // Sharded: every rank gets the job list; rank 0 keeps every N-th job from the first and
    // stores the others' records as they arrive.
    std::vector<SampleJob> mine = jobs;
    std::map<std::string, const EvalItem*> by_id;
    for (const EvalItem& it : items) by_id[it.id] = &it;
    const auto receive = [&](const std::string& m) {
        std::optional<std::string> to_judge;
        SampleRecord r = record_from_message(m, &to_judge);
        const auto item = by_id.find(r.item_id);
        if (!to_judge) return store_sample(r, false, false);
        if (!rubric_queue || item == by_id.end() || !item->second->is_rubric()) {
            throw Error("eval: rank message for " + r.item_id + " asks for a judge it has none");
        }
        rubric_queue->push({item->second, std::move(r), std::move(*to_judge)});
    };
    if (dist::size() > 1) {
        nlohmann::json all = nlohmann::json::array();
        for (const SampleJob& j : jobs) all.push_back({j.item, j.sample, j.seed});
        std::string text = all.dump();
        dist::broadcast(text);
        mine.clear();
        for (size_t i = 0; i < jobs.size(); i += (size_t)dist::size()) mine.push_back(jobs[i]);
    }
    int64_t generated = 0, generation_failed = 0;  // only touched by the serialized callback
    if (options.on_progress) options.on_progress(0, total);
    for (PendingRubric& p : rejudge) rubric_queue->push(std::move(p));
    generator.generate(items, mine, s, [&](const SampleJob& job, GeneratedSample g) {
        const EvalItem& item = items[job.item];
        std::string text;
        SampleRecord r = finish_sample(item, job, std::move(g), options, python_pools, &text);
        // The stop rule counts generation and verifier failures, not the judge's: a judge
        // failure never stops a run.
        ++generated;
        if (!r.error.empty()) {
            ++generation_failed;
            if (first_error.empty()) first_error = r.error;
        }
        if (r.error.empty() && item.is_rubric()) {
            rubric_queue->push({&item, std::move(r), text});
        } else {
            store_sample(r, false, false);
        }
        dist::poll_messages(receive);
        return !(generation_failed >= kMaxFailuresBeforeSuccess && generation_failed == generated);
    });
    dist::drain_messages(receive);
    if (rubric_queue) rubric_queue->finish();
    if (generation_failed >= kMaxFailuresBeforeSuccess && generation_failed == generated &&
        generated < total)
        throw Error("eval: stopped after the first " + std::to_string(generation_failed) +
                    " samples all failed (" + generator.name() +
                    "); the first error: " + first_error);
    if (has_rubric && options.rubric_scorer_b) judge_b_pass(items, store, options, &summary);
    return summary;
}

}  // namespace crucible::eval
