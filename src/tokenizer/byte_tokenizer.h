// The default model's tokenizer: one token per byte (ids 0-255) plus ChatML special tokens.
#pragma once

#include <cstdint>
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
};

}  // namespace crucible
