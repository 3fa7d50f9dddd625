#include "core/strings.h"

#include <cstdint>
#include <cstdio>

namespace crucible {

std::string trim(std::string_view s, std::string_view chars) {
    const size_t b = s.find_first_not_of(chars);
    if (b == std::string_view::npos) return "";
    const size_t e = s.find_last_not_of(chars);
    return std::string(s.substr(b, e - b + 1));
}

std::string fnv1a64_hex(std::string_view bytes) {
    uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

}  // namespace crucible
