// core/strings: the one trim, its whitespace set and a caller's narrower set.
#include "core/strings.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

TEST(Strings, TrimRemovesAsciiWhitespaceAtBothEnds) {
    EXPECT_EQ(trim("  a b \t"), "a b");
    EXPECT_EQ(trim("\n\v\f\r x \r\n"), "x");
    EXPECT_EQ(trim("x"), "x");
    EXPECT_EQ(trim(""), "");
    EXPECT_EQ(trim(" \t\n\v\f\r"), "");
}

TEST(Strings, TrimLeavesNonAsciiSpacesAndInnerWhitespace) {
    EXPECT_EQ(trim("\xC2\xA0x\xC2\xA0"), "\xC2\xA0x\xC2\xA0");  // U+00A0 is not ASCII whitespace
    EXPECT_EQ(trim(" a \n b "), "a \n b");
}

// The published FNV-1a 64 test vectors (Fowler, Noll, Vo: "", "a", "foobar").
TEST(Strings, Fnv1a64IsThePublishedFunction) {
    EXPECT_EQ(fnv1a64_hex(""), "cbf29ce484222325");
    EXPECT_EQ(fnv1a64_hex("a"), "af63dc4c8601ec8c");
    EXPECT_EQ(fnv1a64_hex("foobar"), "85944171f73967e8");
}

TEST(Strings, TrimWithANarrowerSet) {
    EXPECT_EQ(trim(" \tvalue\t ", " \t"), "value");
    EXPECT_EQ(trim("\r value \f", " \t"), "\r value \f");
    EXPECT_EQ(trim(" \t ", " \t"), "");
}

}  // namespace
}  // namespace crucible
