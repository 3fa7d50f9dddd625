// The programmatic criteria: regex, contains, not_contains, numeric, length, json and
// verifier, decided by a program instead of a judge.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "reward/rubric.h"

namespace crucible::reward {

// Counts the tokens of a response for `length` criteria in tokens. The default counts UTF-8
// bytes, which is the token count of the project's byte tokenizer; the RL trainer passes its
// own tokenizer's count.
using TokenCounter = std::function<int64_t(std::string_view)>;

// Whether a programmatic criterion is met by `response` (1 or 0). REQUIRES: c.is_programmatic().
// Throws Error when the check cannot decide: a regex (or a `regex` verifier) stopped at the
// match limits of core/regex.h. The scorer reports that as the criterion's error, never as
// "not met".
bool check_programmatic(const Criterion& c, std::string_view response,
                        const TokenCounter& count_tokens = {});

// Word count: runs of non-whitespace.
int64_t count_words(std::string_view text);

}  // namespace crucible::reward
