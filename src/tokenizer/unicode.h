// UTF-8 helpers and Unicode normalization for the BPE tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crucible {

// True when every byte of `s` is below 0x80.
bool is_ascii(std::string_view s);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Decodes the code point starting at s[i] and advances i past it. An ill-formed byte is
// returned as 0xFFFD and consumes one byte.
uint32_t utf8_next(std::string_view s, size_t& i);

// Appends the UTF-8 encoding of code point cp.
void utf8_append(std::string& out, uint32_t cp);

// Length of the longest prefix of `s` that ends on a character boundary, treating a trailing
// *incomplete but so far well-formed* multi-byte sequence as not yet complete. Ill-formed bytes
// count as complete (they decode to U+FFFD). Used by streaming decoders to hold back a tail.
size_t utf8_complete_prefix(std::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD, as Rust's
// String::from_utf8_lossy (and Hugging Face tokenizers' decode) does.
std::string utf8_lossy(std::string_view s);

// Unicode NFC of `s` (ICU). Text that is ASCII or already NFC is returned unchanged; ill-formed
// UTF-8 is returned unchanged too (Hugging Face tokenizers only ever sees valid text).
std::string nfc_normalize(std::string_view s);

// Rust's char::is_whitespace (the White_Space property).
bool is_unicode_whitespace(uint32_t cp);

// Rust's char::is_alphanumeric (Alphabetic or a Numeric category) or '_'.
bool is_word_char(uint32_t cp);

}  // namespace crucible
