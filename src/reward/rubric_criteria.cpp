// The programmatic criteria: checks a program can decide without a judge.
#include "reward/rubric_criteria.h"

#include <algorithm>
#include <cmath>

#include "core/regex.h"
#include "core/strings.h"
#include "reward/verify/math_answer.h"
#include "reward/verify/verifiers.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

}  // namespace

int64_t count_words(std::string_view text) {
    int64_t n = 0;
    bool in_word = false;
    for (char c : text) {
        const bool space = kAsciiWhitespace.find(c) != std::string_view::npos;
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

namespace {

// The last number written in `text` (digits with optional sign, decimals, exponent).
std::optional<double> last_number(std::string_view text) {
    static const std::shared_ptr<const Regex> number = [] {
        std::string error;
        return Regex::compile(R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)",
                              RegexOptions{}, &error);
    }();
    const auto last = number->last_group(text, 0);
    if (!last) return std::nullopt;
    const auto n = eval::parse_number(*last);
    return n ? std::optional<double>(n->value) : std::nullopt;
}

std::optional<double> numeric_answer(const Criterion& c, std::string_view response) {
    if (c.compiled) {  // the last match wins, like a final answer
        const auto group = c.compiled->last_group(response, 1);
        if (!group) return std::nullopt;
        if (auto n = eval::parse_number(*group)) return n->value;
        return std::nullopt;
    }
    if (auto answer = eval::extract_math_answer(response)) {
        if (auto n = eval::parse_number(*answer)) return n->value;
        if (auto n = last_number(*answer)) return n;
    }
    return last_number(response);
}

std::optional<json> parse_json_response(std::string_view response) {
    std::string text = trim(response);
    // One fenced block ```json ... ``` (or ``` ... ```) is unwrapped.
    if (text.rfind("```", 0) == 0) {
        const size_t nl = text.find('\n');
        const size_t close = text.rfind("```");
        if (nl == std::string::npos || close <= nl) return std::nullopt;
        text = trim(std::string_view(text).substr(nl + 1, close - nl - 1));
    }
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return std::nullopt;
    return j;
}

}  // namespace

bool check_programmatic(const Criterion& c, std::string_view response,
                        const TokenCounter& count_tokens) {
    switch (c.kind) {
        case CriterionKind::judge:
            return false;
        case CriterionKind::regex: {
            return c.compiled && c.compiled->search(response);
        }
        case CriterionKind::contains:
        case CriterionKind::not_contains: {
            const bool found = c.case_sensitive
                                   ? response.find(c.value) != std::string_view::npos
                                   : lower(response).find(lower(c.value)) != std::string::npos;
            return c.kind == CriterionKind::contains ? found : !found;
        }
        case CriterionKind::numeric: {
            const auto x = numeric_answer(c, response);
            if (!x) return false;
            return std::fabs(*x - c.target) <= std::max(c.abs_tol, c.rel_tol * std::fabs(c.target));
        }
        case CriterionKind::length: {
            double n = 0;
            switch (c.unit) {
                case LengthUnit::words:
                    n = static_cast<double>(count_words(response));
                    break;
                case LengthUnit::chars: {  // UTF-8 code points
                    for (char ch : response)
                        if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++n;
                    break;
                }
                case LengthUnit::tokens:
                    n = static_cast<double>(count_tokens ? count_tokens(response)
                                                         : static_cast<int64_t>(response.size()));
                    break;
            }
            if (c.min_length && n < *c.min_length) return false;
            if (c.max_length && n > *c.max_length) return false;
            return true;
        }
        case CriterionKind::json: {
            const auto j = parse_json_response(response);
            if (!j) return false;
            if (c.required_keys.empty()) return true;
            if (!j->is_object()) return false;
            for (const std::string& k : c.required_keys)
                if (!j->contains(k)) return false;
            return true;
        }
        case CriterionKind::verifier:  // its errors (a regex stopped at its limits) pass on
            return eval::verify(c.verifier, c.answer, std::string(response));
    }
    return false;
}

}  // namespace crucible::reward
