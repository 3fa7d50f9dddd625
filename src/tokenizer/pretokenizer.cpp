#include "tokenizer/pretokenizer.h"

#include "core/error.h"
#include "core/regex.h"

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
    std::shared_ptr<const Regex> re;
};

RegexSplitter::RegexSplitter(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
    // Unicode classes as Oniguruma has them (UCP), JIT for the hot loop, and no match limits:
    // the pattern comes with the tokenizer, and a tokenizer must split every text it is given.
    std::string error;
    impl_->re =
        Regex::compile(onig_compatible(pattern),
                       {.icase = false, .ucp = true, .jit = true, .bounded = false}, &error);
    if (!impl_->re) throw Error("regex does not compile: " + error + " (pattern " + pattern + ")");
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

void RegexSplitter::split(std::string_view text, uint32_t base,
                          std::vector<std::pair<uint32_t, uint32_t>>& pieces) const {
    const Regex& re = *impl_->re;
    const size_t n = text.size();
    size_t prev = 0, at = 0;
    while (at < n) {
        const auto m = re.find(text, at);
        if (!m) break;
        const auto [s, e] = *m;
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
