#include "tokenizer/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include "core/error.h"

namespace crucible {

bool is_ascii(std::string_view s) {
    uint8_t acc = 0;
    for (char c : s) acc |= static_cast<uint8_t>(c);
    return acc < 0x80;
}

namespace {

// For a lead byte `c` of a well-formed UTF-8 sequence: its length and the allowed range of the
// second byte (Unicode Table 3-7). False when `c` cannot start a sequence.
static bool utf8_lead(uint8_t c, size_t* n, uint8_t* lo, uint8_t* hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        *n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        *n = 3;
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        *n = 4;
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
    } else {
        return false;
    }
    return true;
}

// Length of the well-formed sequence starting at s[i] (1-4), or 0 when s[i] starts an
// ill-formed one; `partial` is set when the bytes are a well-formed but truncated prefix.
size_t utf8_sequence_length(std::string_view s, size_t i, bool* partial) {
    if (partial) *partial = false;
    const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
    const uint8_t c = b(0);
    if (c < 0x80) return 1;
    size_t n;
    uint8_t lo, hi;  // allowed range of the second byte
    if (!utf8_lead(c, &n, &lo, &hi)) return 0;
    for (size_t k = 1; k < n; k++) {
        if (i + k >= s.size()) {
            if (partial) *partial = true;
            return 0;
        }
        const uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (b(k) < lo_k || b(k) > hi_k) return 0;
    }
    return n;
}

// Number of bytes a maximal ill-formed subpart starting at s[i] covers (at least 1).
size_t utf8_invalid_length(std::string_view s, size_t i) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    size_t n;
    uint8_t lo, hi;
    if (!utf8_lead(c, &n, &lo, &hi)) return 1;
    size_t k = 1;
    for (; k < n && i + k < s.size(); k++) {
        const uint8_t x = static_cast<uint8_t>(s[i + k]);
        const uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (x < lo_k || x > hi_k) break;
    }
    return k;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        if (static_cast<uint8_t>(s[i]) < 0x80) {
            i++;
            continue;
        }
        const size_t n = utf8_sequence_length(s, i, nullptr);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

uint32_t utf8_next(std::string_view s, size_t& i) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    const size_t n = utf8_sequence_length(s, i, nullptr);
    if (n == 0) {
        i++;
        return 0xFFFD;
    }
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; k++) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    i += n;
    return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

size_t utf8_complete_prefix(std::string_view s) {
    // A sequence is at most 4 bytes: only the last 3 bytes can start an incomplete one.
    const size_t from = s.size() > 3 ? s.size() - 3 : 0;
    for (size_t i = from; i < s.size(); i++) {
        const uint8_t c = static_cast<uint8_t>(s[i]);
        if (c < 0xC2 || c > 0xF4) continue;  // ASCII, continuation or never-valid lead byte
        bool partial = false;
        utf8_sequence_length(s, i, &partial);
        if (partial) return i;
    }
    return s.size();
}

std::string utf8_lossy(std::string_view s) {
    if (is_valid_utf8(s)) return std::string(s);
    std::string out;
    out.reserve(s.size() + 8);
    size_t i = 0;
    while (i < s.size()) {
        const size_t n = utf8_sequence_length(s, i, nullptr);
        if (n > 0) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            i += utf8_invalid_length(s, i);
        }
    }
    return out;
}

std::string nfc_normalize(std::string_view s) {
    if (is_ascii(s) || !is_valid_utf8(s)) return std::string(s);
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
    if (U_FAILURE(status)) throw Error(std::string("ICU NFC normalizer: ") + u_errorName(status));
    const icu::StringPiece piece(s.data(), static_cast<int32_t>(s.size()));
    if (nfc->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(s);
    status = U_ZERO_ERROR;
    std::string out;
    out.reserve(s.size());
    icu::StringByteSink<std::string> sink(&out);
    nfc->normalizeUTF8(0, piece, sink, nullptr, status);
    if (U_FAILURE(status))
        throw Error(std::string("ICU NFC normalization: ") + u_errorName(status));
    return out;
}

bool is_unicode_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

bool is_word_char(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    const auto c = static_cast<UChar32>(cp);
    if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC)) return true;
    const int8_t t = u_charType(c);
    return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

}  // namespace crucible
