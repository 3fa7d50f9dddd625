// The SFT configuration schema: every key `crucible train sft` accepts, with its default.
// A config file and --set overrides may change values but not add keys or change types.
#pragma once

namespace crucible {

inline constexpr const char* kSftConfigDefaults = R"(
run:
  name: ""                  # the run folder is <dir>/<name>; empty: sft-<UTC time>
  dir: runs
seed: 1                     # fixes model init, data order and the built-in data
model:
  path: ""                  # a checkpoint folder (config.json + model.safetensors) to start
                            # from; empty: a new model with the architecture below
  init_std: 0.02
  arch:                     # HF config.json fields of a new model (the default ~1.6M model)
    model_type: qwen2
    vocab_size: 264         # byte tokenizer: 256 bytes + 3 specials, padded to 8
    hidden_size: 192
    intermediate_size: 512
    num_hidden_layers: 4
    num_attention_heads: 6
    num_key_value_heads: 2
    max_position_embeddings: 128
    rms_norm_eps: 1.0e-6
    rope_theta: 10000.0
    tie_word_embeddings: true
data:
  train: builtin:countdown  # builtin:countdown, builtin:addition or a JSONL file
  eval: builtin:countdown   # the same kinds, or "" for no evaluation
  builtin_train_examples: 20000
  builtin_eval_examples: 200
  max_seq_len: 64           # tokens; longer examples are truncated (and counted)
train:
  steps: 1000
  batch_size: 64            # sequences per optimizer step
  grad_accum: 1             # micro-batches per step (batch_size must divide evenly)
  lr: 1.0e-3
  min_lr_ratio: 0.1         # cosine decays to lr * min_lr_ratio
  warmup_steps: 50
  schedule: cosine          # cosine or constant
  weight_decay: 0.1         # on matrices and embeddings only
  beta1: 0.9
  beta2: 0.95
  eps: 1.0e-8
  grad_clip: 1.0            # global grad-norm clip; 0 disables
  checkpoint_every: 100     # steps; the last step is always checkpointed
  log_every: 50
  eval_every: 250           # steps; 0 disables (evaluation also runs after the last step)
  eval_generate: 200        # held-out prompts completed greedily for accuracy (0: loss only)
  max_new_tokens: 16
)";

}  // namespace crucible
