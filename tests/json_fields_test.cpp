// core/json_fields: the one field getter family and the NaN-as-null writer.
#include "core/json_fields.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.h"

namespace crucible {
namespace {

using nlohmann::json;
using testutil::error_of;

TEST(JsonFields, StringFieldNamesWhereAndTheFieldWhenMissingOrMistyped) {
    const json j = json::parse(R"({"a": "x", "n": 3, "z": null, "l": [1]})");
    EXPECT_EQ(string_field(j, "a", "f.jsonl:4"), "x");
    EXPECT_EQ(error_of([&] { string_field(j, "b", "f.jsonl:4"); }), "f.jsonl:4: missing field 'b'");
    EXPECT_EQ(error_of([&] { string_field(j, "n", "f.jsonl:4"); }),
              "f.jsonl:4: field 'n' must be a string, got number");
    EXPECT_EQ(error_of([&] { string_field(j, "z", "f.jsonl:4"); }),
              "f.jsonl:4: field 'z' must be a string, got null");
    EXPECT_EQ(error_of([&] { string_field(j, "l", "f.jsonl:4"); }),
              "f.jsonl:4: field 'l' must be a string, got array");
}

TEST(JsonFields, StringOrFallsBackOnAnythingButAString) {
    const json j = json::parse(R"({"a": "x", "n": 3, "z": null})");
    EXPECT_EQ(string_or(j, "a"), "x");
    EXPECT_EQ(string_or(j, "n"), "");
    EXPECT_EQ(string_or(j, "z", "d"), "d");
    EXPECT_EQ(string_or(j, "missing", "d"), "d");
    EXPECT_EQ(string_or(json::array({"a"}), "a", "d"), "d");  // not an object
    EXPECT_EQ(string_or(json("a"), "a", "d"), "d");
}

TEST(JsonFields, NumberOrNullWritesNullForNanAndInfinities) {
    EXPECT_EQ(number_or_null(0.25).dump(), "0.25");
    EXPECT_EQ(number_or_null(-3.0).dump(), "-3.0");
    EXPECT_TRUE(number_or_null(std::nan("")).is_null());
    EXPECT_TRUE(number_or_null(std::numeric_limits<double>::infinity()).is_null());
    EXPECT_TRUE(number_or_null(-std::numeric_limits<double>::infinity()).is_null());
}

}  // namespace
}  // namespace crucible
