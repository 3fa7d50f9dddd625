// `crucible generate` end to end through the real binary: input kinds, copied fields, greedy
// completions equal to the reference generator's, and clear errors for bad lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "engine/reference_generate.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/chat_template.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The lines of a generate output, in input order (they are written as prompts complete).
std::vector<json> read_lines(const fs::path& file) {
    std::ifstream in(file);
    std::string line;
    std::vector<json> lines;
    while (std::getline(in, line)) lines.push_back(json::parse(line));
    std::stable_sort(lines.begin(), lines.end(), [](const json& a, const json& b) {
        return std::make_pair(a["input_line"].get<int>(), a["sample"].get<int>()) <
               std::make_pair(b["input_line"].get<int>(), b["sample"].get<int>());
    });
    return lines;
}

struct GenerateCli : ::testing::Test {
    fs::path dir = fs::temp_directory_path() / ("crucible_gen_" + std::to_string(getpid()));
    std::unique_ptr<Model> model;
    void SetUp() override {
        fs::remove_all(dir);
        model = testutil::write_byte_model(dir / "model", 128);
    }
    void TearDown() override { fs::remove_all(dir); }
    int run(const std::string& args, const std::string& stderr_file = "/dev/null") {
        const std::string cmd = std::string(CRUCIBLE_BINARY) + " generate --model " +
                                (dir / "model").string() + " " + args + " 2> " + stderr_file;
        return std::system(cmd.c_str());
    }
};

TEST_F(GenerateCli, EveryInputKindGreedyMatchesTheReference) {
    const ByteTokenizer tok;
    std::ofstream(dir / "in.jsonl") << R"({"prompt": "2 5 7>17:", "id": "a"})"
                                    << "\n"
                                    << R"({"prompt_ids": [51, 52, 53], "meta": {"k": 1}})"
                                    << "\n"
                                    << R"({"messages": [{"role": "user", "content": "hi"}]})"
                                    << "\n";
    ASSERT_EQ(run("--in " + (dir / "in.jsonl").string() + " --out " + (dir / "out.jsonl").string() +
                  " --temperature 0 --max-tokens 8 --n 2"),
              0);
    const std::vector<std::vector<int32_t>> prompts = {
        tok.encode("2 5 7>17:"),
        {51, 52, 53},
        tok.encode(render_chat_text(ChatFormat::chatml, {{"user", "hi"}}, true))};
    // eos ids from generation_config.json stop the reference too (256 ends a sequence first)
    const auto ref = greedy_generate_reference(*model, prompts, 8, ByteTokenizer::kEndOfText);
    std::vector<json> lines = read_lines(dir / "out.jsonl");
    ASSERT_EQ(lines.size(), 6u);
    for (size_t k = 0; k < lines.size(); k++) {
        const json& j = lines[k];
        EXPECT_EQ(j["sample"].get<int>(), (int)(k % 2));
        EXPECT_EQ(j["input_line"].get<int>(), (int)(k / 2) + 1);
        const auto ids = j["completion_ids"].get<std::vector<int32_t>>();
        std::vector<int32_t> want = ref[k / 2];
        // the reference stops only at 256; the engine also stops at <|im_end|> (258)
        auto end = std::find(want.begin(), want.end(), ByteTokenizer::kImEnd);
        if (end != want.end()) want.erase(end + 1, want.end());
        EXPECT_EQ(ids, want) << "line " << k;
        EXPECT_TRUE(j["finish_reason"] == "stop" || j["finish_reason"] == "length");
    }
    EXPECT_EQ(lines[0]["id"], "a");
    EXPECT_EQ(lines[2]["meta"]["k"], 1);
}

TEST_F(GenerateCli, BadLinesNameTheFileLineAndField) {
    std::ofstream(dir / "bad.jsonl") << R"({"prompt": "ok"})"
                                     << "\n"
                                     << R"({"prompt": 5})"
                                     << "\n";
    const std::string err = (dir / "err.txt").string();
    EXPECT_NE(
        run("--in " + (dir / "bad.jsonl").string() + " --out " + (dir / "o.jsonl").string(), err),
        0);
    const std::string msg = read_file(err);
    EXPECT_NE(msg.find("bad.jsonl:2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'prompt'"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(dir / "o.jsonl"));
    std::ofstream(dir / "ids.jsonl") << R"({"prompt_ids": [1, 9999]})"
                                     << "\n";
    EXPECT_NE(
        run("--in " + (dir / "ids.jsonl").string() + " --out " + (dir / "o.jsonl").string(), err),
        0);
    EXPECT_NE(read_file(err).find("prompt_ids"), std::string::npos);
}

TEST_F(GenerateCli, AnInterruptedRunResumesToWhatAWholeRunWrites) {
    std::ofstream in(dir / "in.jsonl");
    for (int i = 0; i < 5; i++) in << "{\"prompt\": \"q" << i << "\", \"k\": " << i << "}\n";
    in.close();
    const std::string args = "--in " + (dir / "in.jsonl").string() +
                             " --temperature 1 --seed 9 --max-tokens 6 --n 2 --out ";
    ASSERT_EQ(run(args + (dir / "whole.jsonl").string()), 0);
    const std::vector<json> whole = read_lines(dir / "whole.jsonl");
    ASSERT_EQ(whole.size(), 10u);
    // A run killed after input line 3's two samples and one of line 1's, mid-way through a
    // third line: what a kill between appends (or inside one) can leave.
    std::string partial;
    for (const json& j : whole)
        if (j["input_line"] == 3) partial += j.dump() + "\n";
    for (const json& j : whole)
        if (j["input_line"] == 1 && j["sample"] == 0) partial += j.dump() + "\n";
    partial += whole[9].dump().substr(0, 20);
    write_file_durable(dir / "resumed.jsonl", partial);
    const std::string err = (dir / "err.txt").string();
    ASSERT_EQ(run(args + (dir / "resumed.jsonl").string(), err), 0) << read_file(err);
    EXPECT_NE(read_file(err).find("already holds 1 of 5 prompts; generating 4"), std::string::npos)
        << read_file(err);
    EXPECT_EQ(read_lines(dir / "resumed.jsonl"), whole);  // seeds are per input line
    // Run again: nothing left to do, nothing changes.
    ASSERT_EQ(run(args + (dir / "resumed.jsonl").string(), err), 0);
    EXPECT_NE(read_file(err).find("generating 0"), std::string::npos);
    EXPECT_EQ(read_lines(dir / "resumed.jsonl"), whole);
}

TEST_F(GenerateCli, AnOutputThatCannotBeWrittenOrIsNotOursFailsBeforeAnyWork) {
    std::ofstream(dir / "in.jsonl") << R"({"prompt": "x"})"
                                    << "\n";
    const std::string err = (dir / "err.txt").string();
    const std::string in = "--in " + (dir / "in.jsonl").string() + " --out ";
    EXPECT_NE(run(in + (dir / "no-such-dir" / "o.jsonl").string(), err), 0);
    EXPECT_NE(read_file(err).find("no-such-dir"), std::string::npos) << read_file(err);
    EXPECT_EQ(read_file(err).find("generate: 1/1"), std::string::npos);  // nothing generated
    // A file another tool wrote is not taken for an earlier run.
    write_file_durable(dir / "notes.jsonl", "{\"a\": 1}\n");
    EXPECT_NE(run(in + (dir / "notes.jsonl").string(), err), 0);
    EXPECT_NE(read_file(err).find("notes.jsonl:1: not a line crucible generate wrote"),
              std::string::npos)
        << read_file(err);
    EXPECT_EQ(read_file(dir / "notes.jsonl"), "{\"a\": 1}\n");
    // A sample number past int's range does not wrap into a valid one.
    write_file_durable(dir / "wrapped.jsonl",
                       "{\"prompt\": \"x\", \"input_line\": 1, \"sample\": 4294967296}\n");
    EXPECT_NE(run(in + (dir / "wrapped.jsonl").string(), err), 0);
    EXPECT_NE(read_file(err).find("sample 4294967296 is not in this input"), std::string::npos)
        << read_file(err);
    // Nor an earlier run over another input.
    ASSERT_EQ(run(in + (dir / "mine.jsonl").string(), err), 0);
    std::ofstream(dir / "in.jsonl") << R"({"prompt": "y"})"
                                    << "\n";
    EXPECT_NE(run(in + (dir / "mine.jsonl").string(), err), 0);
    EXPECT_NE(read_file(err).find("differs from input line 1"), std::string::npos)
        << read_file(err);
}

}  // namespace
}  // namespace crucible
