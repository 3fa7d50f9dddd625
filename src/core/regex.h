// The one regular-expression engine of the project: PCRE2 (Perl syntax, UTF-8), behind one
// small class. Used by the `regex` verifier (the whole answer must match), the rubric `regex`
// criterion (a match anywhere) and the tokenizer's pre-tokenizer split.
//
// Behaviour every user shares:
// - UTF mode: the pattern and the text are UTF-8; `.` is one code point; ill-formed UTF-8 in
//   the text never matches (and is not an error).
// - `\d`, `\w`, `\s`, `\b` and POSIX classes are ASCII unless RegexOptions::ucp (the
//   pre-tokenizer's Unicode classes); `\p{L}`, `\p{N}`, ... are always available.
// - Bounded: one match attempt stops after kRegexMatchLimit backtracking steps or
//   kRegexHeapLimitKiB of backtracking memory, and stopping is an error (Error naming the
//   pattern), never a silent "no match": a pattern that backtracks catastrophically, such as
//   (a+)+$ on "aaaa...b", is reported, not scored. (PCRE2 keeps its backtracking frames on the
//   heap, so no text can overflow the stack.)
// - Thread-safe: a compiled Regex is immutable; any number of threads may match with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace crucible {

inline constexpr uint32_t kRegexMatchLimit = 1'000'000;  // backtracking steps per match
inline constexpr uint32_t kRegexHeapLimitKiB = 64 * 1024;

struct RegexOptions {
    bool icase = false;  // ignore case (Unicode case folding)
    bool ucp = false;    // \d \w \s \b and POSIX classes by Unicode properties
    bool jit = false;    // JIT-compile (a hot loop); falls back to the interpreter
    // false: no match limits, for a trusted pattern that must match whatever the text (a
    // tokenizer's split regex, which must tokenize every input).
    bool bounded = true;
};

class Regex {
  public:
    // Compiles `pattern`. nullptr with *error = "MESSAGE at offset N" (PCRE2's message and
    // the byte offset in the pattern) when it does not compile.
    static std::shared_ptr<const Regex> compile(const std::string& pattern, RegexOptions options,
                                                std::string* error);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Whether the pattern matches somewhere in `text`.
    bool search(std::string_view text) const;
    // Whether the pattern matches all of `text` (anchored at both ends, as if it were
    // \A(?:pattern)\z; alternatives are backtracked into until one spans the whole text).
    bool full_match(std::string_view text) const;
    // The first match at or after byte `start`: [begin, end) byte offsets; nullopt when none.
    std::optional<std::pair<size_t, size_t>> find(std::string_view text, size_t start = 0) const;
    // Capture group `group` (0: the whole match) of the last of the non-overlapping matches in
    // which it took part; nullopt when there is none.
    std::optional<std::string> last_group(std::string_view text, int group) const;

    const std::string& pattern() const { return pattern_; }
    int capture_count() const { return capture_count_; }
    bool icase() const { return options_.icase; }

    // Every match method throws Error("regex 'PATTERN': ...") when a bounded match hits its
    // limits, or for any other PCRE2 match failure.

  private:
    Regex() = default;
    int match(std::string_view text, size_t start, uint32_t flags, void* match_data) const;

    void* code_ = nullptr;  // pcre2_code_8*
    bool jit_ = false;      // JIT compilation succeeded
    std::string pattern_;
    RegexOptions options_;
    int capture_count_ = 0;
};

}  // namespace crucible
