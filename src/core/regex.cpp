#include "core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace crucible {

namespace {

// The limits of every bounded match (read-only after construction: shared by all threads).
struct MatchContext {
    pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
    MatchContext() {
        pcre2_set_match_limit(ctx, kRegexMatchLimit);
        pcre2_set_heap_limit(ctx, kRegexHeapLimitKiB);
    }
    ~MatchContext() { pcre2_match_context_free(ctx); }
};

pcre2_match_context* bounded_context() {
    static const MatchContext context;
    return context.ctx;
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
}

using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;

// One ovector pair per thread, reused: what find() needs of any pattern (with fewer pairs than
// groups PCRE2 still matches and fills the whole match's pair).
pcre2_match_data* thread_match_data() {
    thread_local MatchData md(pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    return md.get();
}

}  // namespace

std::shared_ptr<const Regex> Regex::compile(const std::string& pattern, RegexOptions options,
                                            std::string* error) {
    uint32_t flags = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    if (options.icase) flags |= PCRE2_CASELESS;
    if (options.ucp) flags |= PCRE2_UCP;
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   flags, &code, &offset, nullptr);
    if (!re) {
        *error = pcre2_message(code) + " at offset " + std::to_string(offset);
        return nullptr;
    }
    std::shared_ptr<Regex> r(new Regex());
    r->code_ = re;
    r->pattern_ = pattern;
    r->options_ = options;
    r->jit_ = options.jit && pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    uint32_t captures = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &captures);
    r->capture_count_ = static_cast<int>(captures);
    return r;
}

Regex::~Regex() {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
}

int Regex::match(std::string_view text, size_t start, uint32_t flags, void* match_data) const {
    auto* re = static_cast<pcre2_code*>(code_);
    auto* md = static_cast<pcre2_match_data*>(match_data);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    pcre2_match_context* ctx = options_.bounded ? bounded_context() : nullptr;
    // The JIT fast path skips PCRE2's option checks; it serves the plain (unanchored) match.
    const int rc = jit_ && flags == 0
                       ? pcre2_jit_match(re, subject, text.size(), start, 0, md, ctx)
                       : pcre2_match(re, subject, text.size(), start, flags, md, ctx);
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) return rc;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
        rc == PCRE2_ERROR_DEPTHLIMIT) {
        throw Error("regex '" + pattern_ + "': the match was stopped at its limit (" +
                    std::to_string(kRegexMatchLimit) + " backtracking steps, " +
                    std::to_string(kRegexHeapLimitKiB / 1024) +
                    " MiB): the pattern backtracks catastrophically on this text (nested "
                    "quantifiers such as (a+)+ do)");
    }
    throw Error("regex '" + pattern_ + "': match failed: " + pcre2_message(rc));
}

bool Regex::search(std::string_view text) const {
    return match(text, 0, 0, thread_match_data()) >= 0;
}

bool Regex::full_match(std::string_view text) const {
    return match(text, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, thread_match_data()) >= 0;
}

std::optional<std::pair<size_t, size_t>> Regex::find(std::string_view text, size_t start) const {
    pcre2_match_data* md = thread_match_data();
    if (match(text, start, 0, md) < 0) return std::nullopt;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    return std::make_pair(static_cast<size_t>(ov[0]), static_cast<size_t>(ov[1]));
}

std::optional<std::string> Regex::last_group(std::string_view text, int group) const {
    const MatchData md(
        pcre2_match_data_create_from_pattern(static_cast<pcre2_code*>(code_), nullptr),
        &pcre2_match_data_free);
    std::optional<std::string> found;
    size_t at = 0;
    while (at <= text.size()) {
        const int rc = match(text, at, 0, md.get());
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t g = static_cast<size_t>(group);
        if (group < rc && ov[2 * g] != PCRE2_UNSET)
            found = std::string(text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
        // Continue after this match; after an empty match, one code point on (so a UTF-8
        // sequence is never split).
        if (ov[1] > ov[0]) {
            at = ov[1];
        } else {
            at = ov[1] + 1;
            while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
        }
    }
    return found;
}

}  // namespace crucible
