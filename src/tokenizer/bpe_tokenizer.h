// Byte-level BPE from a Hugging Face tokenizer.json (Qwen2, GPT-2 and Crucible's own byte
// tokenizer): encodes exactly as Hugging Face tokenizers does (tests/tokenizer_test.cpp checks
// every string of a committed corpus against it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

// The pipeline of tokenizer.json: added tokens split off the raw text first (longest match),
// then the normalizer (none or NFC), the pre-tokenizer (Split(Regex, Isolated) and/or
// ByteLevel), then BPE over byte-level symbols with merges applied lowest rank first. No
// post-processor is applied (no BOS/EOS are added). Thread-safe after construction.
class BpeTokenizer {
  public:
    // Loads `path`, a tokenizer.json or a folder holding one. Throws Error naming the file and
    // the field when it cannot be read, is not JSON, or describes something unsupported.
    explicit BpeTokenizer(const std::filesystem::path& path);
    ~BpeTokenizer();
    BpeTokenizer(BpeTokenizer&&) noexcept;
    BpeTokenizer& operator=(BpeTokenizer&&) noexcept;

    // The ids of `text` (any bytes; ill-formed UTF-8 is tokenized byte by byte).
    std::vector<int32_t> encode(std::string_view text) const;
    // The text of `ids`: token bytes concatenated, ill-formed UTF-8 replaced by U+FFFD.
    // Ids that are not in the vocabulary are skipped (as Hugging Face does).
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
    // The raw bytes of one token (may be part of a UTF-8 character); empty for unknown ids.
    const std::string& token_bytes(int32_t id) const;

    // Largest id in the vocabulary or the added tokens, plus one.
    int vocab_size() const;
    // The id of a token given in its vocabulary form ("Ġthe", "<|im_end|>"), if any.
    std::optional<int32_t> token_id(std::string_view token) const;
    // The vocabulary form of `id`; empty when the id is not in use.
    const std::string& id_to_token(int32_t id) const;
    // True when `id` is an added token marked special (e.g. <|im_end|>).
    bool is_special(int32_t id) const;
    // The file this tokenizer was loaded from.
    const std::filesystem::path& path() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Decodes ids one at a time and returns only complete UTF-8 text: the bytes of a character
// split across tokens are held back until the character is complete. Concatenating every
// push() and a final finish() equals decode() of all the ids.
class BpeStreamDecoder {
  public:
    // `tokenizer` must outlive the decoder.
    explicit BpeStreamDecoder(const BpeTokenizer& tokenizer, bool skip_special = false);
    // The newly completed text after adding `id` (possibly empty).
    std::string push(int32_t id);
    // Whatever is held back, with an incomplete sequence replaced by U+FFFD; resets the state.
    std::string finish();

  private:
    const BpeTokenizer& tok_;
    bool skip_special_;
    std::string pending_;
};

}  // namespace crucible
