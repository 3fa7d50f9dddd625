// Small string helpers shared by the verifiers (ASCII only; no locale).
#pragma once

#include <cctype>
#include <string>
#include <string_view>

#include "core/strings.h"

namespace crucible::eval::text {

inline bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}
inline bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
inline bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

inline bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}
inline bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    if (from.empty()) return s;
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
    return s;
}

// Index of the '}' matching the '{' at `open`, or npos.
inline size_t match_brace(std::string_view s, size_t open) {
    int depth = 0;
    for (size_t i = open; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
            ++i;  // an escaped brace is text
            continue;
        }
        if (s[i] == '{') ++depth;
        if (s[i] == '}' && --depth == 0) return i;
    }
    return std::string::npos;
}

// \name{X} -> X, for every occurrence (nested ones too). An unbalanced one is left alone.
inline std::string unwrap_command(std::string s, std::string_view name) {
    size_t pos = 0;
    while ((pos = s.find(name, pos)) != std::string::npos) {
        size_t b = pos + name.size();
        if (b < s.size() && is_alpha(s[b])) {
            pos = b;
            continue;
        }
        while (b < s.size() && s[b] == ' ') ++b;
        if (b >= s.size() || s[b] != '{') {
            pos = b;
            continue;
        }
        const size_t e = match_brace(s, b);
        if (e == std::string::npos) {
            pos = b;
            continue;
        }
        s = s.substr(0, pos) + s.substr(b + 1, e - b - 1) + s.substr(e + 1);
    }
    return s;
}

}  // namespace crucible::eval::text
