// SFT examples: token ids with a per-token "is a training target" flag, from JSONL files
// ({"prompt","completion"} or {"messages":[...]}) or from a built-in task.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {

struct SftExample {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> target;  // target[i] = 1: predicting tokens[i] is trained on
    std::string prompt;           // for evaluation by generation (prompt/completion data)
    std::string completion;
};

struct SftDataset {
    std::vector<SftExample> examples;
    std::string task;       // "countdown", "addition" or "" for files
    int64_t truncated = 0;  // examples cut to max_seq_len
};

// prompt tokens (not trained) + completion tokens + the tokenizer's eos (trained).
SftExample make_prompt_completion(const TextTokenizer& tok, const std::string& prompt,
                                  const std::string& completion);

// Reads a JSONL file. Each line is {"prompt": str, "completion": str},
// {"prompt": str, "completion": [piece, ...]} (a piece: a string, trained on, or
// {"text": str, "train": bool}; each piece tokenized on its own, as a multi-turn episode's
// turns and observations are) or {"messages": [{"role": str, "content": str}, ...]}; other
// fields are ignored. Throws
// Error("FILE:LINE: ...") naming the field for malformed lines. Examples longer than
// max_seq_len + 1 tokens are truncated and counted.
SftDataset load_sft_jsonl(const std::string& path, const TextTokenizer& tok, int max_seq_len);

// "builtin:countdown_lite" (or its old name "builtin:countdown") or "builtin:addition": the
// train or eval split of a built-in task, named as RL's task.name names it.
SftDataset builtin_sft_dataset(const std::string& spec, bool eval_split, int n_train, int n_eval,
                               uint64_t seed, const TextTokenizer& tok);

// Appends an example to a packed batch as inputs tokens[0..n-2] predicting tokens[1..n-1];
// each trained target gets loss weight `weight`.
void pack_example(const SftExample& ex, float weight, PackedBatch* batch);
// Number of trained targets of an example (the tokens it contributes to the loss).
int64_t count_targets(const SftExample& ex);

}  // namespace crucible
