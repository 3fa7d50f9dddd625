// The one JSONL reader (core/jsonl) and the one dataset item (env/dataset_item) that eval, RL
// and SFT read through: line numbers, blank lines, CRLF, the line bound, and the fields.
#include "core/jsonl.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "env/builtin.h"
#include "env/countdown.h"
#include "env/dataset_item.h"
#include "run/run_folder.h"
#include "test_util.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::TempDir;

struct Seen {
    int number;
    std::string text;
};

std::vector<Seen> read_all(const std::string& path, size_t max_line_bytes = kMaxJsonlLineBytes) {
    std::vector<Seen> out;
    for_each_jsonl_line(
        path, "",
        [&](const JsonlLine& l) {
            out.push_back({l.number, std::string(l.text)});
        },
        max_line_bytes);
    return out;
}

TEST(Jsonl, LinesKeepTheirNumbersPastBlankLinesAndCrlf) {
    TempDir dir;
    const std::string path = dir.write("a.jsonl", "{\"a\":1}\r\n\r\n \t\n{\"b\":2}\n\n{\"c\":3}");
    const std::vector<Seen> got = read_all(path);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].number, 1);
    EXPECT_EQ(got[0].text, "{\"a\":1}");
    EXPECT_EQ(got[1].number, 4);
    EXPECT_EQ(got[2].number, 6);  // a last line without a newline
    EXPECT_EQ(got[2].text, "{\"c\":3}");
}

TEST(Jsonl, LongLinesAcrossReadBlocks) {
    TempDir dir;
    const std::string big(200000, 'x');
    const std::string path = dir.write("b.jsonl", "\"" + big + "\"\n\"y\"\n");
    const std::vector<Seen> got = read_all(path);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].text.size(), big.size() + 2);
    EXPECT_EQ(got[1].number, 2);
    const std::string msg = error_of([&] { read_all(path, 1000); });
    EXPECT_NE(msg.find("b.jsonl:1: line longer than 1000 bytes"), std::string::npos) << msg;
}

TEST(Jsonl, ErrorsNameTheFileAndLine) {
    TempDir dir;
    const std::string missing = (dir.path() / "none.jsonl").string();
    EXPECT_NE(error_of([&] {
                  for_each_jsonl_line(missing, "the dataset", [](auto&) {});
              }).find("none.jsonl: cannot open the dataset"),
              std::string::npos);
    const std::string path = dir.write("c.jsonl", "{}\n[1]\nnot json\n");
    std::vector<std::string> errors;
    for_each_jsonl_line(path, "", [&](const JsonlLine& l) {
        if (l.number == 1) {
            EXPECT_TRUE(parse_jsonl_object(l).empty());
        } else {
            errors.push_back(error_of([&] { parse_jsonl_object(l); }));
        }
    });
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_NE(errors[0].find("c.jsonl:2: each line must be a JSON object"), std::string::npos);
    EXPECT_NE(errors[1].find("c.jsonl:3: not valid JSON"), std::string::npos);
}

TEST(DatasetItem, FieldsOfALine) {
    const DatasetItem p = parse_dataset_item(
        nlohmann::json::parse(R"({"id": 7, "prompt": "q", "gold": 4, "verifier": "math",
                                  "topic": "t", "rubric": []})"),
        "f:1", 1);
    EXPECT_EQ(p.line, 1);
    EXPECT_EQ(p.id, "7");
    EXPECT_FALSE(p.chat);
    EXPECT_TRUE(p.has_prompt);
    EXPECT_EQ(p.prompt, "q");
    EXPECT_EQ(p.answer_key, "gold");
    EXPECT_EQ(p.answer, "4");
    EXPECT_EQ(p.verifier, "math");
    EXPECT_EQ(p.fields["topic"], "t");
    ASSERT_NE(p.rubric(), nullptr);
    const DatasetItem m = parse_dataset_item(
        nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "hi"}],
                                  "prompt": "ignored", "answer": null, "rubrics": null})"),
        "f:2", 2);
    EXPECT_TRUE(m.chat);
    ASSERT_EQ(m.messages.size(), 1u);
    EXPECT_EQ(m.messages[0].role, "user");
    EXPECT_EQ(m.messages[0].content, "hi");
    EXPECT_FALSE(m.answer.has_value());
    EXPECT_FALSE(m.id.has_value());
    EXPECT_EQ(m.rubric(), nullptr);
}

TEST(DatasetItem, ErrorsNameTheField) {
    auto error_for = [](const char* line) {
        return error_of([&] { parse_dataset_item(nlohmann::json::parse(line), "f.jsonl:3", 3); });
    };
    EXPECT_EQ(error_for(R"({"prompt": 5})"),
              "f.jsonl:3: field 'prompt' must be a string, got number");
    EXPECT_EQ(error_for(R"({"messages": "hi"})"), "f.jsonl:3: field 'messages' must be an array");
    EXPECT_EQ(error_for(R"({"messages": ["hi"]})"), "f.jsonl:3: messages[0]: must be an object");
    EXPECT_EQ(error_for(R"({"messages": [{"content": "a"}]})"),
              "f.jsonl:3: messages[0]: missing field 'role'");
    EXPECT_EQ(error_for(R"({"prompt": "a", "verifier": 1})"),
              "f.jsonl:3: field 'verifier' must be a string, got number");
}

// The built-in items are the generators' problems, in order, under "train-i" / "eval-i".
TEST(BuiltinTask, ItemsAreTheGeneratorsProblems) {
    std::vector<PromptCompletion> train, eval;
    countdown_split(40, 10, 3, &train, &eval);
    const BuiltinSplits s = builtin_task_items("countdown_lite", 40, 10, 0, 3);
    ASSERT_EQ(s.train.size(), train.size());
    ASSERT_EQ(s.eval.size(), eval.size());
    for (size_t i = 0; i < train.size(); i++) {
        EXPECT_EQ(s.train[i].id, "train-" + std::to_string(i));
        EXPECT_EQ(s.train[i].prompt, train[i].prompt);
        EXPECT_EQ(s.train[i].answer, train[i].completion);
    }
    EXPECT_EQ(s.eval[9].id, "eval-9");
    EXPECT_EQ(s.eval[9].prompt, eval[9].prompt);
    addition_split(20, 5, 2, 9, &train, &eval);
    const BuiltinSplits a = builtin_task_items("addition", 20, 5, 2, 9);
    EXPECT_EQ(a.train[19].prompt, train[19].prompt);
    EXPECT_EQ(a.eval[4].answer, eval[4].completion);
    EXPECT_TRUE(is_builtin_task("addition"));
    EXPECT_FALSE(is_builtin_task("countdown"));  // TinyZero's rules: RL's own
    EXPECT_NE(error_of([] { builtin_task_items("nope", 1, 1, 1, 1); }).find("'nope'"),
              std::string::npos);
}

// A log written by append_jsonl ends at its first line that is not a JSON object (the torn
// last line of a killed run); a missing log has no records.
TEST(JsonlLog, RecordsUpToATornLine) {
    TempDir dir;
    const std::string path =
        dir.write("metrics.jsonl", "{\"step\": 1}\n\n{\"step\": 2}\r\n{\"step\": 3, \"lo").string();
    std::vector<std::string> seen;
    for_each_jsonl_log_record(path, [&](const JsonlLine& line, const nlohmann::json& j) {
        seen.push_back(std::string(line.text) + "=" + std::to_string(j.at("step").get<int>()));
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"{\"step\": 1}=1", "{\"step\": 2}=2"}));

    const std::string arrays = dir.write("a.jsonl", "{\"step\": 1}\n[2]\n{\"step\": 3}\n").string();
    seen.clear();
    for_each_jsonl_log_record(arrays, [&](const JsonlLine& line, const nlohmann::json&) {
        seen.emplace_back(line.text);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"{\"step\": 1}"}));

    int calls = 0;
    for_each_jsonl_log_record((dir.path() / "missing.jsonl").string(),
                              [&](const JsonlLine&, const nlohmann::json&) { ++calls; });
    EXPECT_EQ(calls, 0);
}

// A resumed run's log keeps the lines up to its checkpoint's step and stops at a torn line.
TEST(JsonlLog, TruncateAfterStep) {
    TempDir dir;
    const auto path = dir.write("metrics.jsonl",
                                "{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2}\n{\"note\": \"x\"}\n"
                                "{\"step\": 3}\n{\"step\": 2, \"eval\": 1}\n{\"step\": 4, \"lo");
    truncate_jsonl_after_step(path, 2);
    EXPECT_EQ(testutil::slurp(path),
              "{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2}\n{\"step\": 2, \"eval\": 1}\n");
    truncate_jsonl_after_step(dir.path() / "absent.jsonl", 2);  // nothing to do
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "absent.jsonl"));
}

}  // namespace
}  // namespace crucible
