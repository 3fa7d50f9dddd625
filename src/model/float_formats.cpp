// fp16 and bf16 to and from fp32, bit by bit (no hardware conversion, so every host and
// compiler flag gives the same bytes).
#include "model/float_formats.h"

#include <cmath>
#include <cstring>

#include "kernels/bf16_linear.h"

namespace crucible {

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {  // zero or a subnormal: mant * 2^-24, exact in fp32
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -v : v;
    }
    const uint32_t x =
        exp == 31 ? sign | 0x7f800000 | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

uint16_t fp32_to_fp16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7fffffff;
    if (abs >= 0x7f800000) {  // inf, or NaN kept quiet with its top payload bits
        return static_cast<uint16_t>(sign | 0x7c00 |
                                     (abs > 0x7f800000 ? 0x200 | ((abs >> 13) & 0x3ff) : 0));
    }
    if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // >= 65520 -> inf
    if (abs < 0x38800000) {  // below 2^-14: a subnormal half (units of 2^-24) or zero
        const uint32_t e = abs >> 23;
        if (e < 102) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to zero
        const uint32_t m = (abs & 0x7fffff) | 0x800000;   // value = m * 2^(e-150)
        const uint32_t shift = 126 - e;                   // 14..24
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ff);
    const uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  // a carry moves into the exponent
    return static_cast<uint16_t>(sign | h);
}

float bf16_to_fp32(uint16_t b) {
    return kernels::from_bf16(b);
}

uint16_t fp32_to_bf16(float f) {
    return kernels::to_bf16(f);
}

}  // namespace crucible
