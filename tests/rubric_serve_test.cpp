// The judge path end to end over real HTTP against `crucible serve` (a tiny random model):
// `crucible rubric score` runs, the programmatic item is scored, and the judge items — whose
// replies from a random model are never valid JSON — are marked failed with the reason after
// the bounded retries, without failing the run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "model/checkpoint.h"
#include "model/model.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::slurp;
using testutil::TempDir;

TEST(RubricServe, ScoreAgainstCrucibleServe) {
    TempDir dir;
    const fs::path model_dir = dir.path() / "judge";
    fs::create_directories(model_dir);
    ModelConfig c;
    c.vocab_size = 264;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = 4096;
    c.tie_word_embeddings = true;
    Model model(c);
    model.init_random(3, 0.2f);
    save_model(model, model_dir);
    ByteTokenizer::save_hf_files(model_dir, 4096);

    // Start the server on a free port; it prints the URL when it listens.
    const fs::path log = dir.path() / "serve.log";
    const fs::path pid_file = dir.path() / "serve.pid";
    const std::string start = std::string(CRUCIBLE_BINARY) + " serve --model " +
                              model_dir.string() + " --port 0 --served-model-name judge 2> " +
                              log.string() + " & echo $! > " + pid_file.string();
    ASSERT_EQ(std::system(start.c_str()), 0);
    const pid_t pid = static_cast<pid_t>(std::stol(slurp(pid_file)));
    std::string url;
    for (int i = 0; i < 600 && url.empty(); ++i) {  // up to a minute on a loaded machine
        const std::string text = slurp(log);
        const size_t at = text.find("on http://");
        if (at != std::string::npos) {
            const size_t end = text.find('\n', at);
            if (end != std::string::npos) url = text.substr(at + 3, end - at - 3);
        }
        if (url.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (url.empty()) {
        kill(pid, SIGKILL);
        FAIL() << "crucible serve did not start: " << slurp(log);
    }

    const auto data = dir.path() / "data.jsonl";
    std::ofstream(data)
        << R"({"id": "judged", "prompt": "Say hi", "response": "hi", "rubric": [{"criterion": "Greets the user", "points": 1}, {"kind": "contains", "value": "hi", "points": 1}]})"
        << "\n"
        << R"({"id": "prog", "prompt": "Say hi", "response": "hello", "rubric": [{"kind": "contains", "value": "hi", "points": 1}, {"kind": "regex", "pattern": "^h", "points": 1}]})"
        << "\n";
    const auto out = dir.path() / "out.jsonl";
    const std::string cmd = std::string(CRUCIBLE_BINARY) + " rubric score --data " + data.string() +
                            " --judge openai:" + url + "#judge --out " + out.string() +
                            " --max-tokens 8 --max-attempts 2 --retries 0 > " +
                            (dir.path() / "score.log").string() + " 2>&1";
    const int status = std::system(cmd.c_str());
    kill(pid, SIGTERM);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir.path() / "score.log");

    std::istringstream lines(slurp(out));
    std::string line;
    std::getline(lines, line);
    const json judged = json::parse(line);
    std::getline(lines, line);
    const json prog = json::parse(line);
    EXPECT_EQ(judged["failed"], true);
    EXPECT_NE(judged["failure"].get<std::string>().find("malformed after 2 attempt(s)"),
              std::string::npos)
        << judged.dump();
    EXPECT_EQ(prog["failed"], false);
    EXPECT_DOUBLE_EQ(prog["score"].get<double>(), 0.5);  // no "hi" in "hello"; starts with h
    const json summary = json::parse(slurp(out.string() + ".summary.json"));
    EXPECT_EQ(summary["n_failed"], 1);
    EXPECT_EQ(summary["judge"]["judge_requests"], 2);
    EXPECT_EQ(summary["judge"]["judge_parse_retries"], 1);
    EXPECT_GT(summary["judge"]["judge_prompt_tokens"].get<int64_t>(), 500);
}

}  // namespace
}  // namespace crucible
