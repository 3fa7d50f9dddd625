#include "rl/rl_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <future>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/deadline_call.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "dist/world.h"
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "reward/rubric_scorer.h"
#include "rl/rl_config.h"
#include "rl/rollout.h"
#include "rl/rollout_wire.h"
#include "rl/step_metrics.h"
#include "run/optimizer.h"
#include "run/run_folder.h"
#include "run/trainer_checkpoint.h"

namespace crucible::rl {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

void add_sequence_gradient(const PolicyLossOptions& loss, const MiniBatchSize& size,
                           const ForwardRows& f, int row0, bool first_pass, Rollout& r,
                           SequenceScratch& s, UpdateStats* st) {
    const size_t len = r.completion.size();
    const std::vector<uint8_t>& mask = r.model_mask;  // empty: every id is the model's
    s.logp.resize(len);
    for (size_t t = 0; t < len; t++) s.logp[t] = -f.losses[row0 + t];
    if (r.old_logp.empty()) {  // weights still those of the rollout
        for (size_t t = 0; t < len; t++)
            if (mask.empty() || mask[t]) r.old_logp.push_back(s.logp[t]);
    }
    if (first_pass) {
        s.entropy.resize(len);
        kernels::entropy_forward(s.entropy.data(), f.logits + (size_t)row0 * f.V, (int)len, f.V);
        for (size_t t = 0; t < len; t++)
            if (mask.empty() || mask[t]) st->entropy_sum += s.entropy[t];
        st->entropy_tokens += static_cast<int64_t>(r.model_tokens());
    }
    s.dlogp.assign(len, 0.0);
    LossStats ls;
    masked_sequence_loss(loss, size, r.advantage, mask, s.logp, r.old_logp, r.ref_logp, s.dlogp,
                         &ls);
    st->loss += ls.loss;
    st->loss_stats.tokens += ls.tokens;
    st->loss_stats.clipped_low += ls.clipped_low;
    st->loss_stats.clipped_high += ls.clipped_high;
    st->loss_stats.kl_sum += ls.kl_sum;
    st->loss_stats.ratio_sum += ls.ratio_sum;
    // Model::backward differentiates sum_n w_n * (-logp_n): w_n = -dL/dlogp_n (0 at the
    // observations' ids).
    for (size_t t = 0; t < len; t++) f.loss_weight[row0 + t] = float(-s.dlogp[t]);
}

struct RlTrainer::Judging {
    std::vector<std::future<std::vector<reward::RubricResult>>> groups;  // in group order
};

void resolve_rl_run_name(Config& config) {
    name_new_run(config, "rl");
}

void validate_rl_config(const Config& config) {
    read_rl_config(config);
}

RlTrainer::RlTrainer(const Config& config, bool resume, std::ostream& log,
                     std::vector<RewardFunction> extra_rewards, std::optional<Task> task)
    : config_(config), cfg_(read_rl_config(config_)), log_(log) {
    if (cfg_.run.name.empty()) {
        throw Error("config: run.name is empty (resolve_rl_run_name() names new runs)");
    }
    run_dir_ = fs::path(cfg_.run.dir) / cfg_.run.name;
    loss_ = cfg_.loss_options();

    const fs::path start_from(cfg_.model.path);
    tokenizer_ = fs::exists(start_from / "tokenizer.json") ? load_text_tokenizer(start_from)
                                                           : TextTokenizer(ByteTokenizer());
    task_ = task ? std::move(*task) : load_task(cfg_.task, cfg_.seed, tokenizer_);
    limit_verdict_time(task_, cfg_.rewards.verifier_timeout_s, "rewards.verifier_timeout_s");
    if (task_.train.empty()) throw Error("rl: the task has no training items");
    set_up_rewards(std::move(extra_rewards));
    check_rewards_pay_every_item();
    if (dist::size() > 1 && cfg_.env.name == EnvKind::server) {
        throw Error("env.name server: an agent-driven run trains in one process (no mpirun)");
    }
    open_run(resume, start_from);
    model_->set_matmul_dtype(cfg_.train.dtype);
    if (loss_.kl_beta > 0) {
        // frozen: the starting policy, held in bf16 or Q8_0 alone when the run computes so
        reference_ = load_model(start_from, cfg_.train.dtype);
        reference_->set_matmul_dtype(cfg_.train.dtype);
    }
    check_fits_context(start_from);
    if (dist::is_root()) {
        remove_unpublished_checkpoints(run_dir_ / "checkpoints");
        if (resume) {
            truncate_jsonl_after_step(run_dir_ / "metrics.jsonl", step_);
            truncate_jsonl_after_step(run_dir_ / "samples.jsonl", step_);
        }
    }
    log_ << "rl: " << model_->config().model_type << ", " << model_->num_params() << " parameters"
         << (model_->has_lora() ? " (LoRA rank " + std::to_string(model_->lora_config().rank) +
                                      ": " + std::to_string(model_->lora_num_params()) + " trained)"
                                : std::string())
         << "; task " << task_.name << " (" << task_.train.size() << " train, " << task_.eval.size()
         << " held-out); advantage " << to_string(cfg_.algorithm.advantage) << ", ratio "
         << to_string(cfg_.algorithm.ratio) << ", loss "
         << to_string(cfg_.algorithm.loss_aggregation) << "; run folder " << run_dir_.string()
         << "\n";
}

// Reward components besides the task's own (`correct`, `format`: score()): the config's
// (weights from rewards.*), then the caller's. Shaping is off unless a weight asks for it.
void RlTrainer::set_up_rewards(std::vector<RewardFunction> extra_rewards) {
    const int max_new = loss_.max_completion_tokens;
    const int cache = cfg_.algorithm.overlong_cache;
    if (cfg_.rewards.soft_overlong != 0.0) {
        rewards_.push_back({"soft_overlong", cfg_.rewards.soft_overlong,
                            [max_new, cache](const TaskItem&, const std::string&,
                                             const std::vector<int32_t>& ids, bool) {
                                return soft_overlong_penalty(static_cast<int>(ids.size()), max_new,
                                                             cache);
                            }});
    }
    for (RewardFunction& r : extra_rewards) rewards_.push_back(std::move(r));
    // With an agent (env server) the agent says what was correct, with each reward.
    if (cfg_.algorithm.dynamic_sampling && cfg_.env.name != EnvKind::server &&
        cfg_.algorithm.dynamic_sampling_metric == DynamicSamplingMetric::accuracy) {
        for (const TaskItem& item : task_.train) {
            if (!item.has_gold) {
                throw Error(
                    "config: algorithm.dynamic_sampling_metric: accuracy needs a gold "
                    "answer for every training item, and '" +
                    item.id + "' has none (use reward for rubric-only data)");
            }
        }
    }
    const RlPythonRewardConfig& py = cfg_.rewards.python;
    if (!py.file.empty()) {
        reward::PythonRewardOptions po;
        po.file = py.file;
        po.function = py.function;
        po.signature = reward::parse_python_signature(py.signature, "rewards.python.signature");
        po.timeout_s = py.timeout_s;
        po.workers = py.workers;
        po.sandbox = py.sandbox;
        python_ = std::make_unique<reward::PythonRewardPool>(po);
    }
    if (cfg_.rewards.rubric == 0.0) return;
    for (const TaskItem& item : task_.train) {
        if (!item.rubric) {
            throw Error("config: rewards.rubric is on but training item '" + item.id +
                        "' has no \"rubric\" (task jsonl lines carry their rubric)");
        }
    }
    const RlRubricConfig& c = cfg_.rubric;
    reward::RubricScorerConfig rc;
    rc.judge = c.judge;
    rc.mode = c.mode;
    rc.aggregation = c.aggregation;
    rc.votes = c.votes;
    rc.temperature = c.temperature;
    rc.max_tokens = c.max_tokens;
    rc.concurrency = c.concurrency;
    rc.timeout_s = c.timeout_s;
    rc.cache = c.cache.empty() ? (run_dir_ / "judge_cache.sqlite").string() : c.cache;
    rc.price_in = c.price_in;
    rc.price_out = c.price_out;
    rc.seed = cfg_.seed;
    fs::create_directories(run_dir_);
    rubric_ = reward::make_rubric_scorer(rc, [this](std::string_view text) {
        return static_cast<int64_t>(tokenizer_.encode(text).size());
    });
}

// Every training item must be paid by some component with a non-zero weight: a rubric-only
// line with rewards.rubric at 0 would earn 0 on every sample and train on nothing.
void RlTrainer::check_rewards_pay_every_item() const {
    if (cfg_.env.name == EnvKind::server) return;  // the agent pays every episode
    for (const TaskItem& item : task_.train) {
        const bool paid = (item.has_gold && cfg_.rewards.correct != 0.0) ||
                          (item.rubric && cfg_.rewards.rubric != 0.0) ||
                          (python_ && cfg_.rewards.python.weight != 0.0) ||
                          (task_.has_format_credit && cfg_.rewards.format != 0.0) ||
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
}

// A new run writes its config.yaml and empty logs; a resumed one must have been started with
// the same config and reloads its latest checkpoint.
void RlTrainer::open_run(bool resume, const fs::path& start_from) {
    // Rank 0 owns the run folder; the others read it once rank 0 has checked and opened it.
    std::string latest_text;
    if (dist::is_root()) {
        latest_text = std::to_string(open_run_folder(run_dir_, config_, kRlConfigDefaults, resume));
    }
    dist::broadcast(latest_text);
    const int64_t latest = std::stoll(latest_text);
    if (resume) {
        load_checkpoint(checkpoint_dir(latest));
        log_ << "resumed " << run_dir_.string() << " at step " << step_ << "\n";
        return;
    }
    model_ = load_model(start_from, frozen_base_dtype());
    if (cfg_.lora.rank > 0) model_->enable_lora(cfg_.lora, Rng::mix(cfg_.seed, 0x1024a));
    adam_m_.assign(model_->trainable().size, 0.0f);
    adam_v_.assign(model_->trainable().size, 0.0f);
    if (!dist::is_root()) return;
    write_file_durable(run_dir_ / "metrics.jsonl", "");
    write_file_durable(run_dir_ / "samples.jsonl", "");
}

// The tokenizer's ids fit the model's vocabulary, and every prompt plus L_max its context.
void RlTrainer::check_fits_context(const fs::path& start_from) const {
    if (model_->config().vocab_size < tokenizer_.vocab_size) {
        throw Error(start_from.string() + ": model vocab_size " +
                    std::to_string(model_->config().vocab_size) +
                    " is smaller than the tokenizer's " + std::to_string(tokenizer_.vocab_size) +
                    " ids");
    }
    const int max_new = loss_.max_completion_tokens;
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
        Rng rng(Rng::mix(cfg_.seed, 0x5EED0000ULL + static_cast<uint64_t>(epoch)));
        for (int64_t i = n - 1; i > 0; i--) std::swap(perm_[i], perm_[rng.below(i + 1)]);
        perm_epoch_ = epoch;
    }
    return perm_[k % n];
}

void RlTrainer::score(Rollout* r) {
    const TaskItem& item = task_.train[r->item];
    r->reward = 0.0;
    // With an agent (env server) its posted reward is the episode's (component "agent", in
    // step_reward) and its `correct` the verdict; the task's verifier is not asked.
    const bool agent = cfg_.env.name == EnvKind::server;
    // The task's verdict, once: `correct` (absent for an item without a gold answer) and, for
    // tasks that give it, `format` credit, each a component with its own weight.
    if (!agent) {
        try {
            // An episode whose environment failed is not scored (its environment may still be
            // inside a step that timed out).
            const TaskScore verdict = !r->error.empty() ? TaskScore{}
                                      : r->env          ? r->env->score()
                                                        : task_.score(item, r->text);
            if (verdict.correct && *verdict.correct != 0.0 && *verdict.correct != 1.0) {
                throw Error("the task's verdict must be 0 or 1");
            }
            if (!std::isfinite(verdict.format)) throw Error("format credit: not a finite number");
            r->correct = verdict.correct;
            if (verdict.correct) {
                r->components.emplace_back("correct", *verdict.correct);
                r->reward += cfg_.rewards.correct * *verdict.correct;
            }
            if (task_.has_format_credit) {
                r->components.emplace_back("format", verdict.format);
                r->reward += cfg_.rewards.format * verdict.format;
            }
        } catch (const std::exception& e) {
            r->valid = false;
            r->error = std::string("correct: ") + e.what();
        }
    }
    if (!r->error.empty()) r->valid = false;  // the episode's environment failed
    if (r->has_step_reward) {                 // the environment's own step rewards, weight 1
        if (std::isfinite(r->step_reward)) {
            r->components.emplace_back(agent ? "agent" : "env", r->step_reward);
            r->reward += r->step_reward;
        } else {
            r->valid = false;
            r->error = "env: a step reward is not a finite number";
        }
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
    if (python_) {
        if (!std::isfinite(r->python)) {
            r->valid = false;
            r->error = "python: " + r->python_error;
        } else {
            r->components.emplace_back("python", r->python);
            r->reward += cfg_.rewards.python.weight * r->python;
        }
    }
    if (rubric_) {
        if (!std::isfinite(r->rubric)) {
            r->valid = false;
            r->error = "rubric: " + (r->rubric_error.empty() ? "no score" : r->rubric_error);
        } else {
            r->components.emplace_back("rubric", r->rubric);
            r->reward += cfg_.rewards.rubric * r->rubric;
        }
    }
}

// The Python reward of rollouts [first, end), one batched call (split among its workers). A
// failed sample (timeout, exception, not a finite number) keeps NaN and its reason; score()
// then excludes it. The step's failures are logged with the first reason.
void RlTrainer::score_python(std::vector<Rollout>& rollouts, size_t first) {
    if (!python_ || first >= rollouts.size()) return;
    std::vector<reward::PythonRewardSample> samples;
    for (size_t i = first; i < rollouts.size(); i++) {
        const TaskItem& item = task_.train[rollouts[i].item];
        samples.push_back({item.prompt, rollouts[i].text, item.answer, item.columns});
    }
    const std::vector<reward::PythonRewardResult> results = python_->score(samples);
    int failed = 0, timeouts = 0;
    std::string first_error;
    for (size_t i = 0; i < results.size(); i++) {
        Rollout& r = rollouts[first + i];
        r.python = results[i].score ? *results[i].score : NAN;
        r.python_error = results[i].error;
        if (!results[i].score) {
            failed++;
            timeouts += results[i].timeout ? 1 : 0;
            if (first_error.empty()) first_error = results[i].error;
        }
    }
    if (failed > 0) {
        log_ << "python reward: " << failed << " of " << results.size()
             << " samples failed and are excluded (" << timeouts
             << " timed out); first: " << first_error << "\n";
    }
}

void RlTrainer::score_rubrics(std::vector<Rollout>& rollouts, size_t first, Judging& judging) {
    if (!rubric_) return;
    const size_t G = static_cast<size_t>(cfg_.rollout.samples_per_prompt);
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

void RlTrainer::generate_agent_batch(std::vector<Rollout>* out, int64_t* generated_tokens) {
    const int P = cfg_.rollout.prompts_per_step;
    const int G = cfg_.rollout.samples_per_prompt;
    if (!agents_) {
        const bool require_correct =
            cfg_.algorithm.dynamic_sampling &&
            cfg_.algorithm.dynamic_sampling_metric == DynamicSamplingMetric::accuracy;
        SamplingParams sampling;
        sampling.temperature = static_cast<float>(cfg_.rollout.temperature);
        sampling.top_p = static_cast<float>(cfg_.rollout.top_p);
        sampling.top_k = cfg_.rollout.top_k;
        agents_ = std::make_unique<AgentServer>(cfg_.env, *model_, tokenizer_,
                                                std::vector<int32_t>{tokenizer_.eos}, cfg_.run.name,
                                                require_correct, sampling, run_dir_, log_);
    }
    const int first_group = out->empty() ? 0 : out->back().group + 1;
    std::vector<RlEpisodeOffer> offers;
    std::vector<size_t> items;
    for (int p = 0; p < P; p++) {
        const size_t item = prompt_at(prompt_cursor_++);
        const TaskItem& it = task_.train[item];
        json about = {{"id", it.id}, {"prompt", it.prompt}, {"answer", it.answer}};
        if (it.columns.is_object()) about["columns"] = it.columns;
        for (int s = 0; s < G; s++) offers.push_back({about, first_group + p, s});
        items.push_back(item);
    }
    const std::vector<RlSessionOutcome> outcomes = agents_->run_round(offers, step_);
    int failed = 0;
    std::string first_error;
    for (int p = 0; p < P; p++) {
        for (int s = 0; s < G; s++) {
            const RlSessionOutcome& o = outcomes[static_cast<size_t>(p * G + s)];
            SessionSequence q = session_sequence(o.turns, step_);
            Rollout r;
            r.group = first_group + p;
            r.item = items[p];
            r.sample = s;
            r.session = o.session;
            r.error = !o.error.empty() ? o.error : q.error;
            if (r.error.empty()) {
                r.prompt = std::move(q.prompt);
                r.completion = std::move(q.completion);
                r.spans = std::move(q.spans);
                r.behaviour_logp = std::move(q.logprobs);
                r.truncated = q.truncated;
                r.turns = q.turns;
                Episode e;  // for its mask rule
                e.spans = r.spans;
                e.completion = r.completion;
                r.model_mask = e.model_mask();
                r.text = completion_text(tokenizer_, r.completion);
                r.has_step_reward = o.reward.has_value();
                r.step_reward = o.reward.value_or(0.0);
                r.correct = o.correct;
                r.end = r.truncated ? "truncated" : "reward";
            } else {
                r.turns = 0;
                r.end = "error";
                failed++;
                if (first_error.empty()) first_error = r.error;
            }
            *generated_tokens += static_cast<int64_t>(r.model_tokens());
            out->push_back(std::move(r));
        }
    }
    if (failed > 0) {
        log_ << "agent: " << failed << " of " << outcomes.size()
             << " episodes have no reward and are excluded; first: " << first_error << "\n";
    }
}

void RlTrainer::generate_group_batch(std::vector<Rollout>* out, int64_t* generated_tokens,
                                     Judging* judging, int first_group) {
    if (cfg_.env.name == EnvKind::server) return generate_agent_batch(out, generated_tokens);
    const int P = cfg_.rollout.prompts_per_step;
    const int G = cfg_.rollout.samples_per_prompt;
    std::vector<EpisodeGroup> groups;
    std::vector<size_t> items;
    std::vector<int> index;  // each group's place p in the round
    for (int p = 0; p < P; p++) {
        const int64_t k = prompt_cursor_++;
        const size_t item = prompt_at(k);
        // Under mpirun a rank runs every N-th group of the round (collect_rollouts gathers).
        if (p % dist::size() != dist::rank()) continue;
        index.push_back(p);
        EpisodeGroup g;
        g.item = &task_.train[item];
        for (int s = 0; s < G; s++)
            g.envs.push_back(make_environment(cfg_.env, task_, task_.train[item]));
        g.params.temperature = static_cast<float>(cfg_.rollout.temperature);
        g.params.top_p = static_cast<float>(cfg_.rollout.top_p);
        g.params.top_k = cfg_.rollout.top_k;
        g.params.seed = Rng::mix(cfg_.seed, 0xA11CE000ULL + static_cast<uint64_t>(k));
        g.params.stop_ids = {tokenizer_.eos};
        groups.push_back(std::move(g));
        items.push_back(item);
    }
    const int mine = static_cast<int>(groups.size());
    judging->groups.clear();
    judging->groups.resize(rubric_ ? mine : 0);
    const auto start_judging = [&](size_t p, const std::vector<Episode>& episodes) {
        if (!rubric_) return;
        std::vector<reward::RubricItem> rubric(episodes.size(), *task_.train[items[p]].rubric);
        std::vector<std::string> texts;
        for (const Episode& e : episodes)
            texts.push_back(completion_text(tokenizer_, e.completion));
        judging->groups[p] = std::async(
            std::launch::async, [this, rubric = std::move(rubric), texts = std::move(texts)] {
                return rubric_->score_batch(rubric, texts);
            });
    };
    if (groups.empty()) return;  // more ranks than this round's groups: none is this rank's
    const EpisodeLimits limits = episode_limits(cfg_.env, loss_.max_completion_tokens);
    auto episodes = run_episodes(groups, EpisodeSource{model_.get(), generator_}, tokenizer_,
                                 limits, start_judging);
    for (int p = 0; p < mine; p++) {
        for (int s = 0; s < G; s++) {
            Episode& e = episodes[p][s];
            Rollout r;
            r.group = first_group + index[p];
            r.item = items[p];
            r.sample = s;
            r.model_mask = e.model_mask();
            r.completion = std::move(e.completion);
            r.truncated = e.truncated;
            r.text = completion_text(tokenizer_, r.completion);
            r.spans = std::move(e.spans);
            r.turns = e.turns;
            r.tool_calls = e.tool_calls;
            r.malformed_calls = e.malformed_calls;
            r.tool_errors = e.tool_errors;
            r.end = std::move(e.end);
            r.env = std::move(e.env);
            r.step_reward = e.step_reward;
            r.has_step_reward = e.has_step_reward;
            r.error = std::move(e.error);
            *generated_tokens += static_cast<int64_t>(r.model_tokens());
            out->push_back(std::move(r));
        }
    }
}

std::vector<int32_t> trained_sequence(const TaskItem& item, const Rollout& r) {
    std::vector<int32_t> seq = r.prompt.empty() ? item.prompt_ids : r.prompt;
    seq.insert(seq.end(), r.completion.begin(), r.completion.end());
    return seq;
}

void RlTrainer::pack(const std::vector<Rollout>& rollouts, const std::vector<size_t>& micro,
                     PackedBatch* batch) const {
    batch->clear();
    for (size_t idx : micro) {
        const Rollout& r = rollouts[idx];
        const std::vector<int32_t> seq = trained_sequence(task_.train[r.item], r);
        std::vector<int32_t> inputs(seq.begin(), seq.end() - 1), next(seq.begin() + 1, seq.end());
        batch->add_sequence(inputs, next, std::vector<float>(inputs.size(), 0.0f));
    }
}

std::vector<std::vector<size_t>> RlTrainer::micro_batches(const std::vector<Rollout>& rollouts,
                                                          const std::vector<size_t>& mb) const {
    const int64_t cap = cfg_.train.micro_batch_tokens;
    std::vector<std::vector<size_t>> micros;
    int64_t rows = 0;
    for (size_t idx : mb) {
        const Rollout& r = rollouts[idx];
        if (!r.in_loss) continue;
        const int64_t n = static_cast<int64_t>(prompt_ids(r).size() + r.completion.size()) - 1;
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
    // Only this rank's share of the micro-batches: the update reads these sequences' log-probs
    // on this rank alone (the same micro-batches, so the same bits as its own forward).
    const std::vector<std::vector<size_t>> micros = micro_batches(rollouts, mb);
    const auto [lo, hi] = rank_share(micros.size());
    PackedBatch batch;
    for (size_t i = lo; i < hi; i++) {
        const std::vector<size_t>& micro = micros[i];
        pack(rollouts, micro, &batch);
        model.forward(batch);
        const float* losses = model.token_losses();
        for (size_t j = 0; j < micro.size(); j++) {
            Rollout& r = rollouts[micro[j]];
            const int start = batch.seq_start[j];
            const int p = static_cast<int>(prompt_ids(r).size());
            std::vector<float>& dst = reference ? r.ref_logp : r.old_logp;
            dst.clear();
            for (size_t t = 0; t < r.completion.size(); t++) {
                if (r.model_mask.empty() || r.model_mask[t])
                    dst.push_back(-losses[start + p - 1 + t]);
            }
        }
    }
}

void RlTrainer::train_step() {
    const auto t_step = Clock::now();
    RolloutBatch b = collect_rollouts();
    const std::vector<size_t> batch = assign_advantages(&b);
    const auto t_train0 = Clock::now();
    const UpdateStats st = train_on(&b, batch);
    const double t_train = seconds_since(t_train0);
    step_++;
    log_step(b, st, t_train, t_step);
}

RolloutBatch RlTrainer::collect_rollouts() {
    RolloutBatch b;
    b.multi_turn = cfg_.env.name != EnvKind::single_turn;
    while (b.rounds < cfg_.algorithm.max_generation_batches) {
        const size_t first = b.rollouts.size();
        const int first_group = b.rollouts.empty() ? 0 : b.rollouts.back().group + 1;
        auto t0 = Clock::now();
        Judging judging;
        generate_group_batch(&b.rollouts, &b.generated_tokens, &judging, first_group);
        b.time_generate_s += seconds_since(t0);
        t0 = Clock::now();
        score_rubrics(b.rollouts, first, judging);
        score_python(b.rollouts, first);
        // A verifier that hangs on many samples stops the run with that said, rather than
        // leaving a thread per sample running.
        if (abandoned_calls().load() >= kMaxAbandonedCalls) {
            throw Error("rl: the task's verifier: " + std::to_string(kMaxAbandonedCalls) +
                        " calls are still running past rewards.verifier_timeout_s: it hangs on "
                        "what the model writes (earlier steps' samples.jsonl marks them "
                        "reward_timeout)");
        }
        int timeouts = 0;
        for (size_t i = first; i < b.rollouts.size(); i++) {
            score(&b.rollouts[i]);
            timeouts += b.rollouts[i].error.rfind("correct: reward_timeout", 0) == 0;
        }
        if (timeouts > 0) {
            log_ << "verifier: " << timeouts << " of " << b.rollouts.size() - first
                 << " samples got no verdict within " << cfg_.rewards.verifier_timeout_s
                 << " s and are excluded (reward_timeout)\n";
        }
        b.time_reward_s += seconds_since(t0);
        if (dist::size() > 1) gather_round(&b, first);
        b.rounds++;
        select_groups(&b, first);
        if (!cfg_.algorithm.dynamic_sampling ||
            (int)b.kept_groups.size() >= cfg_.rollout.prompts_per_step) {
            break;
        }
    }
    return b;
}

void RlTrainer::gather_round(RolloutBatch* b, size_t first) {
    // Every rank's scored share of the round, in group order: the round as one process has it.
    const std::vector<Rollout> mine(std::make_move_iterator(b->rollouts.begin() + first),
                                    std::make_move_iterator(b->rollouts.end()));
    b->rollouts.resize(first);
    std::vector<Rollout> all;
    for (const std::string& m : dist::allgather(rollouts_to_message(mine))) {
        for (Rollout& r : rollouts_from_message(m)) all.push_back(std::move(r));
    }
    std::stable_sort(all.begin(), all.end(), [](const Rollout& x, const Rollout& y) {
        return x.group != y.group ? x.group < y.group : x.sample < y.sample;
    });
    for (Rollout& r : all) b->rollouts.push_back(std::move(r));
    // The round's generated ids, every rank's (this rank counted its own).
    for (const Rollout& r : mine) b->generated_tokens -= static_cast<int64_t>(r.model_tokens());
    for (size_t i = first; i < b->rollouts.size(); i++) {
        b->generated_tokens += static_cast<int64_t>(b->rollouts[i].model_tokens());
    }
}

void RlTrainer::select_groups(RolloutBatch* b, size_t first) const {
    const int G = cfg_.rollout.samples_per_prompt;
    const bool dynamic = cfg_.algorithm.dynamic_sampling;
    for (size_t g0 = first; g0 < b->rollouts.size(); g0 += G) {
        b->groups_total++;
        // Whether the group's valid samples all share one reward, and one correctness
        // (all right or all wrong: DAPO's filter, verl's filter_groups metric acc).
        double lo = INFINITY, hi = -INFINITY, acc_lo = INFINITY, acc_hi = -INFINITY;
        int valid = 0, judged = 0;
        for (int s = 0; s < G; s++) {
            const Rollout& r = b->rollouts[g0 + s];
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
        b->groups_zero_std += zero_std;
        b->groups_judged += judged >= 2;
        b->groups_all_same_accuracy += judged >= 2 && same_accuracy;
        const bool uninformative =
            cfg_.algorithm.dynamic_sampling_metric == DynamicSamplingMetric::accuracy
                ? same_accuracy
                : zero_std;
        if ((!dynamic || !uninformative) &&
            (int)b->kept_groups.size() < cfg_.rollout.prompts_per_step) {
            b->kept_groups.push_back(b->rollouts[g0].group);
        }
    }
}

std::vector<size_t> RlTrainer::assign_advantages(RolloutBatch* b) const {
    std::vector<Rollout>& rollouts = b->rollouts;
    std::vector<size_t> batch;
    std::vector<char> keep(rollouts.empty() ? 0 : rollouts.back().group + 1, 0);
    for (int g : b->kept_groups) keep[g] = 1;
    for (size_t i = 0; i < rollouts.size(); i++)
        if (keep[rollouts[i].group]) batch.push_back(i);
    std::vector<double> rewards;
    std::vector<int> group, lengths;
    std::vector<uint8_t> valid;
    for (size_t i : batch) {
        rewards.push_back(rollouts[i].reward);
        group.push_back(rollouts[i].group);
        valid.push_back(rollouts[i].valid);
        lengths.push_back(static_cast<int>(rollouts[i].model_tokens()));
    }
    const auto adv = compute_advantages(cfg_.algorithm.advantage, rewards, group, valid, lengths);
    const bool filter = cfg_.algorithm.overlong_filter;
    for (size_t j = 0; j < batch.size(); j++) {
        Rollout& r = rollouts[batch[j]];
        r.kept = true;
        r.advantage = adv[j];
        r.in_loss = r.valid && r.model_tokens() > 0 && !(filter && r.truncated);
    }
    return batch;
}

UpdateStats RlTrainer::train_on(RolloutBatch* b, const std::vector<size_t>& batch) {
    std::vector<Rollout>& rollouts = b->rollouts;
    const std::vector<int>& kept = b->kept_groups;
    const int n_mb = cfg_.algorithm.minibatches;
    std::vector<std::vector<size_t>> minibatches(n_mb);
    for (size_t j = 0; j < batch.size(); j++) {
        const size_t pos = static_cast<size_t>(
            std::find(kept.begin(), kept.end(), rollouts[batch[j]].group) - kept.begin());
        minibatches[pos * n_mb / std::max<size_t>(kept.size(), 1)].push_back(batch[j]);
    }
    // Old log-probabilities of the mini-batches trained after the first optimizer step, and the
    // reference model's, before any weight changes (the first mini-batch records its own).
    for (int m = 1; m < n_mb; m++) score_logprobs(*model_, rollouts, minibatches[m], false);
    if (reference_) {
        for (int m = 0; m < n_mb; m++) score_logprobs(*reference_, rollouts, minibatches[m], true);
    }
    UpdateStats st;
    for (int it = 0; it < cfg_.algorithm.updates_per_batch; it++) {
        for (int m = 0; m < n_mb; m++) update(rollouts, minibatches[m], it, &st);
    }
    return st;
}

namespace {

// The additive fields of UpdateStats, in one order (the update's micro-batch statistics).
std::array<double, 10> update_stats_fields(const UpdateStats& s) {
    return {s.loss,
            s.loss_stats.loss,
            (double)s.loss_stats.tokens,
            (double)s.loss_stats.clipped_low,
            (double)s.loss_stats.clipped_high,
            s.loss_stats.kl_sum,
            s.loss_stats.ratio_sum,
            s.entropy_sum,
            (double)s.entropy_tokens,
            (double)s.train_rows};
}

void set_update_stats_fields(UpdateStats* s, const std::array<double, 10>& f, int64_t micro) {
    s->loss = f[0];
    s->loss_stats.loss = f[1];
    s->loss_stats.tokens = (int64_t)f[2];
    s->loss_stats.clipped_low = (int64_t)f[3];
    s->loss_stats.clipped_high = (int64_t)f[4];
    s->loss_stats.kl_sum = f[5];
    s->loss_stats.ratio_sum = f[6];
    s->entropy_sum = f[7];
    s->entropy_tokens = (int64_t)f[8];
    s->train_rows = (int64_t)f[9];
    s->micro_batches = micro;
}

}  // namespace

// This rank's consecutive share [lo, hi) of n micro-batches (all of them alone).
std::pair<size_t, size_t> rank_share(size_t n) {
    const size_t ranks = (size_t)dist::size(), me = (size_t)dist::rank();
    return {n * me / ranks, n * (me + 1) / ranks};
}

// to (+)= part, field by field (`first`: to = part, not 0 + part).
void add_update_stats(UpdateStats* to, const UpdateStats& part, bool first) {
    std::array<double, 10> a = update_stats_fields(*to);
    const std::array<double, 10> b = update_stats_fields(part);
    for (size_t i = 0; i < a.size(); i++) a[i] = first ? b[i] : a[i] + b[i];
    set_update_stats_fields(to, a, (first ? 0 : to->micro_batches) + part.micro_batches);
}

void sum_update_stats_across_ranks(UpdateStats* s) {
    std::array<double, 10> f = update_stats_fields(*s);
    dist::sum_in_rank_order(f.data(), f.size());
    set_update_stats_fields(s, f, dist::sum(s->micro_batches));
}

void RlTrainer::update(std::vector<Rollout>& rollouts, const std::vector<size_t>& mb, int iteration,
                       UpdateStats* st) {
    MiniBatchSize size;
    for (size_t idx : mb) {
        if (!rollouts[idx].in_loss) continue;
        size.sequences++;
        size.tokens += static_cast<int64_t>(rollouts[idx].model_tokens());
    }
    if (size.sequences == 0) return;
    // Each micro-batch's gradient and statistics are computed alone and added in order; under
    // mpirun each rank takes a consecutive share of the micro-batches and the shares are summed
    // in rank order (dist::sum_in_rank_order), so with at most one micro-batch per rank the
    // update is one process's bit for bit (as SFT's accumulation, docs/SCALING.md).
    const std::vector<std::vector<size_t>> micros = micro_batches(rollouts, mb);
    const size_t ranks = (size_t)dist::size();
    const auto [lo, hi] = rank_share(micros.size());
    const Model::Trainable tr = model_->trainable();
    if (hi - lo > 1) grad_sum_.resize(tr.size);
    UpdateStats sum;  // this rank's micro-batches' statistics
    PackedBatch batch;
    SequenceScratch scratch;
    model_->zero_grads();
    for (size_t i = lo; i < hi; i++) {
        const std::vector<size_t>& micro = micros[i];
        if (i > lo) model_->zero_grads();
        UpdateStats part;
        pack(rollouts, micro, &batch);
        model_->forward(batch);
        const ForwardRows rows{model_->token_losses(), model_->logits(),
                               model_->config().vocab_size, batch.loss_weight.data()};
        part.train_rows += batch.n_tokens();
        part.micro_batches++;
        for (size_t j = 0; j < micro.size(); j++) {
            Rollout& r = rollouts[micro[j]];
            const int p = static_cast<int>(prompt_ids(r).size());
            add_sequence_gradient(loss_, size, rows, batch.seq_start[j] + p - 1, iteration == 0, r,
                                  scratch, &part);
        }
        model_->backward();
        add_update_stats(&sum, part, i == lo);
        if (hi - lo > 1 && i == lo) {
            std::copy(tr.grads, tr.grads + tr.size, grad_sum_.begin());  // not 0 + g: keeps -0
        } else if (hi - lo > 1) {
            for (size_t k = 0; k < tr.size; k++) grad_sum_[k] = grad_sum_[k] + tr.grads[k];
        }
    }
    if (hi - lo > 1) std::copy(grad_sum_.begin(), grad_sum_.end(), tr.grads);
    if (ranks > 1) {
        dist::sum_in_rank_order(tr.grads, tr.size);
        sum_update_stats_across_ranks(&sum);
    }
    add_update_stats(st, sum, false);
    optimizer_step(st);
}

void RlTrainer::optimizer_step(UpdateStats* st) {
    const double clip = cfg_.train.grad_clip;
    const double gnorm =
        clip > 0
            ? kernels::clip_grad_norm(model_->trainable().grads, model_->trainable().size, clip)
            : kernels::global_norm(model_->trainable().grads, model_->trainable().size);
    // A loss or gradient that went non-finite stops the run before the update reaches the
    // weights, so no checkpoint of that state is ever written (earlier ones stay).
    if (!std::isfinite(st->loss) || !std::isfinite(gnorm)) {
        throw Error("rl: step " + std::to_string(step_ + 1) + " (optimizer step " +
                    std::to_string(optimizer_steps_ + 1) + "): the " +
                    (std::isfinite(st->loss) ? "gradient norm is " + std::to_string(gnorm)
                                             : "loss is " + std::to_string(st->loss)) +
                    "; stopped before the update, without a checkpoint of this state");
    }
    const kernels::AdamWParams hp{lr_at(optimizer_steps_), static_cast<float>(cfg_.train.beta1),
                                  static_cast<float>(cfg_.train.beta2),
                                  static_cast<float>(cfg_.train.eps),
                                  static_cast<float>(cfg_.train.weight_decay)};
    adamw_step(*model_, adam_m_, adam_v_, hp, optimizer_steps_ + 1);
    optimizer_steps_++;
    st->grad_norm_sum += gnorm;
    st->optimizer_steps++;
}

float RlTrainer::lr_at(int64_t optimizer_step) const {
    return kernels::lr_at(optimizer_step, cfg_.total_optimizer_steps(), cfg_.train.warmup_steps,
                          static_cast<float>(cfg_.train.lr),
                          static_cast<float>(cfg_.train.min_lr_ratio), cfg_.train.schedule);
}

void RlTrainer::log_step(const RolloutBatch& b, const UpdateStats& st, double t_train,
                         Clock::time_point t_step) {
    // Each rank judges the groups it generated (its scorer, the judge cache shared through
    // SQLite's locking): the judge's totals are the sum over ranks.
    json judge;
    if (rubric_) {
        judge = rubric_->judge_stats().to_json();
        if (dist::size() > 1) {
            const std::vector<std::string> all = dist::allgather(judge.dump());
            std::vector<json> ranks;
            for (const std::string& r : all) ranks.push_back(json::parse(r));
            for (json::iterator it = judge.begin(); it != judge.end(); ++it) {
                int64_t count = 0;
                double amount = 0;
                for (const json& r : ranks) {
                    if (it->is_number_integer())
                        count += r.at(it.key()).get<int64_t>();
                    else
                        amount += r.at(it.key()).get<double>();
                }
                *it = it->is_number_integer() ? json(count) : json(amount);
            }
        }
    }
    // Under mpirun every rank trains on the same rollouts; rank 0 evaluates and writes.
    if (!dist::is_root()) return;
    json line =
        step_metrics(step_, b, st, optimizer_steps_,
                     lr_at(std::max<int64_t>(optimizer_steps_ - 1, 0)), loss_.kl_beta > 0, t_train);
    if (rubric_) line["judge"] = judge;
    const int64_t eval_every = cfg_.train.eval_every;
    const bool last = step_ == cfg_.train.steps;
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
    append_file_checked(
        run_dir_ / "samples.jsonl",
        step_samples_jsonl(step_, b.rollouts, task_, b.multi_turn ? &tokenizer_ : nullptr));
    append_jsonl(run_dir_ / "metrics.jsonl", line);
    last_metrics_ = line.dump();
    const double eta = (cfg_.train.steps - step_) * (elapsed_s_ / std::max<int64_t>(1, step_));
    const std::string text =
        step_console_line(line, cfg_.train.steps, cfg_.rollout.prompts_per_step, eta);
    if (step_ % cfg_.train.log_every == 0 || last || step_ == 1) {
        log_ << text << "\n" << std::flush;
    } else if (isatty(STDERR_FILENO)) {
        std::fprintf(stderr, "\r%s\r", text.c_str());
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
        if ((int64_t)items.size() == cfg_.train.eval_problems) break;
        if (item.has_gold) items.push_back(item);
    }
    SamplingParams params;
    params.temperature = static_cast<float>(cfg_.rollout.temperature);
    params.top_p = static_cast<float>(cfg_.rollout.top_p);
    params.top_k = cfg_.rollout.top_k;
    params.max_tokens = loss_.max_completion_tokens;
    if (cfg_.env.name != EnvKind::single_turn && cfg_.env.name != EnvKind::server) {
        return evaluate_episodes(items, cfg_.train.eval_samples, params,
                                 Rng::mix(cfg_.seed, 0xE7A1));
    }
    return evaluate_task(*model_, tokenizer_, task_, items, cfg_.train.eval_samples, params,
                         Rng::mix(cfg_.seed, 0xE7A1));
}

TaskEvaluation RlTrainer::evaluate_episodes(const std::vector<TaskItem>& items, int samples,
                                            const SamplingParams& params, uint64_t seed) {
    const EpisodeLimits limits = episode_limits(cfg_.env, loss_.max_completion_tokens);
    return rl::evaluate_episodes(EpisodeSource{model_.get(), generator_}, tokenizer_, cfg_.env,
                                 task_, items, samples, params, seed, limits);
}

void RlTrainer::run(int64_t until_step) {
    const int64_t total = cfg_.train.steps;
    if (until_step < 0 || until_step > total) until_step = total;
    const int64_t every = cfg_.train.checkpoint_every;
    while (step_ < until_step) {
        train_step();
        if (step_ == total || (every > 0 && step_ % every == 0)) {
            if (dist::is_root()) save_checkpoint();
        }
    }
}

void RlTrainer::save_checkpoint() {
    TrainerCheckpoint c;
    c.model = model_.get();
    c.adam_m = &adam_m_;
    c.adam_v = &adam_v_;
    c.lora_base = cfg_.model.path;
    c.write_tokenizer = [&](const fs::path& to) { copy_tokenizer_files(cfg_.model.path, to); };
    c.config_yaml = config_.dump();
    c.state = {{"format", "crucible-rl-state-1"},
               {"step", step_},
               {"optimizer_steps", optimizer_steps_},
               {"prompt_cursor", prompt_cursor_},
               {"seed", cfg_.seed}};
    write_trainer_checkpoint(checkpoint_dir(step_), c, "rl", step_, log_);
}

void RlTrainer::load_checkpoint(const fs::path& dir) {
    const json state = read_trainer_state(dir, "crucible-rl-state-1",
                                          {"step", "optimizer_steps", "prompt_cursor"}, "RL");
    model_ = load_model(dir, frozen_base_dtype());
    load_optimizer_state(*model_, dir / "optimizer.safetensors", &adam_m_, &adam_v_);
    step_ = state["step"].get<int64_t>();
    optimizer_steps_ = state["optimizer_steps"].get<int64_t>();
    prompt_cursor_ = state["prompt_cursor"].get<int64_t>();
}

}  // namespace crucible::rl
