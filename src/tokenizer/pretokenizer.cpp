#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace crucible {

namespace {

// Oniguruma's \s (what Hugging Face tokenizers uses) is the White_Space property, which has
// U+0085 (NEL); PCRE2's \s with UCP is \p{Z} plus \t\n\v\f\r and lacks it. Rewrite \s and \S
// so both engines agree, minding whether we are inside a character class.
std::string onig_compatible(const std::string& p) {
    std::string out;
    out.reserve(p.size() + 16);
    int class_depth = 0;
    for (size_t i = 0; i < p.size(); i++) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const char n = p[i + 1];
            if (n == 's') {
                out += class_depth > 0 ? "\\s\\x{85}" : "[\\s\\x{85}]";
            } else if (n == 'S') {
                out += class_depth > 0 ? "\\S" : "[^\\s\\x{85}]";
            } else {
                out += c;
                out += n;
            }
            i++;
            continue;
        }
        if (c == '[') {
            class_depth++;
            out += c;
            // A ']' right after '[' or '[^' is a literal.
            if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
            if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
            continue;
        }
        if (c == ']' && class_depth > 0) class_depth--;
        out += c;
    }
    return out;
}

}  // namespace

struct RegexSplitter::Impl {
    pcre2_code* code = nullptr;
    bool jit = false;
    ~Impl() {
        if (code) pcre2_code_free(code);
    }
};

RegexSplitter::RegexSplitter(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
    const std::string p = onig_compatible(pattern);
    int err = 0;
    PCRE2_SIZE offset = 0;
    impl_->code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
    if (!impl_->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error("regex does not compile at offset " + std::to_string(offset) + ": " +
                    reinterpret_cast<const char*>(msg) + " (pattern " + pattern + ")");
    }
    impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

void RegexSplitter::split(std::string_view text, uint32_t base,
                          std::vector<std::pair<uint32_t, uint32_t>>& pieces) const {
    // One match-data block per thread, reused: it only holds the ovector.
    thread_local std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create(4, nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    size_t prev = 0, at = 0;
    while (at < n) {
        const int rc = impl_->jit
                           ? pcre2_jit_match(impl_->code, subject, n, at, 0, md.get(), nullptr)
                           : pcre2_match(impl_->code, subject, n, at, 0, md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            throw Error(std::string("pre-tokenizer regex match failed: ") +
                        reinterpret_cast<const char*>(msg));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t s = ov[0], e = ov[1];
        if (e == s) {  // an empty match: step over one character, as Oniguruma's find_iter does
            at = s + 1;
            while (at < n && (static_cast<uint8_t>(text[at]) & 0xC0) == 0x80) at++;
            continue;
        }
        if (s > prev) pieces.emplace_back(base + prev, base + s);
        pieces.emplace_back(base + s, base + e);
        prev = at = e;
    }
    if (prev < n) pieces.emplace_back(base + prev, base + n);
}

}  // namespace crucible
