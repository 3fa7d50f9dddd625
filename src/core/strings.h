// Small string helpers every layer uses (ASCII only; no locale).
#pragma once

#include <string>
#include <string_view>

namespace crucible {

// The ASCII whitespace of C's isspace() in the "C" locale: space, tab, newline, vertical tab,
// form feed, carriage return. Nothing outside ASCII (no U+00A0, no U+3000) counts.
inline constexpr std::string_view kAsciiWhitespace = " \t\n\v\f\r";

// `s` without its leading and trailing characters from `chars` (by default the ASCII
// whitespace above; a caller with a narrower set, such as HTTP's optional whitespace of
// spaces and tabs, passes it and says why). All of `s` trimmed away gives "".
std::string trim(std::string_view s, std::string_view chars = kAsciiWhitespace);

// FNV-1a 64 of `bytes` as 16 lowercase hex digits: a content fingerprint that is the same on
// every build and machine (not cryptographic: it tells edits apart, not attacks).
std::string fnv1a64_hex(std::string_view bytes);

}  // namespace crucible
