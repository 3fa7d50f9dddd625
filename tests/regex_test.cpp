// core/regex, the one regular-expression behaviour: PCRE2 syntax, UTF-8, ASCII \d, whole-text
// and anywhere matches, and match limits that are an error. The `regex` verifier is pinned
// here too: PCRE2 syntax (a lookbehind, which ECMAScript lacks), anchored at both ends, and
// catastrophic backtracking reported as an error, as the rubric `regex` criterion reports it.
#include "core/regex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "core/error.h"
#include "core/worker_pool.h"
#include "reward/verify/verifiers.h"
#include "test_util.h"

namespace crucible {
namespace {

using testutil::error_of;

std::shared_ptr<const Regex> re(const std::string& pattern, RegexOptions options = {}) {
    std::string error;
    auto r = Regex::compile(pattern, options, &error);
    EXPECT_TRUE(r) << pattern << ": " << error;
    return r;
}

const std::string kCatastrophic = "(a+)+$";
std::string catastrophic_text() {
    return std::string(5000, 'a') + "b";
}

TEST(Regex, CompileErrorNamesTheOffset) {
    std::string error;
    EXPECT_EQ(Regex::compile("ab(cd", {}, &error), nullptr);
    EXPECT_NE(error.find("missing closing parenthesis"), std::string::npos) << error;
    EXPECT_NE(error.find("at offset 5"), std::string::npos) << error;
    EXPECT_EQ(Regex::compile("[a-", {}, &error), nullptr);
    EXPECT_NE(error.find("at offset"), std::string::npos) << error;
}

TEST(Regex, SearchAnywhereAndFullMatch) {
    const auto r = re("\\d{3}");
    EXPECT_TRUE(r->search("call 911 now"));
    EXPECT_FALSE(r->full_match("call 911 now"));
    EXPECT_TRUE(r->full_match("911"));
    EXPECT_FALSE(r->full_match("9111"));
    EXPECT_FALSE(r->full_match("911\n"));  // \z, not $: a final newline is text
    // Alternatives are backtracked into until one spans the whole text.
    EXPECT_TRUE(re("a|ab")->full_match("ab"));
    EXPECT_TRUE(re("")->full_match(""));
    EXPECT_FALSE(re("")->full_match("x"));
    const auto found = re("b+")->find("aabbba", 1);
    ASSERT_TRUE(found);
    EXPECT_EQ(*found, std::make_pair(size_t{2}, size_t{5}));
    EXPECT_FALSE(re("b+")->find("aabbba", 5));
}

TEST(Regex, Utf8AsciiClassesAndOptions) {
    EXPECT_TRUE(re("caf\\x{e9}")->search("café"));
    EXPECT_TRUE(re("^.$")->full_match("é"));            // one code point
    EXPECT_TRUE(re("ok")->search("\xff\xfe ok"));       // ill-formed UTF-8 is not an error
    EXPECT_FALSE(re("\\d")->full_match("\xD9\xA3"));    // ARABIC-INDIC DIGIT THREE: \d is ASCII
    EXPECT_TRUE(re("\\p{N}")->full_match("\xD9\xA3"));  // ... Unicode classes say so
    EXPECT_TRUE(re("\\d", {.ucp = true})->full_match("\xD9\xA3"));
    EXPECT_FALSE(re("yes")->search("YES"));
    EXPECT_TRUE(re("yes", {.icase = true})->search("YES"));
}

TEST(Regex, LastGroup) {
    const auto r = re("x=(\\d+)|(y)");
    EXPECT_EQ(r->last_group("x=1 x=22 y", 1), "22");  // the last match that set the group
    EXPECT_EQ(r->last_group("x=1 x=22 y", 2), "y");
    EXPECT_EQ(r->last_group("nothing", 1), std::nullopt);
    EXPECT_EQ(re("a*")->last_group("baab", 0), "");  // empty matches step over a code point
}

TEST(Regex, HittingTheMatchLimitIsAnError) {
    const auto r = re(kCatastrophic);
    for (const bool full : {false, true}) {
        const std::string e = error_of([&] {
            if (full) {
                r->full_match(catastrophic_text());
            } else {
                r->search(catastrophic_text());
            }
        });
        EXPECT_NE(e.find("regex '(a+)+$'"), std::string::npos) << e;
        EXPECT_NE(e.find("limit"), std::string::npos) << e;
    }
    // The same pattern on a text it handles quickly matches normally.
    EXPECT_TRUE(r->search("aaaa"));
    // An unbounded regex (a tokenizer's trusted pattern) has no limit to hit.
    EXPECT_TRUE(re("a+b", {.bounded = false})->search(std::string(100000, 'a') + "b"));
}

TEST(Regex, OneRegexMatchesFromManyThreads) {
    const auto r = re("(\\w+)@(\\w+)\\.com");
    std::atomic<int> ok{0};
    run_parallel(2000, 8, [&](size_t i) {
        std::string user = "u";  // (appended: GCC 12 warns falsely on "u" + std::string)
        user += std::to_string(i);
        const std::string text = "mail " + user + "@host.com now";
        if (r->search(text) && !r->full_match(text) && r->full_match(user + "@h.com") &&
            r->last_group(text, 1) == user) {
            ++ok;
        }
    });
    EXPECT_EQ(ok.load(), 2000);
}

// ---- the regex verifier: PCRE2, whole (trimmed) prediction, the shared limits ----------------

TEST(RegexVerifier, PcreSyntaxAnchoredAtBothEnds) {
    // A lookbehind: std::regex's ECMAScript refused this pattern; PCRE2 reads it.
    EXPECT_TRUE(eval::verify_regex("\\d+(?<!0)", "125"));
    EXPECT_FALSE(eval::verify_regex("\\d+(?<!0)", "120"));
    EXPECT_TRUE(eval::verify_regex("\\p{Lu}{3}", "ÉTÉ"));
    EXPECT_FALSE(eval::verify_regex("\\d", "\xD9\xA3"));  // \d stays ASCII, as before
    // The whole trimmed prediction, never a part of it.
    EXPECT_TRUE(eval::verify_regex("42", "  42\n"));
    EXPECT_FALSE(eval::verify_regex("42", "x42"));
    EXPECT_FALSE(eval::verify_regex("42", "42x"));
    EXPECT_TRUE(eval::verify_regex("4|42", "42"));
    const std::string e = error_of([] { eval::verify_regex("(?<=", "x"); });
    EXPECT_NE(e.find("regex verifier: invalid pattern '(?<='"), std::string::npos) << e;
    EXPECT_NE(e.find("at offset"), std::string::npos) << e;
}

TEST(RegexVerifier, CatastrophicBacktrackingIsAnError) {
    const std::string e =
        error_of([] { eval::verify("regex", kCatastrophic, catastrophic_text()); });
    EXPECT_NE(e.find("regex '(a+)+$'"), std::string::npos) << e;
    EXPECT_NE(e.find("limit"), std::string::npos) << e;
}

}  // namespace
}  // namespace crucible
