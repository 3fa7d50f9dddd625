// The regex split of Hugging Face's Split and ByteLevel pre-tokenizers, through PCRE2.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crucible {

// A compiled pre-tokenizer regex (PCRE2, UTF + UCP, JIT when available) that splits text the
// way Hugging Face tokenizers' Split(behavior = Isolated) does with its Oniguruma regex:
// every match is a piece and so is every gap between matches. Thread-safe after construction.
class RegexSplitter {
  public:
    // Compiles `pattern` (Oniguruma/HF syntax; \s also matches U+0085 as in Oniguruma).
    // Throws Error with PCRE2's message and offset when it does not compile.
    explicit RegexSplitter(const std::string& pattern);
    ~RegexSplitter();
    RegexSplitter(RegexSplitter&&) noexcept;
    RegexSplitter& operator=(RegexSplitter&&) noexcept;

    // Appends the non-empty pieces of `text` as [begin, end) byte offsets (relative to `text`
    // plus `base`) in order; together they cover `text`. Ill-formed UTF-8 never matches and so
    // ends up in gap pieces.
    void split(std::string_view text, uint32_t base,
               std::vector<std::pair<uint32_t, uint32_t>>& pieces) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// GPT-2's pattern, used by ByteLevel(use_regex = true).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace crucible
