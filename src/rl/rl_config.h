// The RL configuration schema: every key `crucible train rl` accepts, with its default. The
// defaults are neutral: group-normalised advantages, a symmetric clip, no reward shaping, no
// filtering, no KL, one update per rollout batch, sized for the built-in Countdown task on the
// default byte-level model. The recipes are the presets (examples/rl_*.yaml, compiled in as
// rl_preset()), each setting every knob its paper sets; docs/RL.md tabulates them. A config
// file and --set may change values but not add keys or change types. A number's comment starts
// with its allowed interval ([ ] closed, ( ) open; core/config.h); rules that tie keys together
// are validate_rl_config's (rl_trainer.cpp).
#pragma once

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
rewards:                    # weighted sum; a weight of 0 computes and logs a component only
  correct: 1.0              # [-100, 100] the task's verdict: 1 fully correct, 0 not (absent:
                            # no gold answer)
  format: 1.0               # [-100, 100] the task's format credit (countdown: TinyZero's 0.1 for a
                            # well-formed wrong answer; other tasks give none)
  soft_overlong: 0.0        # [-100, 100] DAPO's soft overlong punishment (0 .. -1), see
                            # algorithm.overlong_*
  rubric: 0.0               # [-100, 100] the item's rubric score, itself in 0..1 (task jsonl
                            # items with "rubric")
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
                            # length)
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
train:
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
  micro_batch_tokens: 4096  # [1, 1e9] rows per forward/backward (gradient accumulation beyond)
  checkpoint_every: 25      # [0, 1e9] steps; 0: only the last step (always written)
  log_every: 5              # [1, 1e9] steps between console lines
  eval_every: 25            # [0, 1e9] steps; 0 disables (the last step is always evaluated)
  eval_samples: 4           # [1, 1e6] samples per held-out problem at rollout.temperature
  eval_problems: 200        # [0, 1e7] held-out problems evaluated (at most task.eval_examples)
)";

}  // namespace crucible
