// fp16 and bf16 conversions (model/float_formats) against expectations worked out by hand (bit
// patterns of well-known values, a tie on each side of an even result, subnormals, inf, NaN)
// and against reference roundings written here from the formats' definitions; every 16-bit
// pattern goes through fp32 and back.
#include "model/float_formats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace crucible {
namespace {

uint32_t bits_of(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    return x;
}

float from_bits(uint32_t x) {
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

// The value a 16-bit pattern with `exp_bits` of exponent (bias 2^(exp_bits-1) - 1) and
// `mant_bits` of mantissa stands for, from the IEEE definition (NaN/inf excluded), in double.
double value_of(uint16_t h, int exp_bits, int mant_bits) {
    const int bias = (1 << (exp_bits - 1)) - 1;
    const int e = (h >> mant_bits) & ((1 << exp_bits) - 1);
    const int m = h & ((1 << mant_bits) - 1);
    const double v = e == 0 ? std::ldexp(m, 1 - bias - mant_bits)
                            : std::ldexp(1.0 + std::ldexp(m, -mant_bits), e - bias);
    return (h & 0x8000) ? -v : v;
}

// Rounds x to `sig` significant bits (steps of 2^min_exp below the normal range), ties to even,
// and to inf from `overflow` up: the rounding the format defines, done in double.
double round_to(double x, int sig, int min_exp, double overflow) {
    if (x == 0.0 || !std::isfinite(x)) return x;
    int e;
    std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
    const int q = std::max(e - sig, min_exp);
    const double r = std::ldexp(std::nearbyint(std::ldexp(std::fabs(x), -q)), q);
    return std::copysign(r >= overflow ? INFINITY : r, x);
}

double fp16_round(float x) {
    return round_to(x, 11, -24, 65520.0);
}
double bf16_round(float x) {
    return round_to(x, 8, -133, std::ldexp(2.0 - std::ldexp(1.0, -8), 127));
}

TEST(FloatFormats, Fp16HandWorkedBitPatterns) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);
    EXPECT_EQ(fp32_to_fp16(-2.0f), 0xC000);
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);         // the largest finite half
    EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7BFF);         // below the halfway point
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);         // halfway to 2^16: ties to inf
    EXPECT_EQ(fp32_to_fp16(0x1p-24f), 0x0001);         // the smallest subnormal
    EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);         // a tie with zero: to even, zero
    EXPECT_EQ(fp32_to_fp16(0x1.8p-25f), 0x0001);       // above the tie
    EXPECT_EQ(fp32_to_fp16(0x3p-25f), 0x0002);         // 1.5 units: tie, up to even 2
    EXPECT_EQ(fp32_to_fp16(0x1p-14f), 0x0400);         // the smallest normal
    EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3C00);  // tie: down to even 0x3C00
    EXPECT_EQ(fp32_to_fp16(1.0f + 0x3p-11f), 0x3C02);  // tie: up to even 0x3C02
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7C00);
    EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xFC00);
    EXPECT_EQ(fp32_to_fp16(nan), 0x7E00);                    // quiet NaN
    EXPECT_EQ(fp32_to_fp16(from_bits(0x7F800001)), 0x7E00);  // signalling NaN made quiet
    EXPECT_EQ(fp32_to_fp16(from_bits(0xFFC02000)), 0xFE01);  // sign and top payload kept

    EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
    EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
    EXPECT_EQ(fp16_to_fp32(0x0001), 0x1p-24f);
    EXPECT_EQ(fp16_to_fp32(0x03FF), 1023 * 0x1p-24f);
    EXPECT_EQ(bits_of(fp16_to_fp32(0x8000)), 0x80000000u);
    EXPECT_EQ(fp16_to_fp32(0x7C00), INFINITY);
    EXPECT_EQ(fp16_to_fp32(0xFC00), -INFINITY);
    EXPECT_EQ(bits_of(fp16_to_fp32(0x7E00)), 0x7FC00000u);
    EXPECT_EQ(bits_of(fp16_to_fp32(0xFE01)), 0xFFC02000u);
}

TEST(FloatFormats, Bf16HandWorkedBitPatterns) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
    EXPECT_EQ(fp32_to_bf16(-2.0f), 0xC000);
    EXPECT_EQ(fp32_to_bf16(65504.0f), 0x4780);        // 0x477FE000 rounds up to 65536
    EXPECT_EQ(fp32_to_bf16(0x1p-133f), 0x0001);       // the smallest subnormal
    EXPECT_EQ(fp32_to_bf16(0x1p-134f), 0x0000);       // a tie with zero: to even, zero
    EXPECT_EQ(fp32_to_bf16(1.0f + 0x1p-8f), 0x3F80);  // tie: down to even 0x3F80
    EXPECT_EQ(fp32_to_bf16(1.0f + 0x3p-8f), 0x3F82);  // tie: up to even 0x3F82
    EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf
    EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_bf16(INFINITY), 0x7F80);
    EXPECT_EQ(fp32_to_bf16(-INFINITY), 0xFF80);
    EXPECT_EQ(fp32_to_bf16(nan), 0x7FC0);
    EXPECT_EQ(fp32_to_bf16(from_bits(0x7F800001)), 0x7FC0);  // signalling NaN made quiet
    EXPECT_EQ(fp32_to_bf16(from_bits(0xFF81FFFF)), 0xFFC1);  // no rounding into the exponent

    EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
    EXPECT_EQ(bf16_to_fp32(0xC000), -2.0f);
    EXPECT_EQ(bf16_to_fp32(0x4780), 65536.0f);
    EXPECT_EQ(bf16_to_fp32(0x0001), 0x1p-133f);
    EXPECT_EQ(bf16_to_fp32(0x7F80), INFINITY);
    EXPECT_EQ(bits_of(bf16_to_fp32(0x7FC1)), 0x7FC10000u);
}

// Every pattern decodes to the value its fields define and encodes back to itself; a NaN stays
// a NaN (made quiet, sign and payload kept).
TEST(FloatFormats, EveryFp16PatternRoundTrips) {
    for (uint32_t i = 0; i < 0x10000; i++) {
        const auto h = static_cast<uint16_t>(i);
        const float f = fp16_to_fp32(h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0) {
            ASSERT_TRUE(std::isnan(f)) << i;
            ASSERT_EQ(fp32_to_fp16(f), h | 0x200) << i;
            continue;
        }
        if ((h & 0x7FFF) == 0x7C00) {
            ASSERT_EQ(f, (h & 0x8000) ? -INFINITY : INFINITY) << i;
        } else {
            ASSERT_EQ(static_cast<double>(f), value_of(h, 5, 10)) << i;
            ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << i;
        }
        ASSERT_EQ(fp32_to_fp16(f), h) << i;
    }
}

TEST(FloatFormats, EveryBf16PatternRoundTrips) {
    for (uint32_t i = 0; i < 0x10000; i++) {
        const auto b = static_cast<uint16_t>(i);
        const float f = bf16_to_fp32(b);
        if ((b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0) {
            ASSERT_TRUE(std::isnan(f)) << i;
            ASSERT_EQ(fp32_to_bf16(f), b | 0x40) << i;
            continue;
        }
        if ((b & 0x7FFF) == 0x7F80) {
            ASSERT_EQ(f, (b & 0x8000) ? -INFINITY : INFINITY) << i;
        } else {
            ASSERT_EQ(static_cast<double>(f), value_of(b, 8, 7)) << i;
            ASSERT_EQ(std::signbit(f), (b & 0x8000) != 0) << i;
        }
        ASSERT_EQ(fp32_to_bf16(f), b) << i;
    }
}

// fp32 -> 16 bits agrees with the reference rounding over a stride through every fp32 pattern
// (every sign, exponent and many mantissas, ties included through the low bits).
TEST(FloatFormats, RoundingMatchesTheReferenceAcrossFp32) {
    for (uint64_t x = 0; x <= 0xFFFFFFFFu; x += 997) {
        const float f = from_bits(static_cast<uint32_t>(x));
        if (std::isnan(f)) continue;
        ASSERT_EQ(static_cast<double>(fp16_to_fp32(fp32_to_fp16(f))), fp16_round(f)) << x;
        ASSERT_EQ(static_cast<double>(bf16_to_fp32(fp32_to_bf16(f))), bf16_round(f)) << x;
    }
    // Exact ties (the low bits exactly half a step) in both formats, each exponent.
    for (uint32_t e = 1; e < 255; e++) {
        for (uint32_t m : {0x001000u, 0x003000u, 0x7FF000u, 0x008000u, 0x018000u, 0x7F8000u}) {
            const float f = from_bits(e << 23 | m);
            ASSERT_EQ(static_cast<double>(fp16_to_fp32(fp32_to_fp16(f))), fp16_round(f)) << e;
            ASSERT_EQ(static_cast<double>(bf16_to_fp32(fp32_to_bf16(f))), bf16_round(f)) << e;
        }
    }
}

}  // namespace
}  // namespace crucible
