// The `regex` verifier matches through core/regex (PCRE2, bounded). The std::regex patterns
// below are fixed internal ones (a number's shape, a choice letter) on short trimmed text:
// ECMAScript and PCRE2 read them alike, and moving them would need a capture-group API that
// only they would use.
// GCC 12 reports a false -Wmaybe-uninitialized inside <regex> (std::function in
// regex_automaton.h) when built with -fsanitize=address; the warning is in the library.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "reward/verify/verifiers.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <regex>

#include "core/error.h"
#include "core/regex.h"
#include "reward/verify/text_util.h"

namespace crucible::eval {
namespace {

using namespace text;

bool is_choice_letter(char c) {
    return c >= 'A' && c <= 'J';
}

}  // namespace

// ---- exact ------------------------------------------------------------------------------------

std::string normalize_text(std::string_view s) {
    std::string out;
    bool pending_space = false;
    for (char c : s) {
        if (is_space(c)) {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) out.push_back(' ');
        pending_space = false;
        out.push_back(lower(c));
    }
    return out;
}

bool verify_exact(std::string_view gold, std::string_view pred) {
    // An empty gold answer is no answer: matching it would pay an empty completion.
    const std::string g = normalize_text(gold);
    return !g.empty() && g == normalize_text(pred);
}

// ---- regex ------------------------------------------------------------------------------------

bool verify_regex(const std::string& pattern, const std::string& pred) {
    std::string error;
    const std::shared_ptr<const Regex> re = Regex::compile(pattern, {}, &error);
    if (!re) throw Error("regex verifier: invalid pattern '" + pattern + "': " + error);
    return re->full_match(trim(pred));
}

// ---- numeric ----------------------------------------------------------------------------------

namespace {

// One number without a fraction bar; sets *percent for a trailing %.
std::optional<double> parse_plain_number(std::string_view in, bool* percent) {
    std::string s = trim(in);
    *percent = false;
    if (ends_with(s, "\\%")) {
        s = trim(s.substr(0, s.size() - 2));
        *percent = true;
    } else if (ends_with(s, "%")) {
        s = trim(s.substr(0, s.size() - 1));
        *percent = true;
    }
    bool negative = false;
    if (starts_with(s, "\xE2\x88\x92")) {  // U+2212 minus sign
        negative = true;
        s = s.substr(3);
    } else if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        negative = s[0] == '-';
        s = s.substr(1);
    }
    if (!s.empty() && s[0] == '$') s = s.substr(1);
    static const std::regex body(R"(^(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][+-]?\d+)?$)");
    std::smatch m;
    if (s.empty() || !std::regex_match(s, m, body) || (!m[1].matched && !m[3].matched))
        return std::nullopt;
    const std::string digits = replace_all(s, ",", "");
    const double v = std::strtod(digits.c_str(), nullptr);
    return negative ? -v : v;
}

}  // namespace

std::optional<ParsedNumber> parse_number(std::string_view in) {
    std::string s = trim(in);
    if (s.size() > 256) return std::nullopt;
    if (!s.empty() && s.back() == '.') s = trim(s.substr(0, s.size() - 1));
    ParsedNumber out;
    const size_t slash = s.find('/');
    if (slash != std::string::npos) {
        bool pa = false, pb = false;
        const auto a = parse_plain_number(s.substr(0, slash), &pa);
        const auto b = parse_plain_number(s.substr(slash + 1), &pb);
        if (!a || !b || pa || pb || *b == 0.0) return std::nullopt;
        out.value = *a / *b;
        return out;
    }
    const auto v = parse_plain_number(s, &out.percent);
    if (!v) return std::nullopt;
    out.value = *v;
    return out;
}

bool numbers_close(double a, double b, NumericTolerance tol) {
    if (!std::isfinite(a) || !std::isfinite(b)) return false;
    return std::fabs(a - b) <= std::max(tol.abs, tol.rel * std::max(std::fabs(a), std::fabs(b)));
}

bool verify_numeric(std::string_view gold, std::string_view pred, NumericTolerance tol) {
    const auto g = parse_number(gold);
    if (!g) return false;
    auto p = parse_number(pred);
    if (!p) {
        const auto answer = extract_math_answer(pred);
        if (answer) p = parse_number(normalize_math(*answer));
    }
    if (!p) return false;
    if (numbers_close(g->value, p->value, tol)) return true;
    if (g->percent != p->percent) {
        const ParsedNumber& pct = g->percent ? *g : *p;
        const ParsedNumber& other = g->percent ? *p : *g;
        return numbers_close(pct.value / 100.0, other.value, tol);
    }
    return false;
}

// ---- multiple choice --------------------------------------------------------------------------

std::optional<char> extract_choice(std::string_view text) {
    if (text.size() > 100000) return std::nullopt;
    if (auto boxed = extract_math_answer(text);
        boxed && text.find("\\boxed") != std::string_view::npos && boxed->size() < text.size()) {
        if (auto c = extract_choice(*boxed)) return c;
    }
    // Markdown and LaTeX wrappers carry no meaning for a letter.
    std::string s(text);
    for (std::string_view c : {"\\textbf", "\\text", "\\mathrm", "\\mathbf"})
        s = unwrap_command(s, c);
    s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == '*' || c == '$'; }),
            s.end());
    const std::string t = trim(s);
    // The whole answer is the letter: "B", "(B)", "B)", "B.", "[b]".
    static const std::regex alone(R"(^[\(\[]?([A-Ja-j])[\)\]]?[.:]?$)");
    std::smatch m;
    if (std::regex_match(t, m, alone)) return static_cast<char>(std::toupper(m[1].str()[0]));
    // "... answer is (B)", "Answer: B", "the correct option is C": the last statement wins.
    static const std::regex stated(
        R"((?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option|choice)?\s*:?\s*[\(\[]?([A-J])(?![A-Za-z0-9]))",
        std::regex::ECMAScript);
    // Match keywords in any case but the letter only in upper case: lower the keywords alone.
    std::string keyed = t;
    const std::string lowered = to_lower(t);
    for (std::string_view w : {"answer", "option", "choice", " is "})
        for (size_t pos = 0; (pos = lowered.find(w, pos)) != std::string::npos; pos += w.size())
            keyed.replace(pos, w.size(), w);
    std::optional<char> last;
    for (auto it = std::sregex_iterator(keyed.begin(), keyed.end(), stated);
         it != std::sregex_iterator(); ++it)
        last = (*it)[1].str()[0];
    if (last) return last;
    // "(B)" anywhere: the last one.
    static const std::regex paren(R"(\(([A-J])\))");
    for (auto it = std::sregex_iterator(t.begin(), t.end(), paren); it != std::sregex_iterator();
         ++it)
        last = (*it)[1].str()[0];
    if (last) return last;
    // "B) because ...", "C. It is ...".
    if (t.size() >= 2 && is_choice_letter(t[0]) && (t[1] == ')' || t[1] == '.' || t[1] == ':'))
        return t[0];
    return std::nullopt;
}

bool verify_choice(std::string_view gold, std::string_view pred) {
    const auto g = extract_choice(gold);
    const auto p = extract_choice(pred);
    return g && p && *g == *p;
}

// ---- dispatch ---------------------------------------------------------------------------------

bool verify(const std::string& kind, const std::string& gold, const std::string& pred) {
    if (kind == "exact") return verify_exact(gold, pred);
    if (kind == "regex") return verify_regex(gold, pred);
    if (kind == "numeric") return verify_numeric(gold, pred);
    if (kind == "mc" || kind == "choice") return verify_choice(gold, pred);
    if (kind == "math") return verify_math(gold, pred);
    throw Error("unknown verifier '" + kind +
                "' (expected exact, regex, numeric, mc (or choice) or math)");
}

}  // namespace crucible::eval
