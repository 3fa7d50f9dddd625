// The tokenizer a GGUF file carries, read from an HF model folder: llama.cpp's "gpt2" (byte-level
// BPE) vocabulary, merges, special ids and chat template. write_gguf (gguf_writer.h) writes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.h"

namespace crucible {

// The tokenizer as llama.cpp's "gpt2" (byte-level BPE) vocabulary wants it.
struct GgufTokenizer {
    std::string pre = "qwen2";         // pre-tokenizer regex; "llama-bpe" for Llama-3's
    std::vector<std::string> tokens;   // one per id, 0 .. vocab_size-1
    std::vector<int32_t> token_types;  // 1 normal, 3 control, 4 user-defined, 5 unused
    std::vector<std::string> merges;   // "a b"
    int64_t bos_id = -1;               // -1: absent
    int64_t eos_id = -1;
    int64_t pad_id = -1;
    std::string chat_template;  // empty: absent
};

// Reads `dir`/tokenizer.json (a byte-level BPE, parsed by parse_tokenizer_json),
// tokenizer_config.json and generation_config.json (both optional) for a model with `config`'s
// vocab_size. Special ids come from tokenizer_config.json's token strings, then
// generation_config.json, then config. Throws Error naming the file for a missing
// tokenizer.json, malformed JSON or fields, two vocabulary tokens with one id, and a largest
// token id >= vocab_size (naming both numbers).
GgufTokenizer load_gguf_tokenizer(const std::filesystem::path& dir, const ModelConfig& config);

}  // namespace crucible
