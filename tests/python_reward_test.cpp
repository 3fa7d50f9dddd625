// Python reward functions (reward/python_reward.h): both calling conventions with their
// columns, a batch split among workers scoring as one worker does, a function that hangs on
// some inputs (only those samples are marked reward_timeout; the pool goes on), exceptions,
// values that are not finite numbers, a worker that dies, the user's prints, and files that
// do not load. Expected scores are worked out from the small Python functions written here.
#include "reward/python_reward.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/dataset.h"
#include "eval/harness.h"
#include "eval/sample_store.h"
#include "table_generator.h"
#include "test_util.h"

namespace crucible {
namespace {

using reward::PythonRewardOptions;
using reward::PythonRewardPool;
using reward::PythonRewardResult;
using reward::PythonRewardSample;
using testutil::TempDir;
namespace fs = std::filesystem;

constexpr const char* kRewards = R"PY(
import math, os, time
def exact(prompts, completions, answer, **kw):
    print("a print goes to stderr, not into the protocol")
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]
def length_bonus(prompts, completions, bonus, **kw):
    return [len(c) + b for c, b in zip(completions, bonus)]
def sometimes_hangs(prompts, completions, **kw):
    if "hang" in completions:
        time.sleep(100)
    return [float(len(c)) for c in completions]
def raises(prompts, completions, **kw):
    raise ValueError("bad batch")
def not_finite(prompts, completions, **kw):
    return [float("nan") if c == "nan" else ("x" if c == "str" else 1) for c in completions]
def wrong_length(prompts, completions, **kw):
    return [1.0]
def dies(prompts, completions, **kw):
    if "die" in completions:
        os._exit(3)
    return [2.0] * len(completions)
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    if solution_str == "boom":
        raise KeyError("missing")
    if data_source == "dict":
        return {"score": 0.5, "extra": 1}
    return 1.0 if solution_str == ground_truth else 0.0
)PY";

struct Rewards {
    TempDir tmp;
    std::string file;
    Rewards() { file = tmp.write("rewards.py", kRewards).string(); }
    PythonRewardOptions options(const std::string& function, int workers = 1,
                                double timeout_s = 5.0) const {
        PythonRewardOptions o;
        o.file = file;
        o.function = function;
        o.workers = workers;
        o.timeout_s = timeout_s;
        return o;
    }
};

PythonRewardSample sample(const std::string& completion, const std::string& answer = "",
                          nlohmann::json columns = nlohmann::json::object()) {
    return {"Q", completion, answer, std::move(columns)};
}

std::vector<double> scores(const std::vector<PythonRewardResult>& results) {
    std::vector<double> out;
    for (const PythonRewardResult& r : results) out.push_back(r.score.value_or(-999));
    return out;
}

TEST(PythonReward, TrlFunctionsGetColumnsAsListsAndWorkersChangeNothing) {
    Rewards r;
    std::vector<PythonRewardSample> batch;
    for (int i = 0; i < 7; i++) {
        const std::string c = i % 2 ? "yes" : "no";
        batch.push_back(sample(" " + c, "", {{"answer", "yes"}, {"bonus", i}}));
    }
    PythonRewardPool one(r.options("exact", 1));
    PythonRewardPool three(r.options("exact", 3));
    const std::vector<double> expected = {0, 1, 0, 1, 0, 1, 0};
    EXPECT_EQ(scores(one.score(batch)), expected);
    EXPECT_EQ(scores(three.score(batch)), expected);
    // A column per item: len(" no") + i or len(" yes") + i.
    PythonRewardPool bonus(r.options("length_bonus", 2));
    EXPECT_EQ(scores(bonus.score(batch)), (std::vector<double>{3, 5, 5, 7, 7, 9, 9}));
    EXPECT_EQ(one.stats().samples, 7);
    EXPECT_EQ(one.stats().failed, 0);
}

TEST(PythonReward, VerlComputeScorePerSample) {
    Rewards r;
    PythonRewardOptions o = r.options("compute_score");
    o.signature = PythonRewardOptions::Signature::verl;
    PythonRewardPool pool(o);
    const auto res = pool.score({sample("42", "42"), sample("41", "42"), sample("boom", "42"),
                                 sample("x", "y", {{"data_source", "dict"}})});
    EXPECT_EQ(res[0].score, 1.0);
    EXPECT_EQ(res[1].score, 0.0);
    EXPECT_FALSE(res[2].score.has_value());
    EXPECT_EQ(res[2].error, "KeyError: 'missing'");  // only that sample
    EXPECT_EQ(res[3].score, 0.5);                    // {"score": 0.5}
}

TEST(PythonReward, OnlyTheSamplesThatHangAreMarkedAndThePoolGoesOn) {
    Rewards r;
    PythonRewardPool pool(r.options("sometimes_hangs", 2, 0.5));
    const auto res = pool.score({sample("a"), sample("hang"), sample("abc"), sample("abcd")});
    EXPECT_EQ(res[0].score, 1.0);
    EXPECT_FALSE(res[1].score.has_value());
    EXPECT_TRUE(res[1].timeout);
    EXPECT_EQ(res[1].error, "reward_timeout: no answer within 0.5 s");
    EXPECT_EQ(res[2].score, 3.0);
    EXPECT_EQ(res[3].score, 4.0);
    EXPECT_EQ(pool.stats().timeouts, 1);
    EXPECT_GE(pool.stats().restarts, 2);  // the batch's call, then the sample's own
    // The restarted workers score the next batch.
    EXPECT_EQ(scores(pool.score({sample("xy"), sample("xyz")})), (std::vector<double>{2, 3}));
}

TEST(PythonReward, ExceptionsAndValuesThatAreNotNumbersAreMarkedNeverZero) {
    Rewards r;
    PythonRewardPool raises(r.options("raises"));
    for (const PythonRewardResult& x : raises.score({sample("a"), sample("b")})) {
        EXPECT_FALSE(x.score.has_value());
        EXPECT_EQ(x.error, "ValueError: bad batch");
    }
    PythonRewardPool nf(r.options("not_finite"));
    const auto res = nf.score({sample("nan"), sample("str"), sample("ok")});
    EXPECT_EQ(res[0].error, "ValueError: returned nan, not a finite number");
    EXPECT_EQ(res[1].error, "TypeError: returned str, not a number");
    EXPECT_EQ(res[2].score, 1.0);
    PythonRewardPool wl(r.options("wrong_length"));
    EXPECT_EQ(wl.score({sample("a"), sample("b")})[0].error,
              "ValueError: returned 1 values for 2 completions");
}

TEST(PythonReward, AWorkerThatDiesIsRestarted) {
    Rewards r;
    PythonRewardPool pool(r.options("dies"));
    const auto res = pool.score({sample("die"), sample("x")});
    EXPECT_EQ(res[0].error, "the worker exited during the call");
    EXPECT_FALSE(res[1].score.has_value());  // the same call
    EXPECT_EQ(scores(pool.score({sample("x")})), std::vector<double>{2.0});
    EXPECT_EQ(pool.stats().restarts, 1);
}

TEST(PythonReward, FilesThatDoNotLoadAreNamed) {
    Rewards r;
    PythonRewardOptions gone = r.options("exact");
    gone.file = (r.tmp.path() / "nope.py").string();
    const std::string missing = testutil::error_of([&] { PythonRewardPool p(gone); });
    EXPECT_NE(missing.find("nope.py"), std::string::npos) << missing;
    const std::string no_fn = testutil::error_of([&] { PythonRewardPool p(r.options("absent")); });
    EXPECT_NE(no_fn.find("cannot load 'absent': AttributeError: no function named 'absent'"),
              std::string::npos)
        << no_fn;
    PythonRewardOptions bad = r.options("f");
    bad.file = r.tmp.write("bad.py", "def f(:\n").string();
    const std::string syntax = testutil::error_of([&] { PythonRewardPool p(bad); });
    EXPECT_NE(syntax.find("bad.py"), std::string::npos) << syntax;
    EXPECT_NE(syntax.find("SyntaxError"), std::string::npos) << syntax;
    EXPECT_THROW(reward::parse_python_signature("tlr", "x"), Error);
}

// `crucible eval` with verifier python:FILE:FUNCTION: the function's score is the sample's, a
// failure or a value outside [0, 1] a failed sample (never 0), a file that does not load stops
// the run before any generation.
// ---- sandbox: true ----------------------------------------------------------------------------

constexpr const char* kEscapes = R"PY(
import os, socket
def escape(prompts, completions, target, **kw):
    c, t = completions[0], target[0]
    if c == "write":
        with open(t, "w") as f:
            f.write("pwned")
    elif c == "net":
        socket.create_connection(("127.0.0.1", int(t)), timeout=2).close()
    elif c == "eat":
        x = bytearray(1 << 30)
        x[-1] = 1
    return [1.0]
)PY";

PythonRewardOptions sandboxed(PythonRewardOptions o) {
    o.sandbox = true;
    return o;
}

TEST(PythonReward, SandboxedCallsScoreAsTheWorkersDo) {
    Rewards r;
    std::vector<PythonRewardSample> batch;
    for (int i = 0; i < 5; i++) {
        const std::string c = i % 2 ? "yes" : "no";
        batch.push_back(sample(" " + c, "", {{"answer", "yes"}, {"bonus", i}}));
    }
    PythonRewardPool exact(sandboxed(r.options("exact", 2)));
    EXPECT_EQ(scores(exact.score(batch)), (std::vector<double>{0, 1, 0, 1, 0}));
    PythonRewardPool bonus(sandboxed(r.options("length_bonus", 1)));
    EXPECT_EQ(scores(bonus.score(batch)), (std::vector<double>{3, 5, 5, 7, 7}));
    PythonRewardOptions v = sandboxed(r.options("compute_score"));
    v.signature = PythonRewardOptions::Signature::verl;
    PythonRewardPool verl(v);
    const auto res = verl.score({sample("42", "42"), sample("boom", "42")});
    EXPECT_EQ(res[0].score, 1.0);
    EXPECT_EQ(res[1].error, "KeyError: 'missing'");
    // A hang: only its sample is marked.
    PythonRewardPool hangs(sandboxed(r.options("sometimes_hangs", 1, 1.0)));
    const auto h = hangs.score({sample("ab"), sample("hang"), sample("abc")});
    EXPECT_EQ(h[0].score, 2.0);
    EXPECT_TRUE(h[1].timeout);
    EXPECT_FALSE(h[1].score.has_value());
    EXPECT_EQ(h[2].score, 3.0);
}

TEST(PythonReward, ASandboxedRewardCannotWriteTheHostReachTheNetworkOrTakeAllMemory) {
    TempDir tmp;
    const std::string file = tmp.write("escapes.py", kEscapes).string();
    const fs::path target = tmp.path() / "pwned.txt";
    PythonRewardOptions o;
    o.file = file;
    o.function = "escape";
    o.workers = 1;
    o.timeout_s = 10;
    // A port listening on the host's loopback.
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 8), 0);
    ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const std::string port = std::to_string(ntohs(addr.sin_port));
    // The checks can fail: without the sandbox the reward writes the host file and reaches
    // the port.
    PythonRewardPool open_pool(o);
    EXPECT_EQ(open_pool.score({sample("write", "", {{"target", target.string()}})})[0].score, 1.0);
    ASSERT_TRUE(fs::exists(target));
    fs::remove(target);
    EXPECT_EQ(open_pool.score({sample("net", "", {{"target", port}})})[0].score, 1.0);
    // In the sandbox: its folder is read-only, so the write fails and the sample is marked.
    o.sandbox = true;
    o.sandbox_mem_mb = 256;
    PythonRewardPool pool(o);
    const auto w = pool.score({sample("write", "", {{"target", target.string()}})});
    EXPECT_FALSE(w[0].score.has_value());
    EXPECT_NE(w[0].error.find("Read-only file system"), std::string::npos) << w[0].error;
    EXPECT_FALSE(fs::exists(target));
    // No network: the host's listening port cannot be reached.
    const auto n = pool.score({sample("net", "", {{"target", port}})});
    EXPECT_FALSE(n[0].score.has_value());
    EXPECT_NE(n[0].error.find("Error"), std::string::npos) << n[0].error;  // unreachable or refused
    ::close(listener);
    // 1 GiB against a 256 MiB sandbox: marked, the pool goes on.
    const auto m = pool.score({sample("eat", "", {{"target", ""}})});
    EXPECT_FALSE(m[0].score.has_value());
    EXPECT_FALSE(m[0].error.empty());
    EXPECT_EQ(pool.score({sample("fine", "", {{"target", ""}})})[0].score, 1.0);
}

TEST(PythonReward, ASandboxedFileThatDoesNotLoadIsNamed) {
    TempDir tmp;
    PythonRewardOptions o;
    o.file = tmp.write("broken.py", "def f(:\n").string();
    o.function = "f";
    o.sandbox = true;
    try {
        PythonRewardPool pool(o);
        FAIL() << "a file with a syntax error loaded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("broken.py"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("SyntaxError"), std::string::npos) << e.what();
    }
}

TEST(PythonReward, EvalItemsScoredByAPythonVerifier) {
    TempDir tmp;
    const std::string file =
        tmp.write("v.py",
                  "def f(prompts, completions, answer, **kw):\n"
                  "    c = completions[0].strip()\n"
                  "    if c == 'boom':\n"
                  "        raise RuntimeError('cannot parse')\n"
                  "    return [2.0 if c == 'big' else float(c == answer[0])]\n")
            .string();
    const fs::path data = tmp.write(
        "d.jsonl", "{\"id\": \"a\", \"prompt\": \"p\", \"answer\": \"7\", \"verifier\": \"python:" +
                       file + ":f\"}\n");
    const eval::Dataset d = eval::load_dataset(data.string(), "exact", "cluster");
    ASSERT_EQ(d.items.size(), 1u) << (d.excluded.empty() ? "" : d.excluded[0]);
    testutil::TableGenerator gen;
    gen.table["a"] = {"7", " 8", "boom", "big"};
    eval::EvalOptions o;
    o.run_dir = (tmp.path() / "run").string();
    o.k = 4;
    const eval::EvalSummary sum = eval::run_eval(d.items, gen, o);
    EXPECT_EQ(sum.generated, 4);
    EXPECT_EQ(sum.failed, 2);
    auto samples = eval::SampleStore(o.run_dir).samples();
    ASSERT_EQ(samples.size(), 4u);
    std::sort(samples.begin(), samples.end(),
              [](const auto& x, const auto& y) { return x.sample < y.sample; });
    EXPECT_EQ(samples[0].score, 1.0);
    EXPECT_EQ(samples[1].score, 0.0);
    EXPECT_FALSE(samples[2].score.has_value());
    EXPECT_EQ(samples[2].error, "scoring: RuntimeError: cannot parse");
    EXPECT_FALSE(samples[3].score.has_value());
    EXPECT_NE(samples[3].error.find("not a score in [0, 1]"), std::string::npos)
        << samples[3].error;
    // Malformed kinds and files that do not load.
    EXPECT_THROW(eval::python_verifier_options("python:" + file), Error);
    EXPECT_THROW(eval::python_verifier_options("python:" + file + ":f:tlr"), Error);
    EXPECT_EQ(eval::python_verifier_options("python:" + file + ":f:verl").signature,
              PythonRewardOptions::Signature::verl);
    const PythonRewardOptions both =
        eval::python_verifier_options("python:" + file + ":f:verl:sandbox");
    EXPECT_TRUE(both.sandbox);
    EXPECT_EQ(both.signature, PythonRewardOptions::Signature::verl);
    EXPECT_TRUE(eval::python_verifier_options("python:" + file + ":f:sandbox").sandbox);
    EXPECT_FALSE(eval::python_verifier_options("python:" + file + ":f").sandbox);
    EXPECT_THROW(eval::python_verifier_options("python:" + file + ":f:sandbox:sandbox"), Error);
    std::vector<eval::EvalItem> gone = d.items;
    gone[0].verifier = "python:" + (tmp.path() / "nope.py").string() + ":f";
    testutil::TableGenerator unused;
    unused.table["a"] = {"7"};
    o.run_dir = (tmp.path() / "run2").string();
    EXPECT_NE(testutil::error_of([&] { eval::run_eval(gone, unused, o); }).find("nope.py"),
              std::string::npos);
    EXPECT_TRUE(unused.asked.empty());  // nothing generated
}

}  // namespace
}  // namespace crucible
