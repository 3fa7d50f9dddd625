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
#include "model_util.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::slurp;
using testutil::TempDir;

// `crucible serve` on `model_dir` (as model "judge") on a free port: its pid and base URL, or
// pid 0 and the log's text when it did not start within a minute.
struct Served {
    pid_t pid = 0;
    std::string url, log;
};
Served start_serve(const fs::path& model_dir, const fs::path& dir) {
    const fs::path log = dir / "serve.log";
    const fs::path pid_file = dir / "serve.pid";
    const std::string start = std::string(CRUCIBLE_BINARY) + " serve --model " +
                              model_dir.string() + " --port 0 --served-model-name judge 2> " +
                              log.string() + " & echo $! > " + pid_file.string();
    if (std::system(start.c_str()) != 0) return {0, "", "could not run " + start};
    const pid_t pid = static_cast<pid_t>(std::stol(slurp(pid_file)));
    for (int i = 0; i < 600; ++i) {  // up to a minute on a loaded machine
        const std::string text = slurp(log);
        const size_t at = text.find("on http://");
        if (at != std::string::npos) {
            const size_t end = text.find('\n', at);
            if (end != std::string::npos) return {pid, text.substr(at + 3, end - at - 3), ""};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid, SIGKILL);
    return {0, "", slurp(log)};
}

TEST(RubricServe, ScoreAgainstCrucibleServe) {
    TempDir dir;
    const fs::path model_dir = dir.path() / "judge";
    testutil::write_byte_model(model_dir, 4096);

    const Served served = start_serve(model_dir, dir.path());
    ASSERT_NE(served.pid, 0) << "crucible serve did not start: " << served.log;
    const pid_t pid = served.pid;
    const std::string url = served.url;

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

// A rubric-rewarded RL run whose judge is `crucible serve`: the programmatic criterion scores
// every rollout; the judge criterion goes over real HTTP to the served (random) model, whose
// replies are never valid JSON, so those samples are marked failed and the run still finishes
// its steps, with the judge's requests and tokens in its metrics.
TEST(RubricServe, RlRunWithCrucibleServeAsJudge) {
    TempDir dir;
    testutil::write_byte_model(dir.path() / "judge", 4096);
    testutil::write_byte_model(dir.path() / "policy", 64);
    const Served served = start_serve(dir.path() / "judge", dir.path());
    ASSERT_NE(served.pid, 0) << "crucible serve did not start: " << served.log;
    std::ofstream data(dir.path() / "items.jsonl");
    for (int i = 0; i < 4; i++) {
        data << R"({"prompt": "say )" << i
             << R"(:", "rubric": [{"kind": "regex", "pattern": "[a-m]", "points": 1}, )"
             << R"({"criterion": "Is polite", "points": 1}]})"
             << "\n";
    }
    data.close();
    const std::string cmd =
        std::string(CRUCIBLE_BINARY) + " train rl --set run.dir=" + dir.path().string() +
        " --set run.name=rl --set model.path=" + (dir.path() / "policy").string() +
        " --set task.name=jsonl --set task.data=" + (dir.path() / "items.jsonl").string() +
        " --set rewards.correct=0 --set rewards.soft_overlong=0 --set rewards.rubric=1" +
        " --set rubric.judge=openai:" + served.url + "#judge --set rubric.max_tokens=8" +
        " --set rollout.prompts_per_step=2 --set rollout.samples_per_prompt=2" +
        " --set rollout.max_new_tokens=4 --set algorithm.dynamic_sampling=false" +
        " --set train.steps=2 --set train.eval_every=0 --set train.warmup_steps=0 > " +
        (dir.path() / "rl.log").string() + " 2>&1";
    const int status = std::system(cmd.c_str());
    kill(served.pid, SIGTERM);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir.path() / "rl.log");
    int failed = 0, n = 0;
    std::istringstream samples(slurp(dir.path() / "rl" / "samples.jsonl"));
    for (std::string line; std::getline(samples, line); n++) {
        const json s = json::parse(line);
        if (!s["reward"].is_null()) continue;
        failed++;
        EXPECT_NE(s["error"].get<std::string>().find("rubric: criterion"), std::string::npos)
            << s.dump();
    }
    EXPECT_EQ(n, 2 * 4);
    EXPECT_EQ(failed, n);  // the random judge never answers in the required format
    std::istringstream metrics(slurp(dir.path() / "rl" / "metrics.jsonl"));
    std::string last;
    for (std::string line; std::getline(metrics, line);) last = line;
    const json m = json::parse(last);
    EXPECT_EQ(m["step"], 2);
    EXPECT_GT(m["judge"]["judge_requests"].get<int64_t>(), 0);
    EXPECT_GT(m["judge"]["judge_prompt_tokens"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace crucible
