// Reinforcement learning with verifiable rewards in one process: the generation engine samples
// groups of completions from the very weights being trained, rewards score them, advantages
// and the clipped objective (src/rl/objective) turn them into gradients, AdamW steps. Runs
// checkpoint atomically and resume bit-identically; metrics.jsonl and samples.jsonl record
// every step and every rollout.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/model.h"
#include "reward/python_reward.h"
#include "rl/agent_server.h"
#include "rl/episodes.h"
#include "rl/evaluate.h"
#include "rl/objective.h"
#include "rl/rl_config.h"
#include "rl/rollout.h"
#include "rl/task.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::reward {
class RubricScorer;
}

namespace crucible::rl {

// A reward component: the score of one completion (text without the end-of-sequence token,
// and its token ids). It may throw or return NaN: the sample is then excluded and logged. It
// returns nullopt where it does not apply to the item: the sample then has no such component
// (no value in its reward, its logs or the component's mean), which is not a 0.
struct RewardFunction {
    std::string name;
    double weight = 1.0;  // 0: computed and logged only
    std::function<std::optional<double>(const TaskItem& item, const std::string& completion,
                                        const std::vector<int32_t>& completion_ids, bool truncated)>
        fn;
};

// Gives a config with an empty run.name a fresh one: "rl-YYYYMMDD-HHMMSS" (UTC).
void resolve_rl_run_name(Config& config);

// Refuses conflicting settings, naming the keys (read_rl_config's checks).
void validate_rl_config(const Config& config);

class RlTrainer {
  public:
    // Builds (or, with resume, reloads) the run described by `config` (see kRlConfigDefaults).
    // `extra_rewards` are added to the config's reward components (library users, tests).
    // `task`, when given, replaces the one task.* describes (a library user's own task; its
    // prompts must be tokenized with the model's tokenizer).
    RlTrainer(const Config& config, bool resume, std::ostream& log,
              std::vector<RewardFunction> extra_rewards = {}, std::optional<Task> task = {});
    ~RlTrainer();

    // Trains until `until_step` (default: train.steps), checkpointing on the way.
    void run(int64_t until_step = -1);
    // Held-out accuracy (fully correct samples): train.eval_samples samples of the first
    // train.eval_problems held-out problems that have a gold answer.
    TaskEvaluation evaluate();

    // Replaces the generation engine for rollouts and held-out episodes (a scripted policy in
    // tests); an empty one restores the engine.
    void set_generator(Generator generator) { generator_ = std::move(generator); }

    int64_t step() const { return step_; }
    Model& model() { return *model_; }
    const Task& task() const { return task_; }
    const TextTokenizer& tokenizer() const { return tokenizer_; }
    const std::filesystem::path& run_dir() const { return run_dir_; }
    std::filesystem::path checkpoint_dir(int64_t step) const;
    // The last step's metrics line (what metrics.jsonl received).
    const std::string& last_metrics() const { return last_metrics_; }

  private:
    // One step, in its phases: rollouts (generation rounds, rewards, the group filter),
    // advantages, updates, logs.
    void train_step();
    RolloutBatch collect_rollouts();
    // Counts the groups of the round that starts at rollouts[first] and keeps the
    // informative ones (every one without dynamic sampling) up to prompts_per_step.
    void select_groups(RolloutBatch* b, size_t first) const;
    // Under mpirun: replaces this rank's share of the round that starts at rollouts[first]
    // with every rank's, in group order (rl/rollout_wire.h).
    void gather_round(RolloutBatch* b, size_t first);
    // Advantages over the kept groups and the loss mask; returns the kept rollouts' indices.
    std::vector<size_t> assign_advantages(RolloutBatch* b) const;
    // mu passes over the batch, each over `minibatches` mini-batches split by groups.
    UpdateStats train_on(RolloutBatch* b, const std::vector<size_t>& batch);
    // metrics.jsonl (with held-out accuracy when due), samples.jsonl, the console.
    void log_step(const RolloutBatch& b, const UpdateStats& st, double t_train,
                  std::chrono::steady_clock::time_point t_step);

    // Rubric scoring in flight: one task per group, started as soon as the group's last
    // sample finished decoding, so judge calls overlap the generation of the other groups.
    struct Judging;
    void generate_group_batch(std::vector<Rollout>* out, int64_t* generated_tokens,
                              Judging* judging, int first_group);
    // env server: the round's groups as episodes an external agent runs (rl/agent_server.h).
    void generate_agent_batch(std::vector<Rollout>* out, int64_t* generated_tokens);
    // A rollout's prompt ids: its own (an agent's session) or its item's.
    const std::vector<int32_t>& prompt_ids(const Rollout& r) const {
        return r.prompt.empty() ? task_.train[r.item].prompt_ids : r.prompt;
    }
    // The sample's reward components and reward: the task's verdict, then rewards_.
    void score(Rollout* r);
    bool has_eval_items() const;  // held-out items with a gold answer exist
    // Waits for the rubric scores of rollouts [first, end) and stores them in the rollouts.
    void score_python(std::vector<Rollout>& rollouts, size_t first);
    void score_rubrics(std::vector<Rollout>& rollouts, size_t first, Judging& judging);
    // One optimizer step over `mb` (indices into rollouts) with forward/backward in
    // micro-batches; accumulates statistics.
    // A LoRA run in bf16 never needs its base's fp32 matrices: it loads them as bf16 alone.
    MatmulDtype frozen_base_dtype() const {
        return cfg_.lora.rank > 0 ? cfg_.train.dtype : MatmulDtype::float32;
    }
    void update(std::vector<Rollout>& rollouts, const std::vector<size_t>& mb, int iteration,
                UpdateStats* st);
    // Clips the accumulated gradient, refuses a non-finite loss or norm, and steps AdamW.
    void optimizer_step(UpdateStats* st);
    float lr_at(int64_t optimizer_step) const;  // train.* schedule over the whole run
    std::vector<std::vector<size_t>> micro_batches(const std::vector<Rollout>& rollouts,
                                                   const std::vector<size_t>& mb) const;
    // Episodes of the environment (env.*) on held-out items, scored like evaluate_task.
    TaskEvaluation evaluate_episodes(const std::vector<TaskItem>& items, int samples,
                                     const SamplingParams& params, uint64_t seed);
    void pack(const std::vector<Rollout>& rollouts, const std::vector<size_t>& micro,
              PackedBatch* batch) const;
    void score_logprobs(Model& model, std::vector<Rollout>& rollouts, const std::vector<size_t>& mb,
                        bool reference);
    // The constructor's parts: the reward components besides the task's own (and the rubric
    // scorer), the checks that need the task or the model, and the run folder (new or resumed).
    void set_up_rewards(std::vector<RewardFunction> extra_rewards);
    void check_rewards_pay_every_item() const;
    void open_run(bool resume, const std::filesystem::path& start_from);
    void check_fits_context(const std::filesystem::path& start_from) const;
    void save_checkpoint();
    void load_checkpoint(const std::filesystem::path& dir);
    size_t prompt_at(int64_t k);  // the train item at position k of the epoch-shuffled stream

    const Config config_;  // as given: config.yaml and the resume comparison
    const RlConfig cfg_;   // the same, read and checked once
    std::ostream& log_;
    std::filesystem::path run_dir_;
    TextTokenizer tokenizer_;
    Task task_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Model> reference_;  // only when algorithm.kl_beta > 0
    std::vector<RewardFunction> rewards_;
    std::unique_ptr<reward::RubricScorer> rubric_;      // when rewards.rubric != 0
    std::unique_ptr<reward::PythonRewardPool> python_;  // when rewards.python.file is set
    PolicyLossOptions loss_;
    std::vector<float> adam_m_, adam_v_;
    std::vector<float> grad_sum_;  // an update's micro-batch gradients, added in order
    int64_t step_ = 0, optimizer_steps_ = 0, prompt_cursor_ = 0;
    int64_t perm_epoch_ = -1;
    std::vector<size_t> perm_;
    double elapsed_s_ = 0.0;
    std::string last_metrics_;
    Generator generator_;  // empty: the engine on model_
    // env server: the server on model_ and the agent (last: stopped before the model goes).
    std::unique_ptr<AgentServer> agents_;
};

// One micro-batch's forward pass, for the sequences packed in it.
struct ForwardRows {
    const float* losses;  // (rows) -log p of each row's next token
    const float* logits;  // (rows, V)
    int V;
    float* loss_weight;  // (rows) the weights Model::backward differentiates
};

struct SequenceScratch {
    std::vector<float> logp;
    std::vector<double> dlogp, entropy;
};

// One sequence whose completion's ids are predicted at rows [row0, row0 + completion size):
// its log-probabilities (and on the first pass the policy's entropy there), its part of the
// objective (masked_sequence_loss: the model's ids only), and its rows' loss weights, which
// are exactly 0 at the rows that predict an observation's ids.
// UpdateStats' additive fields: to (+)= part (`first`: to = part exactly, not 0 + part), and the
// sum over the ranks in rank order (every rank gets it; a world of one keeps its own).
void add_update_stats(UpdateStats* to, const UpdateStats& part, bool first);
// This rank's consecutive share [lo, hi) of n micro-batches (under mpirun; alone all of them).
std::pair<size_t, size_t> rank_share(size_t n);
void sum_update_stats_across_ranks(UpdateStats* s);

void add_sequence_gradient(const PolicyLossOptions& loss, const MiniBatchSize& size,
                           const ForwardRows& f, int row0, bool first_pass, Rollout& r,
                           SequenceScratch& s, UpdateStats* st);

// The sequence a rollout trains on: its prompt's ids (its own when set, else the item's), then
// its completion (the model's ids and the observations' ids, in order).
std::vector<int32_t> trained_sequence(const TaskItem& item, const Rollout& r);

}  // namespace crucible::rl
