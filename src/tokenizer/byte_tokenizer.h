// The default model's tokenizer: one token per byte (ids 0-255) plus ChatML special tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

class ByteTokenizer {
  public:
    static constexpr int32_t kEndOfText = 256;  // <|endoftext|>
    static constexpr int32_t kImStart = 257;    // <|im_start|>
    static constexpr int32_t kImEnd = 258;      // <|im_end|>
    static constexpr int32_t kVocabSize = 259;  // ids in use; models may pad above this

    // Bytes of `text` as ids; special-token strings in the text become their ids.
    std::vector<int32_t> encode(std::string_view text) const;
    // Inverse of encode (special ids become their strings). REQUIRES: ids < kVocabSize.
    std::string decode(const std::vector<int32_t>& ids) const;
    // The text of one special id, e.g. "<|im_end|>".
    static std::string_view special_text(int32_t id);

    // Writes tokenizer.json (a byte-level BPE with the 256 byte tokens, no merges, and the
    // specials as added tokens: Hugging Face tokenizers encodes exactly as encode() does),
    // tokenizer_config.json (with a ChatML chat_template) and generation_config.json into
    // `dir`, so a checkpoint folder is a complete HF model folder.
    static void save_hf_files(const std::filesystem::path& dir, int model_max_length);
};

// GPT-2's byte-to-unicode map used by ByteLevel tokenizers: printable bytes map to
// themselves, the other 68 to U+0100 onwards in byte order. Returns the UTF-8 of byte b's char.
std::string byte_level_char(uint8_t b);

}  // namespace crucible
