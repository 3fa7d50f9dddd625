// The RL configuration schema: every key `crucible train rl` accepts, with its default. The
// defaults are neutral: group-normalised advantages, a symmetric clip, no reward shaping, no
// filtering, no KL, one update per rollout batch, sized for the built-in Countdown task on the
// default byte-level model. The recipes are the presets (examples/rl_*.yaml, compiled in as
// rl_preset()), each setting every knob its paper sets; docs/RL.md tabulates them. A config
// file and --set may change values but not add keys or change types. A number's comment starts
// with its allowed interval ([ ] closed, ( ) open; core/config.h); rules that tie keys together
// are read_rl_config's (rl_config.cpp), which reads every key once into an RlConfig.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "env/search_index.h"
#include "env/tool_call.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "rl/objective.h"
#include "run/lora_settings.h"

namespace crucible {

inline constexpr const char* kRlConfigDefaults = R"(
run:
  name: ""                  # the run folder is <dir>/<name>; empty: rl-<UTC time>
  dir: runs
seed: 1                     # [0, inf) fixes data order, sampling and the built-in data
model:
  path: ""                  # the checkpoint folder to start from (config.json, model.safetensors,
                            # tokenizer files) -- e.g. an SFT run's checkpoints/step-N
task:
  name: countdown_lite      # countdown_lite, countdown (TinyZero's rules), addition or jsonl
  data: ""                  # task jsonl: lines {"prompt"|"messages", "answer", "verifier"?}
  eval_data: ""             # task jsonl: held-out lines in the same format ("" : none)
  verifier: exact           # task jsonl: default verifier (exact, numeric, math, mc, regex)
  chat: false               # task jsonl: put "prompt" through the model's chat template
  train_examples: 20000     # [1, 1e7] built-in tasks: problems generated for training
  eval_examples: 200        # [0, 1e7] built-in tasks: held-out problems
  max_digits: 3             # [1, 18] addition: operand digits (their sum fits 64 bits)
env:                        # the environment episodes run in (docs/ENVIRONMENTS.md)
  name: single_turn         # single_turn: the task as a one-turn environment (prompt, one
                            # completion, the task's verdict); calculator: several turns with
                            # an exact calculator tool (Hermes <tool_call>), then the verdict;
                            # search: several turns with a search tool on env.index, then the
                            # verdict on the last turn's <answer> content; python: several
                            # turns running Python in the sandbox (Hermes <tool_call>), then
                            # the verdict on the last turn; server: episodes run by an external
                            # agent against the trainer's own server (env.server), rewarded by
                            # the agent (docs/SERVING.md, "RL endpoints")
  max_turns: 4              # [1, 1000] tool environments: model turns per episode at most
  max_tokens_per_turn: 0    # [0, 1e6] tool environments: tokens per model turn at most (0: only
                            # rollout.max_new_tokens, the episode's budget, limits a turn)
  max_context: 0            # [0, 1e7] tool environments: prompt and episode ids at most (0: the
                            # budget alone); the episode then ends truncated, as at the budget
  max_observation_tokens: 0 # [0, 1e7] an observation longer than this is cut in the middle
                            # ("...[K tokens cut]..."); 0: not cut
  tool_workers: 0           # [0, 256] threads running environment steps while the engine keeps
                            # decoding (0: between engine steps; deterministic batches)
  step_timeout_s: 60.0      # [0, 86400] with tool_workers: a step running longer ends its
                            # episode as failed (excluded) and the run goes on; 0: no limit
  syntax: search_r1         # search: search_r1 (<search>q</search> -> <information>) or hermes
                            # (<tool_call> {"name": "search", "arguments": {"query": q}})
  index: ""                 # search: the index folder (`crucible index build`)
  top_k: 3                  # [1, 1000] search: passages per search
  max_passage_chars: 500    # [1, 1e6] search: characters per passage at most
  tool_timeout_s: 5.0       # (0, 3600] python: wall clock and CPU per call (then an error
                            # observation; the episode goes on)
  python_memory_mb: 512     # [16, 1e6] python: memory of the call's whole sandbox
  max_output_chars: 2000    # [1, 1e6] python: characters of stdout and stderr shown per call
  server:                   # server: the trainer's OpenAI-compatible server for the agent
    host: 127.0.0.1         # the address it listens on
    port: 0                 # [0, 65535] 0: any free port (printed, and in <run>/server.json)
    session_timeout_s: 600.0  # (0, 86400] an episode without a reward by then ends as failed
                            # (excluded, counted); the step goes on without it
    agent: ""               # a shell command started with the server (OPENAI_BASE_URL and
                            # CRUCIBLE_RL_URL set; output in <run>/agent.log) and stopped at the
                            # end; "": the user starts the agents
rewards:                    # weighted sum; a weight of 0 computes and logs a component only
  correct: 1.0              # [-100, 100] the task's verdict: 1 fully correct, 0 not (absent:
                            # no gold answer)
  format: 1.0               # [-100, 100] the task's format credit (countdown: TinyZero's 0.1 for a
                            # well-formed wrong answer; other tasks give none)
  verifier_timeout_s: 10.0  # [0, 3600] the task's verdict on one sample (the built-in verifiers,
                            # in process): past it the sample is marked reward_timeout and
                            # excluded, never scored 0; 0: no limit
  soft_overlong: 0.0        # [-100, 100] DAPO's soft overlong punishment (0 .. -1), see
                            # algorithm.overlong_*
  rubric: 0.0               # [-100, 100] the item's rubric score, itself in 0..1 (task jsonl
                            # items with "rubric")
  python:                   # a reward function in Python, run out of process (docs/REWARDS.md)
    file: ""                # the .py file; "": none
    function: ""            # the function's name in it
    signature: trl          # trl: f(prompts, completions, **columns) -> list of floats; verl:
                            # f(data_source, solution_str, ground_truth, extra_info) -> float
    timeout_s: 5.0          # (0, 3600] per call: a sample that hangs is marked reward_timeout
                            # and excluded, never scored 0
    workers: 2              # [1, 256] python3 processes
    sandbox: false          # true: each call in a fresh python3 inside crucible sandbox (no
                            # network, read-only root, memory limit; docs/REWARDS.md)
    weight: 1.0             # [-100, 100]
rubric:                     # the rubric reward's scorer (docs/RUBRICS.md; as `crucible rubric score`)
  judge: ""                 # openai:BASE_URL#MODEL; "": programmatic criteria only
  mode: per-criterion       # per-criterion or one-call
  aggregation: healthbench  # healthbench, weighted_mean or implicit (when an item names none)
  votes: 1                  # [1, 100] judge calls per criterion (majority)
  temperature: 0.0          # [0, 2]
  max_tokens: 1024          # [1, 1e6]
  concurrency: 8            # [1, 1024] judge requests in flight
  timeout_s: 120.0          # (0, 86400] per judge request
  cache: ""                 # SQLite judge cache; "": <run folder>/judge_cache.sqlite
  price_in: 0.0             # [0, 1e6] USD per 1M judge prompt tokens (cost accounting)
  price_out: 0.0            # [0, 1e6]
rollout:
  prompts_per_step: 32      # [1, 1e6] groups per update batch
  samples_per_prompt: 8     # [1, 1e6] G, the group size (RL needs >= 2: every advantage
                            # subtracts the group mean)
  temperature: 1.0          # (0, 10] the loss uses the T=1 policy; other values make rollouts
                            # off-policy (0, greedy, would make a group's rollouts identical)
  top_p: 1.0                # (0, 1]
  top_k: 0                  # [0, 1e7] 0: all tokens
  max_new_tokens: 16        # [1, 1e6] L_max: longer completions are truncated (finish_reason
                            # length); with a multi-turn env, the episode's budget of tokens
                            # after the prompt, the model's and the tools' together
algorithm:
  advantage: grpo           # grpo, dr_grpo, batch_std, rloo, reinforce_pp_baseline
  ratio: token              # token (PPO/GRPO) or sequence (GSPO)
  clip_low: 0.2             # [0, 1) epsilon_low
  clip_high: 0.2            # [0, 100] epsilon_high (DAPO's clip-higher: 0.28)
  dual_clip: 0.0            # [0, 1e6] c > 1 caps the loss of negative-advantage tokens at -c*A;
                            # 0 off (1 >= c > 0 is refused)
  loss_aggregation: token_mean   # seq_mean_token_mean (GRPO), token_mean (DAPO),
                                 # seq_sum_norm (Dr. GRPO: sum / (B * L_max)),
                                 # seq_mean_token_sum (verl: (1/B) sum_i sum_t)
  kl_beta: 0.0              # [0, 100] > 0 loads a frozen reference model (the starting weights)
  kl_estimator: k3          # k1, k2 or k3
  overlong_filter: false    # truncated completions take no part in the loss
  overlong_cache: 4         # [1, 1e6] L_cache of the soft overlong punishment (tokens)
  dynamic_sampling: false   # drop uninformative groups and refill the batch (DAPO)
  dynamic_sampling_metric: accuracy  # accuracy: all right or all wrong (DAPO, verl's acc);
                                     # reward: all rewards equal
  max_generation_batches: 3 # [1, 1000] dynamic sampling: generation rounds per step at most
  updates_per_batch: 1      # [1, 1000] mu: passes over the rollout batch
  minibatches: 1            # [1, 1e6] optimizer steps per pass (the batch is split by groups)
)" CRUCIBLE_LORA_CONFIG_DEFAULTS R"(train:
  steps: 100                # [1, 1e9] rollout steps
  lr: 5.0e-5                # [0, 1] AdamW's peak learning rate
  min_lr_ratio: 1.0         # [0, 1] cosine decays to lr * min_lr_ratio (1: constant after warm-up)
  warmup_steps: 5           # [0, 1e9] optimizer steps
  schedule: constant        # cosine or constant
  weight_decay: 0.0         # [0, 1]
  beta1: 0.9                # [0, 1)
  beta2: 0.99               # [0, 1)
  eps: 1.0e-8               # (0, 1]
  grad_clip: 1.0            # [0, inf) global grad-norm clip; 0 disables
  dtype: float32            # the matmuls' precision: float32, bfloat16 (fp32 master weights,
                            # gradients and optimizer state either way) or q8_0 (a frozen
                            # quantized base under LoRA adapters; docs/PERFORMANCE.md)
  micro_batch_tokens: 4096  # [1, 1e9] rows per forward/backward (gradient accumulation beyond)
  checkpoint_every: 25      # [0, 1e9] steps; 0: only the last step (always written)
  log_every: 5              # [1, 1e9] steps between console lines
  eval_every: 25            # [0, 1e9] steps; 0 disables (the last step is always evaluated)
  eval_samples: 4           # [1, 1e6] samples per held-out problem at rollout.temperature
  eval_problems: 200        # [0, 1e7] held-out problems evaluated (at most task.eval_examples)
)";

}  // namespace crucible

namespace crucible::rl {

// What dynamic sampling looks at to call a group uninformative: its samples' correctness (all
// right or all wrong; DAPO) or their summed reward (all equal).
enum class DynamicSamplingMetric { accuracy, reward };
DynamicSamplingMetric parse_dynamic_sampling_metric(const std::string& value);

// The typed RL configuration: one struct per section of kRlConfigDefaults, one field per key
// (same names), enums parsed. Only read_rl_config fills it, so every value in it has passed
// the checks below.
struct RlRunConfig {
    std::string name;  // empty until resolve_rl_run_name()
    std::string dir;
};

struct RlModelConfig {
    std::string path;
};

struct RlTaskConfig {
    std::string name;
    std::string data;
    std::string eval_data;
    std::string verifier;
    bool chat = false;
    int train_examples = 0;
    int eval_examples = 0;
    int max_digits = 0;
};

enum class EnvKind { single_turn, calculator, search, python, server };
EnvKind parse_env_kind(const std::string& value);
const char* to_string(EnvKind kind);

struct RlEnvConfig {
    EnvKind name = EnvKind::single_turn;
    int max_turns = 0;
    int max_tokens_per_turn = 0;     // 0: no limit besides rollout.max_new_tokens
    int max_context = 0;             // 0: none
    int max_observation_tokens = 0;  // 0: observations not cut
    int tool_workers = 0;            // 0: steps between engine steps
    double step_timeout_s = 0;       // with tool_workers; 0: none
    ToolSyntax syntax = ToolSyntax::search_r1;
    std::string index;  // search: the index folder
    int top_k = 0;
    int max_passage_chars = 0;
    // search: env.index, opened by read_rl_config (so a bad folder fails before any work);
    // shared by every episode.
    std::shared_ptr<const SearchIndex> search_index;
    double tool_timeout_s = 0;  // python: wall clock and CPU per call
    int python_memory_mb = 0;
    int max_output_chars = 0;  // python: stdout and stderr shown per call
    std::string server_host;   // server: env.server.*
    int server_port = 0;
    double session_timeout_s = 0;
    std::string server_agent;  // "": none started
};

// The env.* keys of a config holding kRlConfigDefaults' schema (the search index opened), as
// read_rl_config reads them; `crucible eval --env` reads them alone.
RlEnvConfig read_rl_env_config(const Config& c);

struct RlPythonRewardConfig {
    std::string file, function;  // file "": no Python reward
    std::string signature = "trl";
    double timeout_s = 0.0;
    int workers = 0;
    bool sandbox = false;
    double weight = 0.0;
};

struct RlRewardsConfig {  // weights
    double correct = 0.0;
    double format = 0.0;
    double soft_overlong = 0.0;
    double verifier_timeout_s = 0.0;  // 0: no limit
    double rubric = 0.0;
    RlPythonRewardConfig python;
};

struct RlRubricConfig {
    std::string judge;
    std::string mode;
    std::string aggregation;
    int votes = 0;
    double temperature = 0.0;
    int max_tokens = 0;
    int concurrency = 0;
    double timeout_s = 0.0;
    std::string cache;  // "" : <run folder>/judge_cache.sqlite
    double price_in = 0.0;
    double price_out = 0.0;
};

struct RlRolloutConfig {
    int prompts_per_step = 0;    // P
    int samples_per_prompt = 0;  // G
    double temperature = 0.0;
    double top_p = 0.0;
    int top_k = 0;
    int max_new_tokens = 0;  // L_max
};

struct RlAlgorithmConfig {
    AdvantageMode advantage = AdvantageMode::grpo;
    RatioLevel ratio = RatioLevel::token;
    double clip_low = 0.0;
    double clip_high = 0.0;
    double dual_clip = 0.0;
    LossAggregation loss_aggregation = LossAggregation::token_mean;
    double kl_beta = 0.0;
    KlEstimator kl_estimator = KlEstimator::k3;
    bool overlong_filter = false;
    int overlong_cache = 0;
    bool dynamic_sampling = false;
    DynamicSamplingMetric dynamic_sampling_metric = DynamicSamplingMetric::accuracy;
    int max_generation_batches = 0;
    int updates_per_batch = 0;  // mu
    int minibatches = 0;
};

struct RlTrainConfig {
    int64_t steps = 0;
    double lr = 0.0;
    double min_lr_ratio = 0.0;
    int64_t warmup_steps = 0;
    kernels::LrSchedule schedule = kernels::LrSchedule::constant;
    double weight_decay = 0.0;
    double beta1 = 0.0;
    double beta2 = 0.0;
    double eps = 0.0;
    double grad_clip = 0.0;
    MatmulDtype dtype = MatmulDtype::float32;
    int64_t micro_batch_tokens = 0;
    int64_t checkpoint_every = 0;
    int64_t log_every = 0;
    int64_t eval_every = 0;
    int eval_samples = 0;
    int64_t eval_problems = 0;
};

struct RlConfig {
    RlRunConfig run;
    uint64_t seed = 0;
    RlModelConfig model;
    RlTaskConfig task;
    RlEnvConfig env;
    RlRewardsConfig rewards;
    RlRubricConfig rubric;
    RlRolloutConfig rollout;
    RlAlgorithmConfig algorithm;
    RlTrainConfig train;
    LoraConfig lora{0, 0.0, {}};  // rank 0: full fine-tuning

    // The clipped objective's settings (algorithm.*, with rollout.max_new_tokens as L_max).
    PolicyLossOptions loss_options() const;
    // Optimizer steps in the whole run: train.steps * mu * minibatches.
    int64_t total_optimizer_steps() const;
};

// Reads every key of an RL config (see kRlConfigDefaults) once and refuses conflicting
// settings, naming the keys: each number's own interval is the schema's, checked as the config
// merges; these are the rules that tie keys together or are not one interval. An empty
// run.name is allowed here (the trainer requires one).
RlConfig read_rl_config(const Config& config);

// The task.* section alone (no cross-key rules apply to it): what load_task reads.
RlTaskConfig read_rl_task_config(const Config& config);

}  // namespace crucible::rl
