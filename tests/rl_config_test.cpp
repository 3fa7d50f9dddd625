// read_rl_config: every key of the RL schema lands in its typed field, and the rules that tie
// keys together refuse a config with the messages (and in the order) the trainer has always
// given.
#include "rl/rl_config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rl/rl_trainer.h"
#include "test_util.h"

namespace crucible::rl {
namespace {

// The dotted keys of a YAML schema's leaves.
void leaf_keys(const YAML::Node& node, const std::string& prefix, std::set<std::string>* out) {
    for (const auto& kv : node) {
        const std::string key = prefix + kv.first.as<std::string>();
        if (kv.second.IsMap()) {
            leaf_keys(kv.second, key + ".", out);
        } else {
            out->insert(key);
        }
    }
}

Config with(const std::vector<std::string>& sets) {
    Config c(kRlConfigDefaults);
    c.set("model.path=some/checkpoint");
    for (const std::string& s : sets) c.set(s);
    return c;
}

TEST(RlConfig, EveryKeyOfTheSchemaIsReadIntoItsField) {
    // A value other than the default for every key (each passing the cross-key rules).
    const std::vector<std::pair<std::string, std::string>> values = {
        {"run.name", "r1"},
        {"run.dir", "elsewhere"},
        {"seed", "77"},
        {"model.path", "m/step-3"},
        {"task.name", "jsonl"},
        {"task.data", "t.jsonl"},
        {"task.eval_data", "e.jsonl"},
        {"task.verifier", "math"},
        {"task.chat", "true"},
        {"task.train_examples", "11"},
        {"task.eval_examples", "12"},
        {"task.max_digits", "5"},
        {"env.name", "calculator"},
        {"env.max_turns", "7"},
        {"env.max_tokens_per_turn", "21"},
        {"env.max_context", "900"},
        {"env.max_observation_tokens", "64"},
        {"env.tool_workers", "3"},
        {"env.step_timeout_s", "12.5"},
        {"env.syntax", "hermes"},
        {"env.index", "some/index"},
        {"env.top_k", "5"},
        {"env.max_passage_chars", "99"},
        {"env.tool_timeout_s", "2.5"},
        {"env.python_memory_mb", "300"},
        {"env.max_output_chars", "77"},
        {"rewards.verifier_timeout_s", "2.5"},
        {"env.server.host", "0.0.0.0"},
        {"env.server.port", "8123"},
        {"env.server.session_timeout_s", "33.5"},
        {"env.server.agent", "python3 agent.py"},
        {"rewards.correct", "0.5"},
        {"rewards.format", "0.25"},
        {"rewards.soft_overlong", "0.75"},
        {"rewards.rubric", "2"},
        {"rewards.python.file", "r.py"},
        {"rewards.python.function", "f"},
        {"rewards.python.signature", "verl"},
        {"rewards.python.timeout_s", "1.5"},
        {"rewards.python.workers", "3"},
        {"rewards.python.sandbox", "true"},
        {"rewards.python.weight", "0.5"},
        {"rubric.judge", "openai:http://x#m"},
        {"rubric.mode", "one-call"},
        {"rubric.aggregation", "weighted_mean"},
        {"rubric.votes", "3"},
        {"rubric.temperature", "0.5"},
        {"rubric.max_tokens", "99"},
        {"rubric.concurrency", "4"},
        {"rubric.timeout_s", "9.5"},
        {"rubric.cache", "c.sqlite"},
        {"rubric.price_in", "1.5"},
        {"rubric.price_out", "2.5"},
        {"rollout.prompts_per_step", "6"},
        {"rollout.samples_per_prompt", "5"},
        {"rollout.temperature", "0.8"},
        {"rollout.top_p", "0.9"},
        {"rollout.top_k", "40"},
        {"rollout.max_new_tokens", "30"},
        {"algorithm.advantage", "rloo"},
        {"algorithm.ratio", "token"},
        {"algorithm.clip_low", "0.1"},
        {"algorithm.clip_high", "0.28"},
        {"algorithm.dual_clip", "3"},
        {"algorithm.loss_aggregation", "seq_sum_norm"},
        {"algorithm.kl_beta", "0.04"},
        {"algorithm.kl_estimator", "k2"},
        {"algorithm.overlong_filter", "true"},
        {"algorithm.overlong_cache", "7"},
        {"algorithm.dynamic_sampling", "true"},
        {"algorithm.dynamic_sampling_metric", "reward"},
        {"algorithm.max_generation_batches", "4"},
        {"algorithm.updates_per_batch", "2"},
        {"algorithm.minibatches", "3"},
        {"train.steps", "13"},
        {"train.lr", "0.001"},
        {"train.min_lr_ratio", "0.1"},
        {"train.warmup_steps", "2"},
        {"train.schedule", "cosine"},
        {"train.weight_decay", "0.01"},
        {"train.beta1", "0.8"},
        {"train.beta2", "0.95"},
        {"train.eps", "1e-6"},
        {"train.grad_clip", "0.5"},
        {"train.dtype", "bfloat16"},
        {"lora.rank", "8"},
        {"lora.alpha", "16"},
        {"lora.targets", "q_proj, down_proj"},
        {"train.micro_batch_tokens", "123"},
        {"train.checkpoint_every", "4"},
        {"train.log_every", "3"},
        {"train.eval_every", "6"},
        {"train.eval_samples", "2"},
        {"train.eval_problems", "17"},
    };
    std::set<std::string> schema, listed;
    leaf_keys(YAML::Load(kRlConfigDefaults), "", &schema);
    Config c(kRlConfigDefaults);
    for (const auto& [key, value] : values) {
        listed.insert(key);
        c.set(key + "=" + value);
    }
    EXPECT_EQ(listed, schema) << "this test must set (and check) every key of the schema";

    const RlConfig r = read_rl_config(c);
    EXPECT_EQ(r.run.name, "r1");
    EXPECT_EQ(r.run.dir, "elsewhere");
    EXPECT_EQ(r.seed, 77u);
    EXPECT_EQ(r.model.path, "m/step-3");
    EXPECT_EQ(r.task.name, "jsonl");
    EXPECT_EQ(r.task.data, "t.jsonl");
    EXPECT_EQ(r.task.eval_data, "e.jsonl");
    EXPECT_EQ(r.task.verifier, "math");
    EXPECT_TRUE(r.task.chat);
    EXPECT_EQ(r.task.train_examples, 11);
    EXPECT_EQ(r.task.eval_examples, 12);
    EXPECT_EQ(r.env.syntax, ToolSyntax::hermes);
    EXPECT_EQ(r.env.index, "some/index");  // opened only for the search environment
    EXPECT_EQ(r.env.search_index, nullptr);
    EXPECT_EQ(r.env.top_k, 5);
    EXPECT_EQ(r.env.max_passage_chars, 99);
    EXPECT_EQ(r.env.tool_timeout_s, 2.5);
    EXPECT_EQ(r.env.python_memory_mb, 300);
    EXPECT_EQ(r.env.max_output_chars, 77);
    EXPECT_EQ(r.rewards.verifier_timeout_s, 2.5);
    EXPECT_EQ(r.env.server_host, "0.0.0.0");
    EXPECT_EQ(r.env.server_port, 8123);
    EXPECT_EQ(r.env.session_timeout_s, 33.5);
    EXPECT_EQ(r.env.server_agent, "python3 agent.py");
    EXPECT_EQ(r.task.max_digits, 5);
    EXPECT_EQ(r.env.name, EnvKind::calculator);
    EXPECT_EQ(r.env.max_turns, 7);
    EXPECT_EQ(r.env.max_tokens_per_turn, 21);
    EXPECT_EQ(r.env.max_context, 900);
    EXPECT_EQ(r.env.max_observation_tokens, 64);
    EXPECT_EQ(r.env.tool_workers, 3);
    EXPECT_EQ(r.env.step_timeout_s, 12.5);
    EXPECT_EQ(r.rewards.correct, 0.5);
    EXPECT_EQ(r.rewards.format, 0.25);
    EXPECT_EQ(r.rewards.soft_overlong, 0.75);
    EXPECT_EQ(r.rewards.python.file, "r.py");
    EXPECT_EQ(r.rewards.python.function, "f");
    EXPECT_EQ(r.rewards.python.signature, "verl");
    EXPECT_EQ(r.rewards.python.timeout_s, 1.5);
    EXPECT_EQ(r.rewards.python.workers, 3);
    EXPECT_TRUE(r.rewards.python.sandbox);
    EXPECT_EQ(r.rewards.python.weight, 0.5);
    EXPECT_EQ(r.rewards.rubric, 2.0);
    EXPECT_EQ(r.rubric.judge, "openai:http://x#m");
    EXPECT_EQ(r.rubric.mode, "one-call");
    EXPECT_EQ(r.rubric.aggregation, "weighted_mean");
    EXPECT_EQ(r.rubric.votes, 3);
    EXPECT_EQ(r.rubric.temperature, 0.5);
    EXPECT_EQ(r.rubric.max_tokens, 99);
    EXPECT_EQ(r.rubric.concurrency, 4);
    EXPECT_EQ(r.rubric.timeout_s, 9.5);
    EXPECT_EQ(r.rubric.cache, "c.sqlite");
    EXPECT_EQ(r.rubric.price_in, 1.5);
    EXPECT_EQ(r.rubric.price_out, 2.5);
    EXPECT_EQ(r.rollout.prompts_per_step, 6);
    EXPECT_EQ(r.rollout.samples_per_prompt, 5);
    EXPECT_EQ(r.rollout.temperature, 0.8);
    EXPECT_EQ(r.rollout.top_p, 0.9);
    EXPECT_EQ(r.rollout.top_k, 40);
    EXPECT_EQ(r.rollout.max_new_tokens, 30);
    EXPECT_EQ(r.algorithm.advantage, AdvantageMode::rloo);
    EXPECT_EQ(r.algorithm.ratio, RatioLevel::token);
    EXPECT_EQ(r.algorithm.clip_low, 0.1);
    EXPECT_EQ(r.algorithm.clip_high, 0.28);
    EXPECT_EQ(r.algorithm.dual_clip, 3.0);
    EXPECT_EQ(r.algorithm.loss_aggregation, LossAggregation::seq_sum_norm);
    EXPECT_EQ(r.algorithm.kl_beta, 0.04);
    EXPECT_EQ(r.algorithm.kl_estimator, KlEstimator::k2);
    EXPECT_TRUE(r.algorithm.overlong_filter);
    EXPECT_EQ(r.algorithm.overlong_cache, 7);
    EXPECT_TRUE(r.algorithm.dynamic_sampling);
    EXPECT_EQ(r.algorithm.dynamic_sampling_metric, DynamicSamplingMetric::reward);
    EXPECT_EQ(r.algorithm.max_generation_batches, 4);
    EXPECT_EQ(r.algorithm.updates_per_batch, 2);
    EXPECT_EQ(r.algorithm.minibatches, 3);
    EXPECT_EQ(r.train.steps, 13);
    EXPECT_EQ(r.train.lr, 0.001);
    EXPECT_EQ(r.train.min_lr_ratio, 0.1);
    EXPECT_EQ(r.train.warmup_steps, 2);
    EXPECT_EQ(r.train.schedule, kernels::LrSchedule::cosine);
    EXPECT_EQ(r.train.weight_decay, 0.01);
    EXPECT_EQ(r.train.beta1, 0.8);
    EXPECT_EQ(r.train.beta2, 0.95);
    EXPECT_EQ(r.train.eps, 1e-6);
    EXPECT_EQ(r.train.grad_clip, 0.5);
    EXPECT_EQ(r.train.dtype, MatmulDtype::bfloat16);
    EXPECT_EQ(r.lora.rank, 8);
    EXPECT_EQ(r.lora.alpha, 16.0);
    EXPECT_EQ(r.lora.targets, (std::vector<std::string>{"q_proj", "down_proj"}));
    EXPECT_EQ(r.train.micro_batch_tokens, 123);
    EXPECT_EQ(r.train.checkpoint_every, 4);
    EXPECT_EQ(r.train.log_every, 3);
    EXPECT_EQ(r.train.eval_every, 6);
    EXPECT_EQ(r.train.eval_samples, 2);
    EXPECT_EQ(r.train.eval_problems, 17);

    // The objective's settings and the run's optimizer steps derive from them.
    const PolicyLossOptions o = r.loss_options();
    EXPECT_EQ(o.ratio, RatioLevel::token);
    EXPECT_EQ(o.clip_low, 0.1);
    EXPECT_EQ(o.clip_high, 0.28);
    EXPECT_EQ(o.dual_clip, 3.0);
    EXPECT_EQ(o.aggregation, LossAggregation::seq_sum_norm);
    EXPECT_EQ(o.kl_beta, 0.04);
    EXPECT_EQ(o.kl, KlEstimator::k2);
    EXPECT_EQ(o.max_completion_tokens, 30);
    EXPECT_EQ(r.total_optimizer_steps(), 13 * 2 * 3);
    // The constant schedule is the other value.
    EXPECT_EQ(read_rl_config(with({})).train.schedule, kernels::LrSchedule::constant);
}

TEST(RlConfig, RulesRefuseWithTheTrainersMessagesInItsOrder) {
    // Each message exactly as validate_rl_config gave it before the typed config (these are
    // what users see and what docs quote); of several broken rules the first listed wins.
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"algorithm.advantage=grpo2"},
         "config: algorithm.advantage: unknown value 'grpo2' (expected one of: grpo, dr_grpo, "
         "batch_std, rloo, reinforce_pp_baseline)"},
        {{"algorithm.ratio=seq"},
         "config: algorithm.ratio: unknown value 'seq' (expected one of: token, sequence)"},
        {{"algorithm.loss_aggregation=mean"},
         "config: algorithm.loss_aggregation: unknown value 'mean' (expected one of: "
         "seq_mean_token_mean, token_mean, seq_sum_norm, seq_mean_token_sum)"},
        {{"algorithm.kl_estimator=k4"},
         "config: algorithm.kl_estimator: unknown value 'k4' (expected one of: k1, k2, k3)"},
        {{"algorithm.dynamic_sampling_metric=acc"},
         "config: algorithm.dynamic_sampling_metric: unknown value 'acc' (expected accuracy or "
         "reward)"},
        {{"rollout.samples_per_prompt=1", "algorithm.advantage=rloo"},
         "config: rollout.samples_per_prompt must be >= 2: algorithm.advantage rloo subtracts the "
         "group mean, so one sample per prompt gives every advantage 0"},
        {{"algorithm.minibatches=33"},
         "config: algorithm.minibatches must not exceed rollout.prompts_per_step (mini-batches "
         "split the batch by groups)"},
        {{"algorithm.dual_clip=0.5"}, "config: algorithm.dual_clip must be 0 (off) or > 1"},
        {{"algorithm.dual_clip=3", "algorithm.ratio=sequence"},
         "config: algorithm.dual_clip and algorithm.ratio: sequence conflict (GSPO clips the "
         "sequence ratio; dual-clip is a per-token rule)"},
        {{"rewards.soft_overlong=1", "algorithm.overlong_cache=17"},
         "config: algorithm.overlong_cache must be in 1..rollout.max_new_tokens when "
         "rewards.soft_overlong is on"},
        {{"train.schedule=linear"},
         "config: train.schedule must be cosine or constant, got 'linear'"},
        {{"model.path=\"\""},
         "config: model.path: RL starts from a checkpoint folder (e.g. an SFT run's "
         "checkpoints/step-N)"},
        // Several at once: the first in the order above.
        {{"train.schedule=linear", "algorithm.dual_clip=0.5", "algorithm.kl_estimator=k9"},
         "config: algorithm.kl_estimator: unknown value 'k9' (expected one of: k1, k2, k3)"},
        {{"model.path=\"\"", "train.schedule=linear", "rollout.samples_per_prompt=1"},
         "config: rollout.samples_per_prompt must be >= 2: algorithm.advantage grpo subtracts the "
         "group mean, so one sample per prompt gives every advantage 0"},
        {{"model.path=\"\"", "train.schedule=linear"},
         "config: train.schedule must be cosine or constant, got 'linear'"},
    };
    for (const auto& [sets, message] : cases) {
        const Config c = with(sets);
        EXPECT_EQ(testutil::error_of([&] { read_rl_config(c); }), message) << sets[0];
        EXPECT_EQ(testutil::error_of([&] { validate_rl_config(c); }), message) << sets[0];
    }
    // A soft overlong punishment off leaves overlong_cache unchecked; an unnamed run is the
    // trainer's concern (resolve_rl_run_name names it), not the config's.
    EXPECT_NO_THROW(read_rl_config(with({"algorithm.overlong_cache=17"})));
    EXPECT_EQ(read_rl_config(with({})).run.name, "");
}

TEST(RlConfig, EnumsNameThemselvesAsTheyAreParsed) {
    // The trainer's log line and messages print the parsed modes by these names.
    for (const char* n : {"grpo", "dr_grpo", "batch_std", "rloo", "reinforce_pp_baseline"})
        EXPECT_STREQ(to_string(parse_advantage_mode(n, "k")), n);
    for (const char* n : {"token", "sequence"})
        EXPECT_STREQ(to_string(parse_ratio_level(n, "k")), n);
    for (const char* n :
         {"seq_mean_token_mean", "token_mean", "seq_sum_norm", "seq_mean_token_sum"})
        EXPECT_STREQ(to_string(parse_loss_aggregation(n, "k")), n);
    for (const char* n : {"k1", "k2", "k3"}) EXPECT_STREQ(to_string(parse_kl_estimator(n, "k")), n);
}

}  // namespace
}  // namespace crucible::rl
