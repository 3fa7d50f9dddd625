// The SFT configuration schema: every key `crucible train sft` accepts, with its default.
// A config file and --set overrides may change values but not add keys or change types. A
// number's comment starts with its allowed interval ([ ] closed, ( ) open; core/config.h);
// what memory a model and batch need is checked by the trainer against the machine's.
#pragma once

#include "run/lora_settings.h"

namespace crucible {

inline constexpr const char* kSftConfigDefaults = R"(
run:
  name: ""                  # the run folder is <dir>/<name>; empty: sft-<UTC time>
  dir: runs
seed: 1                     # [0, inf) fixes model init, data order and the built-in data
model:
  path: ""                  # a checkpoint folder (config.json + model.safetensors) to start
                            # from; empty: a new model with the architecture below
  init_std: 0.02            # [0, 1] std of the random initial weights
  arch:                     # HF config.json fields of a new model (the default ~1.6M model)
    model_type: qwen2
    vocab_size: 264         # [1, 1e7] byte tokenizer: 256 bytes + 3 specials, padded to 8
    hidden_size: 192        # [1, 1e6]
    intermediate_size: 512  # [1, 1e6]
    num_hidden_layers: 4    # [1, 1e6]
    num_attention_heads: 6  # [1, 1e6]
    num_key_value_heads: 2  # [1, 1e6]
    max_position_embeddings: 128  # [1, 1e7]
    rms_norm_eps: 1.0e-6    # (0, 1)
    rope_theta: 10000.0     # (0, 1e12]
    tie_word_embeddings: true
data:
  train: builtin:countdown_lite  # builtin:countdown_lite, builtin:addition (RL's task names) or a
                                 # JSONL file; builtin:countdown: the old name of countdown_lite
  eval: builtin:countdown_lite   # the same kinds, or "" for no evaluation
  builtin_train_examples: 20000  # [1, 1e7]
  builtin_eval_examples: 200     # [0, 1e7]
  max_seq_len: 64           # [1, 1e7] tokens; longer examples are truncated (and counted)
)" CRUCIBLE_LORA_CONFIG_DEFAULTS R"(train:
  steps: 1000               # [1, 1e9]
  batch_size: 64            # [1, 1e9] sequences per optimizer step
  grad_accum: 1             # [1, 1e9] micro-batches per step (batch_size must divide evenly)
  lr: 1.0e-3                # [0, 1] AdamW's peak learning rate
  min_lr_ratio: 0.1         # [0, 1] cosine decays to lr * min_lr_ratio
  warmup_steps: 50          # [0, 1e9]
  schedule: cosine          # cosine or constant
  weight_decay: 0.1         # [0, 1] on matrices and embeddings only
  beta1: 0.9                # [0, 1)
  beta2: 0.95               # [0, 1)
  eps: 1.0e-8               # (0, 1] (0 divides 0 by 0 where a gradient is 0)
  grad_clip: 1.0            # [0, inf) global grad-norm clip; 0 disables
  dtype: float32            # the matmuls' precision: float32, bfloat16 (fp32 master weights,
                            # gradients and optimizer state either way) or q8_0 (a frozen
                            # quantized base under LoRA adapters; docs/PERFORMANCE.md)
  checkpoint_every: 100     # [0, 1e9] steps; 0: only the last step (always written)
  log_every: 50             # [1, 1e9] steps between console lines
  eval_every: 250           # [0, 1e9] steps; 0 disables (evaluation also runs after the last)
  eval_generate: 200        # [0, 1e9] held-out prompts completed greedily (0: loss only)
  max_new_tokens: 16        # [1, 1e6] tokens per greedy completion
)";

}  // namespace crucible
