// SFT data: prompt/completion and ChatML examples with per-token target flags, packing into
// a PackedBatch, JSONL loading with its errors, truncation and the built-in tasks. Token ids
// are worked out by hand from the byte tokenizer (a byte is its own id; <|endoftext|> = 256,
// <|im_start|> = 257, <|im_end|> = 258).
#include "train/sft_data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "env/countdown.h"
#include "test_util.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::slurp;
using testutil::TempDir;

namespace fs = std::filesystem;

constexpr int32_t kEot = ByteTokenizer::kEndOfText;
constexpr int32_t kStart = ByteTokenizer::kImStart;
constexpr int32_t kEnd = ByteTokenizer::kImEnd;

// The tokens of `ex` whose target flag is set, in order.
std::vector<int32_t> target_tokens(const SftExample& ex) {
    std::vector<int32_t> out;
    for (size_t i = 0; i < ex.tokens.size(); i++) {
        if (ex.target[i]) out.push_back(ex.tokens[i]);
    }
    return out;
}

// ---- make_prompt_completion / count_targets -------------------------------------------------

TEST(SftDataPromptCompletion, TokensAndTargetsByHand) {
    const ByteTokenizer tok;
    const SftExample ex = make_prompt_completion(tok, "ab", "c");
    EXPECT_EQ(ex.tokens, (std::vector<int32_t>{'a', 'b', 'c', kEot}));
    EXPECT_EQ(ex.target, (std::vector<uint8_t>{0, 0, 1, 1}));
    EXPECT_EQ(ex.prompt, "ab");
    EXPECT_EQ(ex.completion, "c");
}

TEST(SftDataPromptCompletion, MultiByteCompletionAndNonAsciiBytes) {
    const ByteTokenizer tok;
    // "é" is the two bytes 0xC3 0xA9.
    const SftExample ex = make_prompt_completion(tok, "1+1=", "2\xC3\xA9");
    EXPECT_EQ(ex.tokens, (std::vector<int32_t>{'1', '+', '1', '=', '2', 0xC3, 0xA9, kEot}));
    EXPECT_EQ(ex.target, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1, 1, 1}));
}

TEST(SftDataPromptCompletion, EmptyCompletionStillTrainsTheEndOfText) {
    const ByteTokenizer tok;
    const SftExample ex = make_prompt_completion(tok, "q", "");
    EXPECT_EQ(ex.tokens, (std::vector<int32_t>{'q', kEot}));
    EXPECT_EQ(ex.target, (std::vector<uint8_t>{0, 1}));
    EXPECT_EQ(count_targets(ex), 1);
}

TEST(SftDataCountTargets, CountsPredictedTokensOnly) {
    const ByteTokenizer tok;
    // "ab"+"c": flags 0 0 1 1; predictions are tokens 1..3 with flags 0 1 1.
    EXPECT_EQ(count_targets(make_prompt_completion(tok, "ab", "c")), 2);
    // ""+"ab": flags 1 1 1, but token 0 is never predicted.
    EXPECT_EQ(count_targets(make_prompt_completion(tok, "", "ab")), 2);
    // "hello"+"world": 5 completion bytes + EOS.
    EXPECT_EQ(count_targets(make_prompt_completion(tok, "hello", "world")), 6);
    SftExample hand;
    hand.tokens = {1, 2, 3, 4, 5};
    hand.target = {1, 0, 1, 0, 1};
    EXPECT_EQ(count_targets(hand), 2);
}

// ---- pack_example ---------------------------------------------------------------------------

TEST(SftDataPack, OneExampleShiftsByOne) {
    const ByteTokenizer tok;
    PackedBatch b;
    pack_example(make_prompt_completion(tok, "ab", "c"), 0.5f, &b);
    EXPECT_EQ(b.tokens, (std::vector<int32_t>{'a', 'b', 'c'}));
    EXPECT_EQ(b.targets, (std::vector<int32_t>{'b', 'c', kEot}));
    EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2}));
    // Row i predicts token i+1, so its weight follows token i+1's flag: 0, 1, 1.
    EXPECT_EQ(b.loss_weight, (std::vector<float>{0.0f, 0.5f, 0.5f}));
    EXPECT_EQ(b.seq_start, (std::vector<int32_t>{0}));
    EXPECT_EQ(b.seq_len, (std::vector<int32_t>{3}));
}

TEST(SftDataPack, TwoExamplesBackToBack) {
    const ByteTokenizer tok;
    PackedBatch b;
    pack_example(make_prompt_completion(tok, "ab", "c"), 1.0f, &b);   // 4 tokens -> 3 rows
    pack_example(make_prompt_completion(tok, "x", "yz"), 0.25f, &b);  // 4 tokens -> 3 rows
    EXPECT_EQ(b.tokens, (std::vector<int32_t>{'a', 'b', 'c', 'x', 'y', 'z'}));
    EXPECT_EQ(b.targets, (std::vector<int32_t>{'b', 'c', kEot, 'y', 'z', kEot}));
    EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
    EXPECT_EQ(b.loss_weight, (std::vector<float>{0.0f, 1.0f, 1.0f, 0.25f, 0.25f, 0.25f}));
    EXPECT_EQ(b.seq_start, (std::vector<int32_t>{0, 3}));
    EXPECT_EQ(b.seq_len, (std::vector<int32_t>{3, 3}));
    EXPECT_EQ(b.n_tokens(), 6);
    EXPECT_EQ(b.n_seqs(), 2);
}

TEST(SftDataPack, UnequalLengthsAndHandFlags) {
    PackedBatch b;
    SftExample e1;
    e1.tokens = {10, 11};
    e1.target = {0, 1};
    SftExample e2;
    e2.tokens = {20, 21, 22, 23, 24};
    e2.target = {0, 1, 0, 0, 1};
    pack_example(e1, 2.0f, &b);
    pack_example(e2, 3.0f, &b);
    EXPECT_EQ(b.tokens, (std::vector<int32_t>{10, 20, 21, 22, 23}));
    EXPECT_EQ(b.targets, (std::vector<int32_t>{11, 21, 22, 23, 24}));
    EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 0, 1, 2, 3}));
    EXPECT_EQ(b.loss_weight, (std::vector<float>{2.0f, 3.0f, 0.0f, 0.0f, 3.0f}));
    EXPECT_EQ(b.seq_start, (std::vector<int32_t>{0, 1}));
    EXPECT_EQ(b.seq_len, (std::vector<int32_t>{1, 4}));
}

// ---- load_sft_jsonl -------------------------------------------------------------------------

TEST(SftDataJsonl, PromptCompletionLinesAndBlankLines) {
    TempDir dir;
    const std::string path = dir.write("d.jsonl",
                                       "{\"prompt\": \"ab\", \"completion\": \"c\"}\n"
                                       "\n"
                                       "   \t \n"
                                       "{\"completion\": \"yz\", \"prompt\": \"x\", \"id\": 7}\n"
                                       "\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 2u);
    EXPECT_EQ(ds.examples[0].tokens, (std::vector<int32_t>{'a', 'b', 'c', kEot}));
    EXPECT_EQ(ds.examples[0].target, (std::vector<uint8_t>{0, 0, 1, 1}));
    EXPECT_EQ(ds.examples[0].prompt, "ab");
    EXPECT_EQ(ds.examples[0].completion, "c");
    EXPECT_EQ(ds.examples[1].tokens, (std::vector<int32_t>{'x', 'y', 'z', kEot}));
    EXPECT_EQ(ds.examples[1].target, (std::vector<uint8_t>{0, 1, 1, 1}));
    EXPECT_EQ(ds.truncated, 0);
    EXPECT_EQ(ds.task, "");
}

TEST(SftDataJsonl, CompletionPiecesTrainOnlyWhatTheySay) {
    // A multi-turn tool demonstration: the model's turns are trained, the tool's output is in
    // the sequence but not trained on; the end-of-text after the last piece is trained.
    TempDir dir;
    const std::string path =
        dir.write("d.jsonl",
                  "{\"prompt\": \"Q\", \"completion\": [\"<s>\", {\"text\": \"ob\", \"train\": "
                  "false}, {\"text\": \"A\", \"train\": true}]}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 1u);
    const SftExample& ex = ds.examples[0];
    EXPECT_EQ(ex.tokens, (std::vector<int32_t>{'Q', '<', 's', '>', 'o', 'b', 'A', kEot}));
    EXPECT_EQ(ex.target, (std::vector<uint8_t>{0, 1, 1, 1, 0, 0, 1, 1}));
    EXPECT_EQ(ex.prompt, "Q");
    EXPECT_EQ(ex.completion, "<s>obA");
    EXPECT_EQ(count_targets(ex), 5);
}

TEST(SftDataJsonl, JsonEscapesAreDecoded) {
    TempDir dir;
    const std::string path =
        dir.write("esc.jsonl", "{\"prompt\": \"a\\nb\", \"completion\": \"\\u00e9\\\"\"}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 1u);
    EXPECT_EQ(ds.examples[0].tokens, (std::vector<int32_t>{'a', '\n', 'b', 0xC3, 0xA9, '"', kEot}));
}

TEST(SftDataJsonl, CrlfLineEndings) {
    TempDir dir;
    const std::string path = dir.write("crlf.jsonl",
                                       "{\"prompt\": \"a\", \"completion\": \"b\"}\r\n"
                                       "\r\n"
                                       "{\"prompt\": \"c\", \"completion\": \"d\"}\r\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 2u);
    EXPECT_EQ(ds.examples[1].tokens, (std::vector<int32_t>{'c', 'd', kEot}));
}

TEST(SftDataJsonl, MessagesRenderAsChatmlAndTrainOnlyTheAssistant) {
    TempDir dir;
    const std::string path = dir.write("chat.jsonl",
                                       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                                       "{\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 1u);
    const SftExample& ex = ds.examples[0];
    EXPECT_EQ(tok.decode(ex.tokens),
              "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n");
    // By hand: <|im_start|> u s e r \n h i <|im_end|> \n <|im_start|> a s s i s t a n t \n
    // y o <|im_end|> \n = 25 tokens; y, o and the second <|im_end|> (21, 22, 23) are trained.
    const std::vector<int32_t> want_tokens = {kStart, 'u',    's',  'e', 'r', '\n', 'h', 'i', kEnd,
                                              '\n',   kStart, 'a',  's', 's', 'i',  's', 't', 'a',
                                              'n',    't',    '\n', 'y', 'o', kEnd, '\n'};
    EXPECT_EQ(ex.tokens, want_tokens);
    ASSERT_EQ(ex.target.size(), 25u);
    for (size_t i = 0; i < ex.target.size(); i++) {
        EXPECT_EQ(ex.target[i], (i >= 21 && i <= 23) ? 1 : 0) << "token " << i;
    }
    EXPECT_EQ(tok.decode(target_tokens(ex)), "yo<|im_end|>");
    EXPECT_EQ(count_targets(ex), 3);
}

TEST(SftDataJsonl, MultiTurnTrainsEveryAssistantTurn) {
    TempDir dir;
    const std::string path = dir.write(
        "multi.jsonl",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, "
        "{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, "
        "{\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": "
        "\"d\"}]}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 256);
    ASSERT_EQ(ds.examples.size(), 1u);
    EXPECT_EQ(tok.decode(ds.examples[0].tokens),
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n"
              "<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n"
              "<|im_start|>assistant\nd<|im_end|>\n");
    EXPECT_EQ(tok.decode(target_tokens(ds.examples[0])), "b<|im_end|>d<|im_end|>");
}

TEST(SftDataJsonl, MixedKindsInOneFile) {
    TempDir dir;
    const std::string path =
        dir.write("mixed.jsonl",
                  "{\"prompt\": \"p\", \"completion\": \"q\"}\n"
                  "{\"messages\": [{\"role\": \"assistant\", \"content\": \"z\"}]}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 64);
    ASSERT_EQ(ds.examples.size(), 2u);
    EXPECT_EQ(tok.decode(ds.examples[1].tokens), "<|im_start|>assistant\nz<|im_end|>\n");
    EXPECT_EQ(tok.decode(target_tokens(ds.examples[1])), "z<|im_end|>");
}

// Each malformed file must raise a crucible::Error whose message contains `path:LINE` and
// the given fragment.
struct BadCase {
    const char* name;
    std::string text;
    int line;  // 0: the message names the file without a line
    const char* fragment;
};

TEST(SftDataJsonl, MalformedInputErrorsNameFileLineAndField) {
    const std::string ok = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
    const BadCase cases[] = {
        {"bad_json_line3", ok + ok + "{\"prompt\": \"a\", \"completion\": \n", 3, "JSON"},
        {"bad_json_after_blank", ok + "\n" + "not json\n", 3, "JSON"},
        {"prompt_not_string", "{\"prompt\": 5, \"completion\": \"b\"}\n", 1, "'prompt'"},
        {"completion_not_string", ok + "{\"prompt\": \"a\", \"completion\": null}\n", 2,
         "'completion'"},
        {"missing_completion", "{\"prompt\": \"a\"}\n", 1, "'completion'"},
        {"missing_prompt", "{\"completion\": \"a\"}\n", 1, "'prompt'"},
        {"neither", "{\"text\": \"a\"}\n", 1, "'messages'"},
        {"array_line", ok + "[\"prompt\", \"completion\"]\n", 2, "object"},
        {"string_line", "\"hello\"\n", 1, "object"},
        {"no_assistant", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", 1,
         "assistant"},
        {"messages_not_array", "{\"messages\": \"hi\"}\n", 1, "'messages'"},
        {"messages_empty", "{\"messages\": []}\n", 1, "'messages'"},
        {"message_not_object", "{\"messages\": [\"hi\"]}\n", 1, "messages[0]"},
        {"message_no_role",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"content\": \"b\"}]}\n", 1,
         "'role'"},
        {"content_not_string", "{\"messages\": [{\"role\": \"assistant\", \"content\": [1]}]}\n", 1,
         "'content'"},
        {"piece_not_string", "{\"prompt\": \"a\", \"completion\": [\"b\", 3]}\n", 1,
         "completion[1]"},
        {"piece_no_text", "{\"prompt\": \"a\", \"completion\": [{\"train\": true}]}\n", 1,
         "completion[0]: missing field 'text'"},
        {"piece_train_not_bool",
         "{\"prompt\": \"a\", \"completion\": [{\"text\": \"b\", \"train\": 1}]}\n", 1,
         "completion[0]: field 'train'"},
        {"pieces_without_prompt", "{\"completion\": [\"b\"]}\n", 1, "'prompt'"},
        {"empty_file", "", 0, "no examples"},
        {"only_blank_lines", "\n  \n\t\n", 0, "no examples"},
    };
    TempDir dir;
    const ByteTokenizer tok;
    for (const BadCase& bc : cases) {
        SCOPED_TRACE(bc.name);
        const std::string path = dir.write(std::string(bc.name) + ".jsonl", bc.text);
        const std::string msg = error_of([&] { load_sft_jsonl(path, tok, 64); });
        const std::string where = bc.line ? path + ":" + std::to_string(bc.line) + ":" : path;
        EXPECT_NE(msg.find(where), std::string::npos) << msg;
        EXPECT_NE(msg.find(bc.fragment), std::string::npos) << msg;
    }
}

TEST(SftDataJsonl, MissingFileNamesThePath) {
    TempDir dir;
    const std::string path = dir.write("x.jsonl", "").string() + ".missing";
    const ByteTokenizer tok;
    EXPECT_NE(error_of([&] { load_sft_jsonl(path, tok, 64); }).find(path), std::string::npos);
}

TEST(SftDataJsonl, TruncationToMaxSeqLenIsCounted) {
    TempDir dir;
    const std::string path = dir.write("long.jsonl",
                                       // 2 + 4 + EOS = 7 tokens > 4 + 1: cut to 5.
                                       "{\"prompt\": \"ab\", \"completion\": \"cdef\"}\n"
                                       // 1 + 3 + EOS = 5 tokens = 4 + 1: kept whole.
                                       "{\"prompt\": \"a\", \"completion\": \"bcd\"}\n"
                                       // 1 + 6 + EOS = 8 tokens: cut to 5, 4 targets left.
                                       "{\"prompt\": \"p\", \"completion\": \"qrstuv\"}\n");
    const ByteTokenizer tok;
    const SftDataset ds = load_sft_jsonl(path, tok, 4);
    ASSERT_EQ(ds.examples.size(), 3u);
    EXPECT_EQ(ds.truncated, 2);
    EXPECT_EQ(ds.examples[0].tokens, (std::vector<int32_t>{'a', 'b', 'c', 'd', 'e'}));
    EXPECT_EQ(ds.examples[0].target, (std::vector<uint8_t>{0, 0, 1, 1, 1}));
    EXPECT_EQ(ds.examples[1].tokens, (std::vector<int32_t>{'a', 'b', 'c', 'd', kEot}));
    EXPECT_EQ(ds.examples[2].tokens, (std::vector<int32_t>{'p', 'q', 'r', 's', 't'}));
    EXPECT_EQ(count_targets(ds.examples[2]), 4);
    // Packed, a truncated example gives max_seq_len rows.
    PackedBatch b;
    pack_example(ds.examples[0], 1.0f, &b);
    EXPECT_EQ(b.n_tokens(), 4);
}

TEST(SftDataJsonl, TruncationLeavingNoTargetErrors) {
    TempDir dir;
    const std::string path = dir.write("prompt_only.jsonl",
                                       "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                       "{\"prompt\": \"abcdef\", \"completion\": \"g\"}\n");
    const ByteTokenizer tok;
    const std::string msg = error_of([&] { load_sft_jsonl(path, tok, 3); });
    EXPECT_NE(msg.find(path + ":2"), std::string::npos) << msg;
}

// ---- built-in datasets ----------------------------------------------------------------------

TEST(SftDataBuiltin, CountdownSplitsAreDisjointAndWellFormed) {
    const ByteTokenizer tok;
    const SftDataset train = builtin_sft_dataset("builtin:countdown_lite", false, 300, 60, 7, tok);
    const SftDataset eval = builtin_sft_dataset("builtin:countdown_lite", true, 300, 60, 7, tok);
    // The old name, kept for one release, is the same data.
    const SftDataset old = builtin_sft_dataset("builtin:countdown", false, 300, 60, 7, tok);
    ASSERT_EQ(old.examples.size(), train.examples.size());
    for (size_t i = 0; i < old.examples.size(); i++) {
        EXPECT_EQ(old.examples[i].prompt, train.examples[i].prompt);
        EXPECT_EQ(old.examples[i].tokens, train.examples[i].tokens);
    }
    EXPECT_EQ(train.task, "countdown");
    EXPECT_EQ(eval.task, "countdown");
    ASSERT_EQ(train.examples.size(), 300u);
    ASSERT_EQ(eval.examples.size(), 60u);
    std::set<std::string> eval_prompts;
    for (const SftExample& ex : eval.examples) eval_prompts.insert(ex.prompt);
    for (const SftExample& ex : train.examples) {
        EXPECT_EQ(eval_prompts.count(ex.prompt), 0u) << ex.prompt;
    }
    for (const SftDataset* ds : {&train, &eval}) {
        for (const SftExample& ex : ds->examples) {
            // Tokens are prompt + completion + EOS, with only the completion and EOS trained.
            ASSERT_EQ(ex.tokens.size(), ex.prompt.size() + ex.completion.size() + 1);
            EXPECT_EQ(tok.decode(ex.tokens), ex.prompt + ex.completion + "<|endoftext|>");
            EXPECT_EQ(count_targets(ex), static_cast<int64_t>(ex.completion.size()) + 1);
            EXPECT_EQ(ex.prompt.back(), ':');
            EXPECT_EQ(countdown_reward(ex.prompt, ex.completion), 1.0) << ex.prompt;
        }
    }
}

TEST(SftDataBuiltin, DeterministicInTheSeed) {
    const ByteTokenizer tok;
    auto tokens_of = [&](bool eval_split, uint64_t seed) {
        std::vector<std::vector<int32_t>> out;
        for (const SftExample& ex :
             builtin_sft_dataset("builtin:countdown", eval_split, 100, 40, seed, tok).examples) {
            out.push_back(ex.tokens);
        }
        return out;
    };
    EXPECT_EQ(tokens_of(false, 3), tokens_of(false, 3));
    EXPECT_EQ(tokens_of(true, 3), tokens_of(true, 3));
    EXPECT_NE(tokens_of(false, 3), tokens_of(false, 4));
    // The held-out split is the task's fixed set, the same whatever the run's seed, so that no
    // run trains on another's held-out problems (src/env/countdown.h).
    EXPECT_EQ(tokens_of(true, 3), tokens_of(true, 4));
}

TEST(SftDataBuiltin, AdditionTask) {
    const ByteTokenizer tok;
    const SftDataset train = builtin_sft_dataset("builtin:addition", false, 50, 20, 1, tok);
    const SftDataset eval = builtin_sft_dataset("builtin:addition", true, 50, 20, 1, tok);
    EXPECT_EQ(train.task, "addition");
    ASSERT_EQ(train.examples.size(), 50u);
    ASSERT_EQ(eval.examples.size(), 20u);
    std::set<std::string> eval_prompts;
    for (const SftExample& ex : eval.examples) eval_prompts.insert(ex.prompt);
    for (const SftExample& ex : train.examples) {
        EXPECT_EQ(eval_prompts.count(ex.prompt), 0u);
        const size_t plus = ex.prompt.find('+');
        ASSERT_NE(plus, std::string::npos);
        ASSERT_EQ(ex.prompt.back(), '=');
        const long a = std::stol(ex.prompt.substr(0, plus));
        const long b = std::stol(ex.prompt.substr(plus + 1));
        EXPECT_EQ(ex.completion, std::to_string(a + b)) << ex.prompt;
    }
}

TEST(SftDataBuiltin, UnknownNameErrors) {
    const ByteTokenizer tok;
    for (const char* spec : {"builtin:nope", "countdown", "builtin:", ""}) {
        SCOPED_TRACE(spec);
        const std::string msg = error_of([&] { builtin_sft_dataset(spec, false, 10, 5, 1, tok); });
        std::string quoted = "'";
        quoted.append(spec).append("'");
        EXPECT_NE(msg.find(quoted), std::string::npos) << msg;
    }
}

}  // namespace
}  // namespace crucible

namespace crucible {
namespace {

// GPT-2's ByteLevel map, worked out from its definition: printable bytes map to themselves,
// the 68 others to U+0100.. in byte order (0x00-0x20 -> U+0100-U+0120, 0x7F-0xA0 ->
// U+0121-U+0142, 0xAD -> U+0143).
TEST(SftDataByteLevel, MapMatchesGpt2) {
    EXPECT_EQ(byte_level_char(' '), "\u0120");   // "Ġ"
    EXPECT_EQ(byte_level_char('\n'), "\u010A");  // "Ċ"
    EXPECT_EQ(byte_level_char(0x00), "\u0100");
    EXPECT_EQ(byte_level_char(0x7F), "\u0121");
    EXPECT_EQ(byte_level_char(0xA0), "\u0142");
    EXPECT_EQ(byte_level_char(0xAD), "\u0143");
    EXPECT_EQ(byte_level_char('!'), "!");
    EXPECT_EQ(byte_level_char(0xFF), "\u00FF");
}

}  // namespace
}  // namespace crucible
