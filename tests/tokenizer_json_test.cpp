// parse_tokenizer_json: the fields of a hand-written tokenizer.json as parsed (vocabulary,
// merges in both forms, added-token flags and their defaults, normalizer, a pre-tokenizer
// Sequence flattened in order) and errors that name the file and the field.
#include "tokenizer/tokenizer_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace crucible {
namespace {

using nlohmann::json;
using testutil::error_of;
using testutil::TempDir;

json sample() {
    return {{"added_tokens",
             {{{"id", 5}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
              {{"id", 6}, {"content", "hi"}, {"lstrip", true}, {"single_word", nullptr}}}},
            {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}}},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"},
                 {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
                 {"behavior", "Isolated"},
                 {"invert", false}},
                {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}}}}}},
            {"model",
             {{"type", "BPE"},
              {"unk_token", "a"},
              {"ignore_merges", true},
              {"vocab", {{"b", 1}, {"a", 0}, {"ab", 2}}},
              {"merges", json::array({"#version: 0.2", "a b", json::array({"ab", "b"})})}}}};
}

TEST(TokenizerJson, ParsesEveryField) {
    TempDir dir;
    const TokenizerJson t = parse_tokenizer_json(dir.write("tokenizer.json", sample().dump()));
    EXPECT_EQ(t.vocab,
              (std::vector<std::pair<std::string, int32_t>>{{"a", 0}, {"ab", 2}, {"b", 1}}));
    ASSERT_EQ(t.merges.size(), 2u);  // the #version line is skipped, its index kept
    EXPECT_EQ(t.merges[0].left, "a");
    EXPECT_EQ(t.merges[0].right, "b");
    EXPECT_EQ(t.merges[0].index, 1u);
    EXPECT_EQ(t.merges[1].left, "ab");
    EXPECT_EQ(t.merges[1].right, "b");
    EXPECT_EQ(t.merges[1].index, 2u);
    ASSERT_EQ(t.added_tokens.size(), 2u);
    EXPECT_EQ(t.added_tokens[0].content, "<s>");
    EXPECT_EQ(t.added_tokens[0].id, 5);
    EXPECT_TRUE(t.added_tokens[0].special);
    EXPECT_FALSE(t.added_tokens[0].normalized);
    EXPECT_EQ(t.added_tokens[1].id, 6);
    EXPECT_TRUE(t.added_tokens[1].lstrip);
    EXPECT_FALSE(t.added_tokens[1].rstrip);
    EXPECT_FALSE(t.added_tokens[1].single_word);  // null: the default
    EXPECT_TRUE(t.added_tokens[1].normalized);    // absent: the default
    EXPECT_FALSE(t.added_tokens[1].special);
    EXPECT_EQ(t.unk_token, "a");
    EXPECT_TRUE(t.ignore_merges);
    EXPECT_FALSE(t.fuse_unk);
    EXPECT_TRUE(t.nfc);
    EXPECT_TRUE(t.has_pre_tokenizer);
    ASSERT_EQ(t.pre_tokenizer.size(), 2u);
    EXPECT_FALSE(t.pre_tokenizer[0].byte_level);
    EXPECT_EQ(t.pre_tokenizer[0].pattern, "\\p{N}{1,3}");
    EXPECT_EQ(t.pre_tokenizer[0].field, "pre_tokenizer.pretokenizers[0]");
    EXPECT_TRUE(t.pre_tokenizer[1].byte_level);
    EXPECT_TRUE(t.pre_tokenizer[1].add_prefix_space);
    EXPECT_FALSE(t.pre_tokenizer[1].use_regex);

    json j = sample();
    j.erase("pre_tokenizer");
    j.erase("normalizer");
    j.erase("added_tokens");
    j["model"].erase("type");  // BPE unless it says otherwise
    const TokenizerJson bare = parse_tokenizer_json(dir.write("bare.json", j.dump()));
    EXPECT_FALSE(bare.has_pre_tokenizer);
    EXPECT_FALSE(bare.nfc);
    EXPECT_TRUE(bare.added_tokens.empty());
}

TEST(TokenizerJson, ErrorsNameTheFileAndField) {
    TempDir dir;
    const auto expect_error = [&](const std::string& name, const json& j,
                                  const std::string& field) {
        const auto p = dir.write(name, j.dump());
        const std::string msg = error_of([&] { parse_tokenizer_json(p); });
        EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find(field), std::string::npos) << "expected '" << field << "' in: " << msg;
    };
    json j = sample();
    j["model"]["merges"][1] = "a  b";
    expect_error("merge.json", j, "model.merges[1]");
    j = sample();
    j["model"].erase("merges");
    expect_error("nomerges.json", j, "model.merges");
    j = sample();
    j["added_tokens"][1]["content"] = 7;
    expect_error("added.json", j, "added_tokens[1]");
    j = sample();
    j["added_tokens"][0]["special"] = "yes";  // a flag of the wrong type
    expect_error("flag.json", j, "unexpected value type");
    j = sample();
    j["model"]["vocab"]["b"] = -1;
    expect_error("vocab.json", j, "model.vocab[\"b\"]");
    j = sample();
    j["model"]["dropout"] = 0.1;
    expect_error("dropout.json", j, "model.dropout");
    j = sample();
    j["normalizer"]["normalizers"][0]["type"] = "Lowercase";
    expect_error("norm.json", j, "normalizer.normalizers[0]");
    j = sample();
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
    expect_error("behavior.json", j, "pre_tokenizer.pretokenizers[0].behavior");
    j = sample();
    j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Metaspace"}};
    expect_error("meta.json", j, "pre_tokenizer.pretokenizers[1].type");
    expect_error("array.json", json::array(), "(top level)");
    const auto bad = dir.write("bad.json", "{\"model\": ");
    EXPECT_NE(error_of([&] { parse_tokenizer_json(bad); }).find("not valid JSON"),
              std::string::npos);
}

}  // namespace
}  // namespace crucible
