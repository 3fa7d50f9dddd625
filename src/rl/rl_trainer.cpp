#include "rl/rl_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "reward/rubric_scorer.h"
#include "rl/rl_config.h"
#include "run/optimizer.h"
#include "run/run_folder.h"

namespace crucible::rl {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

struct RlTrainer::Rollout {
    int group = 0;                    // index of its group within the step
    size_t item = 0;                  // index into task_.train
    int sample = 0;                   // index within the group
    std::vector<int32_t> completion;  // generated ids (end-of-sequence included when it ended it)
    std::string text;                 // completion text without the end-of-sequence token
    bool truncated = false;           // hit rollout.max_new_tokens
    std::optional<double> correct;    // the task's verdict; none: the item has no gold answer
    std::vector<std::pair<std::string, double>> components;
    double rubric = NAN;  // the rubric reward (when on); NaN with rubric_error when it failed
    std::string rubric_error;
    double reward = 0.0;
    bool valid = true;  // every reward component produced a finite number
    std::string error;
    bool kept = false;     // its group is in the update batch
    bool in_loss = false;  // kept, valid and not removed by overlong filtering
    double advantage = 0.0;
    std::vector<float> old_logp, ref_logp;
};

struct RlTrainer::Judging {
    std::vector<std::future<std::vector<reward::RubricResult>>> groups;  // in group order
};

struct RlTrainer::StepStats {
    double loss = 0.0;
    LossStats loss_stats;
    double entropy_sum = 0.0;
    int64_t entropy_tokens = 0;
    double grad_norm_sum = 0.0;
    int optimizer_steps = 0;
    int64_t train_rows = 0;
    int64_t micro_batches = 0;
};

void resolve_rl_run_name(Config& config) {
    name_new_run(config, "rl");
}

void validate_rl_config(const Config& c) {
    // Each number's own interval is the schema's (rl_config.h), checked as the config merges;
    // these are the rules that tie keys together or are not one interval.
    parse_advantage_mode(c.get_string("algorithm.advantage"), "algorithm.advantage");
    parse_ratio_level(c.get_string("algorithm.ratio"), "algorithm.ratio");
    parse_loss_aggregation(c.get_string("algorithm.loss_aggregation"),
                           "algorithm.loss_aggregation");
    parse_kl_estimator(c.get_string("algorithm.kl_estimator"), "algorithm.kl_estimator");
    parse_dynamic_sampling_metric(c.get_string("algorithm.dynamic_sampling_metric"));
    // Every advantage mode centres on the group mean (batch_std too: only its scale is the
    // batch's), so a group of one sample has advantage 0 and the run would train on nothing.
    const int64_t G = c.get_int("rollout.samples_per_prompt");
    if (G < 2) {
        throw Error("config: rollout.samples_per_prompt must be >= 2: algorithm.advantage " +
                    c.get_string("algorithm.advantage") +
                    " subtracts the group mean, so one sample per prompt gives every advantage 0");
    }
    if (c.get_int("algorithm.minibatches") > c.get_int("rollout.prompts_per_step")) {
        throw Error(
            "config: algorithm.minibatches must not exceed rollout.prompts_per_step (mini-batches "
            "split the batch by groups)");
    }
    const double dual = c.get_double("algorithm.dual_clip");
    if (dual != 0.0 && dual <= 1.0) {
        throw Error("config: algorithm.dual_clip must be 0 (off) or > 1");
    }
    if (dual != 0.0 && c.get_string("algorithm.ratio") == "sequence") {
        throw Error(
            "config: algorithm.dual_clip and algorithm.ratio: sequence conflict (GSPO "
            "clips the sequence ratio; dual-clip is a per-token rule)");
    }
    if (c.get_double("rewards.soft_overlong") != 0.0 &&
        c.get_int("algorithm.overlong_cache") > c.get_int("rollout.max_new_tokens")) {
        throw Error(
            "config: algorithm.overlong_cache must be in 1..rollout.max_new_tokens when "
            "rewards.soft_overlong is on");
    }
    const std::string sched = c.get_string("train.schedule");
    if (sched != "cosine" && sched != "constant") {
        throw Error("config: train.schedule must be cosine or constant, got '" + sched + "'");
    }
    if (c.get_string("model.path").empty()) {
        throw Error(
            "config: model.path: RL starts from a checkpoint folder (e.g. an SFT run's "
            "checkpoints/step-N)");
    }
}

DynamicSamplingMetric parse_dynamic_sampling_metric(const std::string& value) {
    if (value == "accuracy") return DynamicSamplingMetric::accuracy;
    if (value == "reward") return DynamicSamplingMetric::reward;
    throw Error("config: algorithm.dynamic_sampling_metric: unknown value '" + value +
                "' (expected accuracy or reward)");
}

RlTrainer::RlTrainer(const Config& config, bool resume, std::ostream& log,
                     std::vector<RewardFunction> extra_rewards, std::optional<Task> task)
    : config_(config), log_(log) {
    validate_rl_config(config_);
    if (config_.get_string("run.name").empty()) {
        throw Error("config: run.name is empty (resolve_rl_run_name() names new runs)");
    }
    run_dir_ = fs::path(config_.get_string("run.dir")) / config_.get_string("run.name");
    total_steps_ = config_.get_int("train.steps");
    seed_ = static_cast<uint64_t>(config_.get_int("seed"));
    schedule_ = config_.get_string("train.schedule") == "cosine" ? kernels::LrSchedule::Cosine
                                                                 : kernels::LrSchedule::Constant;
    advantage_ = parse_advantage_mode(config_.get_string("algorithm.advantage"), "");
    loss_.ratio = parse_ratio_level(config_.get_string("algorithm.ratio"), "");
    loss_.clip_low = config_.get_double("algorithm.clip_low");
    loss_.clip_high = config_.get_double("algorithm.clip_high");
    loss_.dual_clip = config_.get_double("algorithm.dual_clip");
    loss_.aggregation =
        parse_loss_aggregation(config_.get_string("algorithm.loss_aggregation"), "");
    loss_.kl_beta = config_.get_double("algorithm.kl_beta");
    loss_.kl = parse_kl_estimator(config_.get_string("algorithm.kl_estimator"), "");
    loss_.max_completion_tokens = static_cast<int>(config_.get_int("rollout.max_new_tokens"));
    dynamic_metric_ =
        parse_dynamic_sampling_metric(config_.get_string("algorithm.dynamic_sampling_metric"));

    const fs::path start_from(config_.get_string("model.path"));
    tokenizer_ = fs::exists(start_from / "tokenizer.json") ? load_text_tokenizer(start_from)
                                                           : TextTokenizer(ByteTokenizer());
    task_ = task ? std::move(*task) : load_task(config_, tokenizer_);
    if (task_.train.empty()) throw Error("rl: the task has no training items");

    // Reward components besides the task's own (`correct`, `format`: score()): the config's
    // (weights from rewards.*), then the caller's. Shaping is off unless a weight asks for it.
    const int max_new = loss_.max_completion_tokens;
    const int cache = static_cast<int>(config_.get_int("algorithm.overlong_cache"));
    if (config_.get_double("rewards.soft_overlong") != 0.0) {
        rewards_.push_back({"soft_overlong", config_.get_double("rewards.soft_overlong"),
                            [max_new, cache](const TaskItem&, const std::string&,
                                             const std::vector<int32_t>& ids, bool) {
                                return soft_overlong_penalty(static_cast<int>(ids.size()), max_new,
                                                             cache);
                            }});
    }
    for (RewardFunction& r : extra_rewards) rewards_.push_back(std::move(r));
    if (config_.get_bool("algorithm.dynamic_sampling") &&
        dynamic_metric_ == DynamicSamplingMetric::accuracy) {
        for (const TaskItem& item : task_.train) {
            if (!item.has_gold) {
                throw Error(
                    "config: algorithm.dynamic_sampling_metric: accuracy needs a gold "
                    "answer for every training item, and '" +
                    item.id + "' has none (use reward for rubric-only data)");
            }
        }
    }
    if (config_.get_double("rewards.rubric") != 0.0) {
        for (const TaskItem& item : task_.train) {
            if (!item.rubric) {
                throw Error("config: rewards.rubric is on but training item '" + item.id +
                            "' has no \"rubric\" (task jsonl lines carry their rubric)");
            }
        }
        reward::RubricScorerConfig rc;
        rc.judge = config_.get_string("rubric.judge");
        rc.mode = config_.get_string("rubric.mode");
        rc.aggregation = config_.get_string("rubric.aggregation");
        rc.votes = static_cast<int>(config_.get_int("rubric.votes"));
        rc.temperature = config_.get_double("rubric.temperature");
        rc.max_tokens = static_cast<int>(config_.get_int("rubric.max_tokens"));
        rc.concurrency = static_cast<int>(config_.get_int("rubric.concurrency"));
        rc.timeout_s = config_.get_double("rubric.timeout_s");
        rc.cache = config_.get_string("rubric.cache");
        if (rc.cache.empty()) rc.cache = (run_dir_ / "judge_cache.sqlite").string();
        rc.price_in = config_.get_double("rubric.price_in");
        rc.price_out = config_.get_double("rubric.price_out");
        rc.seed = seed_;
        fs::create_directories(run_dir_);
        rubric_ = reward::make_rubric_scorer(rc, [this](std::string_view text) {
            return static_cast<int64_t>(tokenizer_.encode(text).size());
        });
    }

    // Every training item must be paid by some component with a non-zero weight: a rubric-only
    // line with rewards.rubric at 0 would earn 0 on every sample and train on nothing.
    for (const TaskItem& item : task_.train) {
        const bool paid =
            (item.has_gold && config_.get_double("rewards.correct") != 0.0) ||
            (item.rubric && config_.get_double("rewards.rubric") != 0.0) ||
            (task_.has_format_credit && config_.get_double("rewards.format") != 0.0) ||
            std::any_of(rewards_.begin(), rewards_.end(),
                        [](const RewardFunction& f) { return f.weight != 0.0; });
        if (!paid) {
            throw Error(
                "config: rewards: no component with a non-zero weight scores training "
                "item '" +
                item.id + "'" +
                (item.rubric     ? " (it has a rubric: set rewards.rubric)"
                 : item.has_gold ? " (set rewards.correct)"
                                 : ""));
        }
    }
    const fs::path ckpt_root = run_dir_ / "checkpoints";
    const int64_t latest = latest_checkpoint(ckpt_root);
    if (resume) {
        const fs::path saved = run_dir_ / "config.yaml";
        if (!fs::exists(saved) || latest < 0) {
            throw Error(run_dir_.string() + ": nothing to resume (no config.yaml or checkpoint)");
        }
        Config previous(kRlConfigDefaults);
        previous.merge_file(saved.string());
        const auto changed = Config::diff(previous, config_);
        if (!changed.empty()) {
            std::string keys;
            for (const auto& k : changed) keys += " " + k;
            throw Error(saved.string() +
                        ": --resume needs the run's own config; these keys differ:" + keys);
        }
        load_checkpoint(checkpoint_dir(latest));
        log_ << "resumed " << run_dir_.string() << " at step " << step_ << "\n";
    } else {
        if (latest >= 0) {
            throw Error(run_dir_.string() +
                        " already holds checkpoints; pass --resume to continue it, or choose "
                        "another run.name");
        }
        fs::create_directories(ckpt_root);
        write_file_durable(run_dir_ / "config.yaml", config_.dump());
        model_ = load_model(start_from);
        adam_m_.assign(model_->num_params(), 0.0f);
        adam_v_.assign(model_->num_params(), 0.0f);
        write_file_durable(run_dir_ / "metrics.jsonl", "");
        write_file_durable(run_dir_ / "samples.jsonl", "");
    }
    if (loss_.kl_beta > 0) reference_ = load_model(start_from);  // frozen: the starting policy
    if (model_->config().vocab_size < tokenizer_.vocab_size) {
        throw Error(start_from.string() + ": model vocab_size " +
                    std::to_string(model_->config().vocab_size) +
                    " is smaller than the tokenizer's " + std::to_string(tokenizer_.vocab_size) +
                    " ids");
    }
    size_t longest_prompt = 0;
    for (const TaskItem& item : task_.train)
        longest_prompt = std::max(longest_prompt, item.prompt_ids.size());
    for (const TaskItem& item : task_.eval)
        longest_prompt = std::max(longest_prompt, item.prompt_ids.size());
    if ((int64_t)longest_prompt + max_new > model_->config().max_position_embeddings) {
        throw Error("config: rollout.max_new_tokens: the longest prompt (" +
                    std::to_string(longest_prompt) + " tokens) plus " + std::to_string(max_new) +
                    " new tokens exceed the model's max_position_embeddings (" +
                    std::to_string(model_->config().max_position_embeddings) + ")");
    }
    remove_unpublished_checkpoints(ckpt_root);
    if (resume) {
        truncate_jsonl_after_step(run_dir_ / "metrics.jsonl", step_);
        truncate_jsonl_after_step(run_dir_ / "samples.jsonl", step_);
    }
    log_ << "rl: " << model_->config().model_type << ", " << model_->num_params()
         << " parameters; task " << task_.name << " (" << task_.train.size() << " train, "
         << task_.eval.size() << " held-out); advantage "
         << config_.get_string("algorithm.advantage") << ", ratio "
         << config_.get_string("algorithm.ratio") << ", loss "
         << config_.get_string("algorithm.loss_aggregation") << "; run folder " << run_dir_.string()
         << "\n";
}

RlTrainer::~RlTrainer() = default;

fs::path RlTrainer::checkpoint_dir(int64_t step) const {
    return run_dir_ / "checkpoints" / ("step-" + std::to_string(step));
}

size_t RlTrainer::prompt_at(int64_t k) {
    const int64_t n = static_cast<int64_t>(task_.train.size());
    const int64_t epoch = k / n;
    if (epoch != perm_epoch_) {
        perm_.resize(n);
        for (int64_t i = 0; i < n; i++) perm_[i] = static_cast<size_t>(i);
        Rng rng(Rng::mix(seed_, 0x5EED0000ULL + static_cast<uint64_t>(epoch)));
        for (int64_t i = n - 1; i > 0; i--) std::swap(perm_[i], perm_[rng.below(i + 1)]);
        perm_epoch_ = epoch;
    }
    return perm_[k % n];
}

void RlTrainer::score(Rollout* r) {
    const TaskItem& item = task_.train[r->item];
    r->reward = 0.0;
    // The task's verdict, once: `correct` (absent for an item without a gold answer) and, for
    // tasks that give it, `format` credit, each a component with its own weight.
    try {
        const TaskScore verdict = task_.score(item, r->text);
        if (verdict.correct && *verdict.correct != 0.0 && *verdict.correct != 1.0) {
            throw Error("the task's verdict must be 0 or 1");
        }
        if (!std::isfinite(verdict.format)) throw Error("format credit: not a finite number");
        r->correct = verdict.correct;
        if (verdict.correct) {
            r->components.emplace_back("correct", *verdict.correct);
            r->reward += config_.get_double("rewards.correct") * *verdict.correct;
        }
        if (task_.has_format_credit) {
            r->components.emplace_back("format", verdict.format);
            r->reward += config_.get_double("rewards.format") * verdict.format;
        }
    } catch (const std::exception& e) {
        r->valid = false;
        r->error = std::string("correct: ") + e.what();
    }
    for (const RewardFunction& f : rewards_) {
        std::optional<double> value;
        try {
            value = f.fn(item, r->text, r->completion, r->truncated);
        } catch (const std::exception& e) {
            r->valid = false;
            r->error = f.name + ": " + e.what();
            continue;
        }
        if (!value) continue;  // does not apply to this item
        if (!std::isfinite(*value)) {
            r->valid = false;
            r->error = f.name + ": not a finite number";
            continue;
        }
        r->components.emplace_back(f.name, *value);
        r->reward += f.weight * *value;
    }
    if (r->valid && !std::isfinite(r->reward)) {  // finite parts, weights that overflow
        r->valid = false;
        r->error = "reward: the weighted sum is not a finite number";
    }
    if (rubric_) {
        if (!std::isfinite(r->rubric)) {
            r->valid = false;
            r->error = "rubric: " + (r->rubric_error.empty() ? "no score" : r->rubric_error);
        } else {
            r->components.emplace_back("rubric", r->rubric);
            r->reward += config_.get_double("rewards.rubric") * r->rubric;
        }
    }
}

void RlTrainer::score_rubrics(std::vector<Rollout>& rollouts, size_t first, Judging& judging) {
    if (!rubric_) return;
    const size_t G = static_cast<size_t>(config_.get_int("rollout.samples_per_prompt"));
    for (size_t p = 0; p < judging.groups.size(); p++) {
        const std::vector<reward::RubricResult> results = judging.groups[p].get();
        for (size_t s = 0; s < G; s++) {
            Rollout& r = rollouts[first + p * G + s];
            r.rubric = results[s].failed ? NAN : results[s].score;
            r.rubric_error = results[s].failure;
        }
    }
    judging.groups.clear();
}

void RlTrainer::generate_group_batch(std::vector<Rollout>* out, int64_t* generated_tokens,
                                     Judging* judging) {
    const int P = static_cast<int>(config_.get_int("rollout.prompts_per_step"));
    const int G = static_cast<int>(config_.get_int("rollout.samples_per_prompt"));
    std::vector<GenerationRequest> requests;
    std::vector<size_t> items;
    for (int p = 0; p < P; p++) {
        const int64_t k = prompt_cursor_++;
        const size_t item = prompt_at(k);
        GenerationRequest r;
        r.prompt = task_.train[item].prompt_ids;
        r.params.temperature = static_cast<float>(config_.get_double("rollout.temperature"));
        r.params.top_p = static_cast<float>(config_.get_double("rollout.top_p"));
        r.params.top_k = static_cast<int>(config_.get_int("rollout.top_k"));
        r.params.max_tokens = loss_.max_completion_tokens;
        r.params.seed = Rng::mix(seed_, 0xA11CE000ULL + static_cast<uint64_t>(k));
        r.params.stop_ids = {tokenizer_.eos};
        r.params.stop_strings = task_.stop_strings;
        r.n = G;
        requests.push_back(std::move(r));
        items.push_back(item);
    }
    const auto completion_text = [this](const std::vector<int32_t>& tokens) {
        std::vector<int32_t> ids = tokens;
        if (!ids.empty() && ids.back() == tokenizer_.eos) ids.pop_back();
        return tokenizer_.decode(ids);
    };
    judging->groups.clear();
    judging->groups.resize(rubric_ ? P : 0);
    const auto start_judging = [&](size_t p, const std::vector<GeneratedSequence>& samples) {
        if (!rubric_) return;
        std::vector<reward::RubricItem> rubric(samples.size(), *task_.train[items[p]].rubric);
        std::vector<std::string> texts;
        for (const GeneratedSequence& g : samples) texts.push_back(completion_text(g.tokens));
        judging->groups[p] = std::async(
            std::launch::async, [this, rubric = std::move(rubric), texts = std::move(texts)] {
                return rubric_->score_batch(rubric, texts);
            });
    };
    EngineOptions options;
    options.detokenize = tokenizer_.decode;
    Engine engine(*model_, options);
    const auto outs = engine.generate(requests, {}, start_judging);
    const int first_group = out->empty() ? 0 : out->back().group + 1;
    for (int p = 0; p < P; p++) {
        for (int s = 0; s < G; s++) {
            const GeneratedSequence& g = outs[p][s];
            Rollout r;
            r.group = first_group + p;
            r.item = items[p];
            r.sample = s;
            r.completion = g.tokens;
            r.truncated = g.finish_reason == "length";
            r.text = completion_text(g.tokens);
            *generated_tokens += static_cast<int64_t>(g.tokens.size());
            out->push_back(std::move(r));
        }
    }
}

void RlTrainer::pack(const std::vector<Rollout>& rollouts, const std::vector<size_t>& micro,
                     PackedBatch* batch) const {
    batch->clear();
    for (size_t idx : micro) {
        const Rollout& r = rollouts[idx];
        const std::vector<int32_t>& prompt = task_.train[r.item].prompt_ids;
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), r.completion.begin(), r.completion.end());
        std::vector<int32_t> inputs(seq.begin(), seq.end() - 1), next(seq.begin() + 1, seq.end());
        batch->add_sequence(inputs, next, std::vector<float>(inputs.size(), 0.0f));
    }
}

std::vector<std::vector<size_t>> RlTrainer::micro_batches(const std::vector<Rollout>& rollouts,
                                                          const std::vector<size_t>& mb) const {
    const int64_t cap = config_.get_int("train.micro_batch_tokens");
    std::vector<std::vector<size_t>> micros;
    int64_t rows = 0;
    for (size_t idx : mb) {
        const Rollout& r = rollouts[idx];
        if (!r.in_loss) continue;
        const int64_t n =
            static_cast<int64_t>(task_.train[r.item].prompt_ids.size() + r.completion.size()) - 1;
        if (micros.empty() || rows + n > cap) {
            micros.emplace_back();
            rows = 0;
        }
        micros.back().push_back(idx);
        rows += n;
    }
    return micros;
}

// Log-probabilities of each completion token under `model`, read from the loss of a forward
// pass over the same micro-batches the update uses: with unchanged weights the update's own
// forward reproduces them bit for bit, so the first ratio is exactly 1.
void RlTrainer::score_logprobs(Model& model, std::vector<Rollout>& rollouts,
                               const std::vector<size_t>& mb, bool reference) {
    PackedBatch batch;
    for (const auto& micro : micro_batches(rollouts, mb)) {
        pack(rollouts, micro, &batch);
        model.forward(batch);
        const float* losses = model.token_losses();
        for (size_t j = 0; j < micro.size(); j++) {
            Rollout& r = rollouts[micro[j]];
            const int start = batch.seq_start[j];
            const int p = static_cast<int>(task_.train[r.item].prompt_ids.size());
            std::vector<float>& dst = reference ? r.ref_logp : r.old_logp;
            dst.resize(r.completion.size());
            for (size_t t = 0; t < r.completion.size(); t++) dst[t] = -losses[start + p - 1 + t];
        }
    }
}

void RlTrainer::update(std::vector<Rollout>& rollouts, const std::vector<size_t>& mb, int iteration,
                       StepStats* st) {
    MiniBatchSize size;
    for (size_t idx : mb) {
        if (!rollouts[idx].in_loss) continue;
        size.sequences++;
        size.tokens += static_cast<int64_t>(rollouts[idx].completion.size());
    }
    if (size.sequences == 0) return;
    model_->zero_grads();
    PackedBatch batch;
    const int V = model_->config().vocab_size;
    std::vector<double> dlogp;
    std::vector<float> logp;
    for (const auto& micro : micro_batches(rollouts, mb)) {
        pack(rollouts, micro, &batch);
        model_->forward(batch);
        const float* losses = model_->token_losses();
        const float* logits = model_->logits();
        st->train_rows += batch.n_tokens();
        st->micro_batches++;
        for (size_t j = 0; j < micro.size(); j++) {
            Rollout& r = rollouts[micro[j]];
            const int p = static_cast<int>(task_.train[r.item].prompt_ids.size());
            const int row0 = batch.seq_start[j] + p - 1;
            const size_t len = r.completion.size();
            logp.resize(len);
            for (size_t t = 0; t < len; t++) logp[t] = -losses[row0 + t];
            if (r.old_logp.empty()) r.old_logp = logp;  // weights still those of the rollout
            if (iteration == 0) {
                for (size_t t = 0; t < len; t++) {  // entropy of the policy at each token
                    const float* row = logits + (size_t)(row0 + t) * V;
                    const float mx = *std::max_element(row, row + V);
                    double z = 0.0, zx = 0.0;
                    for (int v = 0; v < V; v++) {
                        const double e = std::exp(double(row[v]) - mx);
                        z += e;
                        zx += e * (double(row[v]) - mx);
                    }
                    st->entropy_sum += std::log(z) - zx / z;
                }
                st->entropy_tokens += static_cast<int64_t>(len);
            }
            dlogp.assign(len, 0.0);
            LossStats ls;
            sequence_loss(loss_, size, r.advantage, logp, r.old_logp, r.ref_logp, dlogp, &ls);
            st->loss += ls.loss;
            st->loss_stats.tokens += ls.tokens;
            st->loss_stats.clipped_low += ls.clipped_low;
            st->loss_stats.clipped_high += ls.clipped_high;
            st->loss_stats.kl_sum += ls.kl_sum;
            st->loss_stats.ratio_sum += ls.ratio_sum;
            // Model::backward differentiates sum_n w_n * (-logp_n): w_n = -dL/dlogp_n.
            for (size_t t = 0; t < len; t++) batch.loss_weight[row0 + t] = float(-dlogp[t]);
        }
        model_->backward();
    }
    const double clip = config_.get_double("train.grad_clip");
    const double gnorm = clip > 0
                             ? kernels::clip_grad_norm(model_->grads(), model_->num_params(), clip)
                             : kernels::global_norm(model_->grads(), model_->num_params());
    // A loss or gradient that went non-finite stops the run before the update reaches the
    // weights, so no checkpoint of that state is ever written (earlier ones stay).
    if (!std::isfinite(st->loss) || !std::isfinite(gnorm)) {
        throw Error("rl: step " + std::to_string(step_ + 1) + " (optimizer step " +
                    std::to_string(optimizer_steps_ + 1) + "): the " +
                    (std::isfinite(st->loss) ? "gradient norm is " + std::to_string(gnorm)
                                             : "loss is " + std::to_string(st->loss)) +
                    "; stopped before the update, without a checkpoint of this state");
    }
    const int64_t total_opt = total_steps_ * config_.get_int("algorithm.updates_per_batch") *
                              config_.get_int("algorithm.minibatches");
    const float lr =
        kernels::lr_at(optimizer_steps_, total_opt, config_.get_int("train.warmup_steps"),
                       static_cast<float>(config_.get_double("train.lr")),
                       static_cast<float>(config_.get_double("train.min_lr_ratio")), schedule_);
    const kernels::AdamWParams hp{lr, static_cast<float>(config_.get_double("train.beta1")),
                                  static_cast<float>(config_.get_double("train.beta2")),
                                  static_cast<float>(config_.get_double("train.eps")),
                                  static_cast<float>(config_.get_double("train.weight_decay"))};
    adamw_step(*model_, adam_m_, adam_v_, hp, optimizer_steps_ + 1);
    optimizer_steps_++;
    st->grad_norm_sum += gnorm;
    st->optimizer_steps++;
}

void RlTrainer::train_step() {
    const auto t_step = Clock::now();
    const int P = static_cast<int>(config_.get_int("rollout.prompts_per_step"));
    const int G = static_cast<int>(config_.get_int("rollout.samples_per_prompt"));
    const bool dynamic = config_.get_bool("algorithm.dynamic_sampling");
    const int max_rounds = static_cast<int>(config_.get_int("algorithm.max_generation_batches"));

    // 1. Rollouts (and rewards), refilled while dynamic sampling drops uninformative groups.
    std::vector<Rollout> rollouts;
    std::vector<int> kept_groups;
    double t_generate = 0.0, t_reward = 0.0;
    int64_t generated_tokens = 0;
    int rounds = 0, groups_zero_std = 0, groups_total = 0;
    int groups_judged = 0, groups_all_same_accuracy = 0;  // groups with >= 2 verdicts
    while (rounds < max_rounds) {
        const size_t first = rollouts.size();
        auto t0 = Clock::now();
        Judging judging;
        generate_group_batch(&rollouts, &generated_tokens, &judging);
        t_generate += seconds_since(t0);
        t0 = Clock::now();
        score_rubrics(rollouts, first, judging);
        for (size_t i = first; i < rollouts.size(); i++) score(&rollouts[i]);
        t_reward += seconds_since(t0);
        rounds++;
        for (size_t g0 = first; g0 < rollouts.size(); g0 += G) {
            groups_total++;
            // Whether the group's valid samples all share one reward, and one correctness
            // (all right or all wrong: DAPO's filter, verl's filter_groups metric acc).
            double lo = INFINITY, hi = -INFINITY, acc_lo = INFINITY, acc_hi = -INFINITY;
            int valid = 0, judged = 0;
            for (int s = 0; s < G; s++) {
                const Rollout& r = rollouts[g0 + s];
                if (!r.valid) continue;
                valid++;
                lo = std::min(lo, r.reward);
                hi = std::max(hi, r.reward);
                if (!r.correct) continue;
                judged++;
                acc_lo = std::min(acc_lo, *r.correct);
                acc_hi = std::max(acc_hi, *r.correct);
            }
            const bool zero_std = valid < 2 || lo == hi;
            const bool same_accuracy = judged < 2 || acc_lo == acc_hi;
            groups_zero_std += zero_std;
            groups_judged += judged >= 2;
            groups_all_same_accuracy += judged >= 2 && same_accuracy;
            const bool uninformative =
                dynamic_metric_ == DynamicSamplingMetric::accuracy ? same_accuracy : zero_std;
            if ((!dynamic || !uninformative) && (int)kept_groups.size() < P) {
                kept_groups.push_back(rollouts[g0].group);
            }
        }
        if (!dynamic || (int)kept_groups.size() >= P) break;
    }
    // 2. Advantages over the kept groups; the loss mask.
    std::vector<size_t> batch;
    {
        std::vector<char> keep(rollouts.empty() ? 0 : rollouts.back().group + 1, 0);
        for (int g : kept_groups) keep[g] = 1;
        for (size_t i = 0; i < rollouts.size(); i++)
            if (keep[rollouts[i].group]) batch.push_back(i);
    }
    {
        std::vector<double> rewards;
        std::vector<int> group, lengths;
        std::vector<uint8_t> valid;
        for (size_t i : batch) {
            rewards.push_back(rollouts[i].reward);
            group.push_back(rollouts[i].group);
            valid.push_back(rollouts[i].valid);
            lengths.push_back(static_cast<int>(rollouts[i].completion.size()));
        }
        const auto adv = compute_advantages(advantage_, rewards, group, valid, lengths);
        const bool filter = config_.get_bool("algorithm.overlong_filter");
        for (size_t j = 0; j < batch.size(); j++) {
            Rollout& r = rollouts[batch[j]];
            r.kept = true;
            r.advantage = adv[j];
            r.in_loss = r.valid && !r.completion.empty() && !(filter && r.truncated);
        }
    }
    // 3. Updates: mu passes, each over `minibatches` mini-batches split by groups.
    const auto t_train0 = Clock::now();
    const int n_mb = static_cast<int>(config_.get_int("algorithm.minibatches"));
    const int mu = static_cast<int>(config_.get_int("algorithm.updates_per_batch"));
    std::vector<std::vector<size_t>> minibatches(n_mb);
    for (size_t j = 0; j < batch.size(); j++) {
        const size_t pos = static_cast<size_t>(
            std::find(kept_groups.begin(), kept_groups.end(), rollouts[batch[j]].group) -
            kept_groups.begin());
        minibatches[pos * n_mb / std::max<size_t>(kept_groups.size(), 1)].push_back(batch[j]);
    }
    // Old log-probabilities of the mini-batches trained after the first optimizer step, and the
    // reference model's, before any weight changes (the first mini-batch records its own).
    for (int m = 1; m < n_mb; m++) score_logprobs(*model_, rollouts, minibatches[m], false);
    if (reference_) {
        for (int m = 0; m < n_mb; m++) score_logprobs(*reference_, rollouts, minibatches[m], true);
    }
    StepStats st;
    for (int it = 0; it < mu; it++) {
        for (int m = 0; m < n_mb; m++) update(rollouts, minibatches[m], it, &st);
    }
    const double t_train = seconds_since(t_train0);
    step_++;

    // 4. Logs: metrics.jsonl, samples.jsonl, the console.
    json line;
    line["step"] = step_;
    double reward_sum = 0.0, reward_sq = 0.0, correct_sum = 0.0, len_sum = 0.0;
    int64_t n_valid = 0, n_invalid = 0, n_judged = 0, truncated = 0, max_len = 0;
    std::map<std::string, double> component_sum;
    std::map<std::string, int64_t> component_count;
    for (const Rollout& r : rollouts) {
        len_sum += static_cast<double>(r.completion.size());
        max_len = std::max<int64_t>(max_len, static_cast<int64_t>(r.completion.size()));
        truncated += r.truncated;
        // Correctness is the task's verdict; another component failing does not change it.
        if (r.correct) {
            n_judged++;
            correct_sum += *r.correct == 1.0;
        }
        if (!r.valid) {
            n_invalid++;
            continue;
        }
        n_valid++;
        reward_sum += r.reward;
        reward_sq += r.reward * r.reward;
        for (const auto& [name, v] : r.components) {
            component_sum[name] += v;
            component_count[name]++;
        }
    }
    const double n_all = static_cast<double>(std::max<size_t>(rollouts.size(), 1));
    const double mean = n_valid > 0 ? reward_sum / n_valid : 0.0;
    line["reward_mean"] = mean;
    line["reward_std"] =
        n_valid > 1 ? std::sqrt(std::max(0.0, (reward_sq - n_valid * mean * mean) / (n_valid - 1)))
                    : 0.0;
    // A component's mean is over the samples it applies to.
    for (const auto& [name, v] : component_sum) {
        line["reward/" + name] = v / static_cast<double>(component_count[name]);
    }
    // Accuracy: the fraction of fully correct samples among those with a gold answer (none:
    // rubric-only data). Format credit is in the reward and in reward/format, never here.
    if (n_judged > 0) line["accuracy"] = correct_sum / static_cast<double>(n_judged);
    line["frac_reward_zero_std"] = groups_total > 0 ? double(groups_zero_std) / groups_total : 0.0;
    if (groups_judged > 0) {
        line["frac_accuracy_all_same"] = double(groups_all_same_accuracy) / groups_judged;
    }
    line["groups_kept"] = kept_groups.size();
    line["generation_rounds"] = rounds;
    line["invalid_samples"] = n_invalid;
    line["response_length_mean"] = len_sum / n_all;
    line["response_length_max"] = max_len;
    line["truncation_rate"] = double(truncated) / n_all;
    const double tok = static_cast<double>(std::max<int64_t>(st.loss_stats.tokens, 1));
    line["loss"] = st.optimizer_steps > 0 ? st.loss / st.optimizer_steps : 0.0;
    line["clip_frac_low"] = st.loss_stats.clipped_low / tok;
    line["clip_frac_high"] = st.loss_stats.clipped_high / tok;
    line["ratio_mean"] = st.loss_stats.ratio_sum / tok;
    line["entropy"] = st.entropy_tokens > 0 ? st.entropy_sum / st.entropy_tokens : 0.0;
    if (loss_.kl_beta > 0) line["kl"] = st.loss_stats.kl_sum / tok;
    line["grad_norm"] = st.optimizer_steps > 0 ? st.grad_norm_sum / st.optimizer_steps : 0.0;
    line["micro_batches"] = st.micro_batches;
    line["optimizer_steps"] = optimizer_steps_;
    line["lr"] = kernels::lr_at(
        std::max<int64_t>(optimizer_steps_ - 1, 0), total_steps_ * mu * n_mb,
        config_.get_int("train.warmup_steps"), static_cast<float>(config_.get_double("train.lr")),
        static_cast<float>(config_.get_double("train.min_lr_ratio")), schedule_);
    if (rubric_) line["judge"] = rubric_->judge_stats().to_json();
    line["time_generate_s"] = t_generate;
    line["time_reward_s"] = t_reward;
    line["time_train_s"] = t_train;
    line["generate_tokens_per_s"] = t_generate > 0 ? generated_tokens / t_generate : 0.0;
    line["reward_samples_per_s"] = t_reward > 0 ? n_all / t_reward : 0.0;
    line["train_tokens_per_s"] = t_train > 0 ? st.train_rows / t_train : 0.0;

    const int64_t eval_every = config_.get_int("train.eval_every");
    const bool last = step_ == total_steps_;
    if (has_eval_items() && (last || (eval_every > 0 && step_ % eval_every == 0))) {
        const TaskEvaluation ev = evaluate();
        line["eval_accuracy"] = ev.mean;
        if (ev.failures > 0) line["eval_failures"] = ev.failures;
        line["eval_response_length"] = ev.mean_length;
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      "eval  step %lld | held-out accuracy %.1f%% (%zu problems x %d samples)\n",
                      (long long)step_, 100.0 * ev.mean, ev.scores.size(),
                      ev.scores.empty() ? 0 : (int)ev.scores[0].size());
        log_ << buf;
    }
    const double dt = seconds_since(t_step);
    line["step_s"] = dt;
    elapsed_s_ += dt;
    // Checked appends: a full disk stops the run here, between steps (a resume continues from
    // the last checkpoint and trims both logs back to it), instead of losing lines.
    {
        std::string lines;
        for (const Rollout& r : rollouts) {
            json s = {{"step", step_},
                      {"item", task_.train[r.item].id},
                      {"group", r.group},
                      {"sample", r.sample},
                      {"completion", r.text},
                      {"completion_tokens", r.completion.size()},
                      {"finish_reason", r.truncated ? "length" : "stop"},
                      {"reward", r.valid ? json(r.reward) : json(nullptr)},
                      {"kept", r.kept},
                      {"in_loss", r.in_loss},
                      {"advantage", r.kept ? json(r.advantage) : json(nullptr)}};
            json comps = json::object();
            for (const auto& [name, v] : r.components) comps[name] = v;
            s["rewards"] = comps;
            if (!r.valid) s["error"] = r.error;
            lines += s.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        }
        append_file_checked(run_dir_ / "samples.jsonl", lines);
    }
    append_jsonl(run_dir_ / "metrics.jsonl", line);
    last_metrics_ = line.dump();
    const int64_t log_every = config_.get_int("train.log_every");
    const double eta = (total_steps_ - step_) * (elapsed_s_ / std::max<int64_t>(1, step_));
    char buf[320];
    std::snprintf(
        buf, sizeof buf,
        "step %lld/%lld | reward %.3f | acc %.1f%% | groups %zu/%d (%d rounds) | len %.1f "
        "| clip %.3f/%.3f | entropy %.3f | grad %.3f | gen %.1fs train %.1fs | ETA %s",
        (long long)step_, (long long)total_steps_, mean,
        100.0 * line.value("accuracy", std::nan("")), kept_groups.size(), P, rounds,
        len_sum / n_all, line["clip_frac_low"].get<double>(), line["clip_frac_high"].get<double>(),
        line["entropy"].get<double>(), line["grad_norm"].get<double>(), t_generate, t_train,
        format_duration(eta).c_str());
    if (step_ % log_every == 0 || last || step_ == 1) {
        log_ << buf << "\n" << std::flush;
    } else if (isatty(STDERR_FILENO)) {
        std::fprintf(stderr, "\r%s\r", buf);
    }
}

bool RlTrainer::has_eval_items() const {
    return std::any_of(task_.eval.begin(), task_.eval.end(),
                       [](const TaskItem& item) { return item.has_gold; });
}

TaskEvaluation RlTrainer::evaluate() {
    // Accuracy needs a gold answer: rubric-only held-out items are not scored here.
    std::vector<TaskItem> items;
    for (const TaskItem& item : task_.eval) {
        if ((int64_t)items.size() == config_.get_int("train.eval_problems")) break;
        if (item.has_gold) items.push_back(item);
    }
    SamplingParams params;
    params.temperature = static_cast<float>(config_.get_double("rollout.temperature"));
    params.top_p = static_cast<float>(config_.get_double("rollout.top_p"));
    params.top_k = static_cast<int>(config_.get_int("rollout.top_k"));
    params.max_tokens = loss_.max_completion_tokens;
    return evaluate_task(*model_, tokenizer_, task_, items,
                         static_cast<int>(config_.get_int("train.eval_samples")), params,
                         Rng::mix(seed_, 0xE7A1));
}

void RlTrainer::run(int64_t until_step) {
    if (until_step < 0 || until_step > total_steps_) until_step = total_steps_;
    const int64_t every = config_.get_int("train.checkpoint_every");
    while (step_ < until_step) {
        train_step();
        if (step_ == total_steps_ || (every > 0 && step_ % every == 0)) save_checkpoint();
    }
}

void RlTrainer::save_checkpoint() {
    const float* w = model_->params();
    if (!std::all_of(w, w + model_->num_params(), [](float x) { return std::isfinite(x); })) {
        throw Error("rl: step " + std::to_string(step_) +
                    ": the weights after the update are not finite; stopped without a "
                    "checkpoint of this state");
    }
    const fs::path final_dir = checkpoint_dir(step_);
    const fs::path tmp = run_dir_ / "checkpoints" / (".tmp-step-" + std::to_string(step_));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_model(*model_, tmp);
    copy_tokenizer_files(config_.get_string("model.path"), tmp);
    save_optimizer_state(*model_, adam_m_, adam_v_, tmp / "optimizer.safetensors");
    const json state = {{"format", "crucible-rl-state-1"},
                        {"step", step_},
                        {"optimizer_steps", optimizer_steps_},
                        {"prompt_cursor", prompt_cursor_},
                        {"seed", seed_}};
    write_file_durable(tmp / "config.yaml", config_.dump());
    // Written last: a folder without trainer_state.json is never taken as a checkpoint.
    write_file_durable(tmp / "trainer_state.json", state.dump(2) + "\n");
    if (!publish_directory(tmp, final_dir)) {
        log_ << "note: " << final_dir.string() << " already exists; kept the existing one\n";
    }
}

void RlTrainer::load_checkpoint(const fs::path& dir) {
    const fs::path state_path = dir / "trainer_state.json";
    json state;
    try {
        state = json::parse(read_file(state_path));
    } catch (const json::exception& e) {
        throw Error(state_path.string() + ": not valid JSON: " + e.what());
    }
    if (state.value("format", "") != "crucible-rl-state-1" || !state["step"].is_number_integer() ||
        !state["optimizer_steps"].is_number_integer() ||
        !state["prompt_cursor"].is_number_integer()) {
        throw Error(state_path.string() + ": not a Crucible RL trainer state");
    }
    model_ = load_model(dir);
    load_optimizer_state(*model_, dir / "optimizer.safetensors", &adam_m_, &adam_v_);
    step_ = state["step"].get<int64_t>();
    optimizer_steps_ = state["optimizer_steps"].get<int64_t>();
    prompt_cursor_ = state["prompt_cursor"].get<int64_t>();
}

}  // namespace crucible::rl
