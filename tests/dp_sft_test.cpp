// Data-parallel SFT under Open MPI: `mpirun --oversubscribe -np 2 crucible train sft` against
// the same run in one process, bad rank counts and mismatched ranks, a rank killed mid-run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "core/file_io.h"
#include "eval/sample_store.h"
#include "http_test_server.h"
#include "model_util.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

struct Proc {
    int rc = 0;
    std::string out, err;
};

// Each rank gets one thread (two ranks on the CI's two cores).
using testutil::kMpiEnv;

std::string sft_args(const fs::path& dir, const std::string& name, const std::string& extra) {
    return "train sft --set run.dir=" + dir.string() + " --set run.name=" + name +
           " --set train.steps=6 --set train.batch_size=8 --set train.grad_accum=2"
           " --set train.eval_every=0 --set train.eval_generate=0 --set train.checkpoint_every=2"
           " --set train.log_every=1 --set train.warmup_steps=2 --set "
           "data.builtin_train_examples=200"
           " --set data.builtin_eval_examples=8 --set data.max_seq_len=48"
           " --set model.arch.hidden_size=32 --set model.arch.intermediate_size=64"
           " --set model.arch.num_hidden_layers=2 --set model.arch.num_attention_heads=2"
           " --set model.arch.num_key_value_heads=1 " +
           extra;
}

Proc run(const TempDir& t, const std::string& cmd) {
    const fs::path out = t.path() / "run.out", err = t.path() / "run.err";
    const int status = std::system((cmd + " > " + out.string() + " 2> " + err.string()).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testutil::slurp(out),
            testutil::slurp(err)};
}

Proc one_process(const TempDir& t, const std::string& args) {
    return run(t, std::string("OMP_NUM_THREADS=1 ") + CRUCIBLE_BINARY + " " + args);
}

Proc ranks(const TempDir& t, int n, const std::string& args) {
    return run(t, std::string(kMpiEnv) + "OMP_NUM_THREADS=1 mpirun -np " + std::to_string(n) + " " +
                      CRUCIBLE_BINARY + " " + args);
}

std::string bytes(const fs::path& f) {
    return read_file(f);
}

}  // namespace

TEST(DataParallelSft, TwoRanksEqualOneProcessBitForBit) {
    TempDir t;
    // One micro-batch per rank: ((g0) + g1) on either side, the same bits.
    const Proc one = one_process(t, sft_args(t.path(), "one", ""));
    ASSERT_EQ(one.rc, 0) << one.err;
    const Proc two = ranks(t, 2, sft_args(t.path(), "two", ""));
    ASSERT_EQ(two.rc, 0) << two.out << two.err;
    EXPECT_NE(two.out.find("crucible: rank 0 of 2 (mpirun), 1 OpenMP thread per rank"),
              std::string::npos)
        << two.out;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(bytes(t.path() / "one/checkpoints/step-6" / f) ==
                    bytes(t.path() / "two/checkpoints/step-6" / f))
            << f << " differs";
    }
    const auto a = testutil::read_jsonl(t.path() / "one/metrics.jsonl");
    const auto b = testutil::read_jsonl(t.path() / "two/metrics.jsonl");
    ASSERT_EQ(a.size(), 6u);
    ASSERT_EQ(b.size(), 6u);
    for (size_t i = 0; i < a.size(); i++) {
        EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << i;
        EXPECT_EQ(a[i]["grad_norm"], b[i]["grad_norm"]) << i;
        EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]) << i;
        EXPECT_EQ(b[i]["ranks"], 2);
        EXPECT_GT(b[i]["comm_bytes_sent"].get<double>(), 0.0);
    }
    // Two micro-batches per rank: (g0 + g1) + (g2 + g3) against ((g0 + g1) + g2) + g3, the
    // same sums rounded in another order.
    const std::string four = " --set train.grad_accum=4";
    ASSERT_EQ(one_process(t, sft_args(t.path(), "one4", four)).rc, 0);
    const Proc two4 = ranks(t, 2, sft_args(t.path(), "two4", four));
    ASSERT_EQ(two4.rc, 0) << two4.err;
    const auto c = testutil::read_jsonl(t.path() / "one4/metrics.jsonl");
    const auto d = testutil::read_jsonl(t.path() / "two4/metrics.jsonl");
    ASSERT_EQ(c.size(), d.size());
    for (size_t i = 0; i < c.size(); i++) {
        const double x = c[i]["loss"], y = d[i]["loss"];
        EXPECT_NEAR(x, y, 1e-5 * std::fabs(x)) << i;
    }
}

TEST(DataParallelSft, BadRankCountsAndMismatchedRanksAreRefusedBeforeAnyWork) {
    TempDir t;
    Proc r = ranks(t, 2, sft_args(t.path(), "odd", "--set train.grad_accum=1"));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find("train.grad_accum 1 is not a multiple of the 2 ranks"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(t.path() / "odd"));
    // Two ranks started with different configs (Open MPI's MPMD syntax).
    r = run(t, std::string(kMpiEnv) + "OMP_NUM_THREADS=1 mpirun -np 1 " + CRUCIBLE_BINARY + " " +
                   sft_args(t.path(), "mixed", "--set seed=1") + " : -np 1 " + CRUCIBLE_BINARY +
                   " " + sft_args(t.path(), "mixed", "--set seed=2"));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find("the effective config differs between the ranks"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(t.path() / "mixed"));
    // Two ranks started from different binaries: a copy with one byte more (ELF ignores it).
    const fs::path other = t.path() / "crucible-other";
    fs::copy_file(CRUCIBLE_BINARY, other);
    append_file_checked(other, "x");
    fs::permissions(other, fs::perms::owner_all);
    r = run(t, std::string(kMpiEnv) + "OMP_NUM_THREADS=1 mpirun -np 1 " + CRUCIBLE_BINARY + " " +
                   sft_args(t.path(), "twobin", "") + " : -np 1 " + other.string() + " " +
                   sft_args(t.path(), "twobin", ""));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find("the crucible binary differs between the ranks"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(t.path() / "twobin"));
    // Commands that do not run across ranks say so.
    r = ranks(t, 2, "serve --model " + t.path().string());
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find("under mpirun only `crucible train`, `crucible eval`"), std::string::npos)
        << r.err;
}

TEST(DataParallelSft, AKilledRankStopsTheJobAndResumeContinuesExactly) {
    TempDir t;
    const std::string longer = " --set train.steps=1000 --set train.checkpoint_every=20";
    // The reference: uninterrupted, one process.
    ASSERT_EQ(one_process(t, sft_args(t.path(), "ref", longer)).rc, 0);
    // Two ranks; rank 1 is killed once a few steps are logged.
    const std::string cmd = std::string(kMpiEnv) + "OMP_NUM_THREADS=1 exec mpirun -np 2 " +
                            CRUCIBLE_BINARY + " " + sft_args(t.path(), "killed", longer) + " > " +
                            (t.path() / "k.out").string() + " 2> " + (t.path() / "k.err").string();
    const pid_t launcher = fork();
    ASSERT_GE(launcher, 0);
    if (launcher == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
        _exit(127);
    }
    const fs::path metrics = t.path() / "killed/metrics.jsonl";
    // Up to 2 minutes: a sanitizer build under a parallel ctest took more than 12 s to start.
    for (int i = 0; i < 6000; i++) {
        if (fs::exists(metrics) && testutil::read_jsonl(metrics).size() >= 30) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const bool logged = fs::exists(metrics) && testutil::read_jsonl(metrics).size() >= 30;
    if (!logged) {  // mpirun ends its ranks on SIGTERM
        kill(launcher, SIGTERM);
        waitpid(launcher, nullptr, 0);
    }
    ASSERT_TRUE(logged) << "the two-rank run did not log 30 steps in 2 minutes";
    // The rank-1 process: mpirun's child whose environment says OMPI_COMM_WORLD_RANK=1.
    const Proc ps = run(t, "for p in $(pgrep -P " + std::to_string(launcher) +
                               "); do tr '\\0' '\\n' < /proc/$p/environ | grep -qx "
                               "OMPI_COMM_WORLD_RANK=1 && echo $p; done");
    ASSERT_FALSE(ps.out.empty()) << "rank 1 not found (the run may have finished already)";
    kill(std::stoi(ps.out), SIGKILL);
    int status = 0;
    waitpid(launcher, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    const std::string err = testutil::slurp(t.path() / "k.err");
    EXPECT_NE(err.find("rank 1"), std::string::npos) << err;  // mpirun names the lost rank
    ASSERT_FALSE(fs::exists(t.path() / "killed/checkpoints/step-1000")) << "it was not killed";
    // --resume on two ranks continues from the last checkpoint and ends on the reference's bytes.
    const Proc resumed = ranks(
        t, 2, sft_args(t.path(), "killed", longer + " --resume " + (t.path() / "killed").string()));
    ASSERT_EQ(resumed.rc, 0) << resumed.err;
    EXPECT_NE(resumed.out.find("resumed"), std::string::npos) << resumed.out;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(bytes(t.path() / "ref/checkpoints/step-1000" / f) ==
                    bytes(t.path() / "killed/checkpoints/step-1000" / f))
            << f << " differs";
    }
}

// Two "hosts": network namespaces joined by a veth pair, Open MPI's ranks talking over TCP
// between them (--mca btl tcp,self; the remote rank's daemon started in the other namespace by
// an rsh agent that enters it instead of ssh).
TEST(DataParallelSft, TwoRanksInTwoNetworkNamespacesOverTcp) {
    TempDir t;
    const std::string id = std::to_string(getpid() % 100000);
    const std::string ns1 = "crs" + id + "a", ns2 = "crs" + id + "b";
    const std::string setup =
        "ip netns add " + ns1 + " && ip netns add " + ns2 + " && ip link add v" + id +
        "a type veth peer name v" + id + "b && ip link set v" + id + "a netns " + ns1 +
        " && ip link set v" + id + "b netns " + ns2 + " && ip -n " + ns1 +
        " addr add 10.9.0.1/24 dev v" + id + "a && ip -n " + ns2 + " addr add 10.9.0.2/24 dev v" +
        id + "b && ip -n " + ns1 + " link set v" + id + "a up && ip -n " + ns2 + " link set v" +
        id + "b up && ip -n " + ns1 + " link set lo up && ip -n " + ns2 + " link set lo up";
    const Proc made = run(t, setup);
    struct Teardown {
        std::string a, b;
        ~Teardown() {
            std::system(
                ("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null").c_str());
        }
    } teardown{ns1, ns2};
    if (made.rc != 0) GTEST_SKIP() << "network namespaces are not allowed here: " << made.err;
    write_file_durable(t.path() / "agent.sh",
                       "#!/bin/sh\nhost=\"$1\"; shift\ncase \"$host\" in 10.9.0.1) ns=" + ns1 +
                           " ;; 10.9.0.2) ns=" + ns2 +
                           " ;; *) exit 1 ;; esac\nexec ip netns exec \"$ns\" /bin/sh -c \"$*\"\n");
    fs::permissions(t.path() / "agent.sh", fs::perms::owner_all);
    write_file_durable(t.path() / "hosts", "10.9.0.1 slots=1\n10.9.0.2 slots=1\n");
    ASSERT_EQ(one_process(t, sft_args(t.path(), "one", "")).rc, 0);
    const Proc tcp = run(
        t, "ip netns exec " + ns1 + " env " + kMpiEnv + "OMP_NUM_THREADS=1 mpirun --hostfile " +
               (t.path() / "hosts").string() + " -np 2 -x OMP_NUM_THREADS --mca plm_rsh_agent " +
               (t.path() / "agent.sh").string() +
               " --mca btl tcp,self --mca btl_tcp_if_include 10.9.0.0/24 --mca "
               "oob_tcp_if_include 10.9.0.0/24 " +
               CRUCIBLE_BINARY + " " + sft_args(t.path(), "tcp", ""));
    ASSERT_EQ(tcp.rc, 0) << tcp.out << tcp.err;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(bytes(t.path() / "one/checkpoints/step-6" / f) ==
                    bytes(t.path() / "tcp/checkpoints/step-6" / f))
            << f << " differs";
    }
}

// RL under mpirun: each rank generates and scores every N-th group of a round (here 3 groups on
// 2 ranks: 2 and 1), every rank gathers the round and trains on it, so the run is the
// one-process run: the same rewards at every step and the same checkpoint bytes.
TEST(DataParallelRl, TwoRanksGenerateTheirGroupsAndEqualOneProcessBitForBit) {
    TempDir t;
    testutil::write_byte_model(t.path() / "base", 128);
    // A reward that varies from sample to sample (so the advantages and the update are not 0),
    // computed on the rank that generated the sample.
    write_file_durable(t.path() / "reward.py",
                       "def f(prompts, completions, **kw):\n"
                       "    return [(len(c) * 7 + sum(map(ord, c))) % 11 / 10.0 for c in "
                       "completions]\n");
    auto args = [&](const std::string& name) {
        return "train rl --set model.path=" + (t.path() / "base").string() +
               " --set run.dir=" + t.path().string() + " --set run.name=" + name +
               " --set task.train_examples=200 --set task.eval_examples=8"
               " --set rollout.prompts_per_step=3 --set rollout.samples_per_prompt=4"
               " --set rollout.max_new_tokens=6 --set train.steps=3 --set train.eval_every=0"
               " --set train.eval_problems=4 --set train.eval_samples=2"
               " --set train.checkpoint_every=3 --set train.lr=5e-2 --set train.warmup_steps=0"
               " --set rewards.correct=0 --set rewards.format=0 --set rewards.python.file=" +
               (t.path() / "reward.py").string() + " --set rewards.python.function=f";
    };
    const Proc one = one_process(t, args("one"));
    ASSERT_EQ(one.rc, 0) << one.err;
    const Proc two = ranks(t, 2, args("two"));
    ASSERT_EQ(two.rc, 0) << two.out << two.err;
    const auto a = testutil::read_jsonl(t.path() / "one/metrics.jsonl");
    const auto b = testutil::read_jsonl(t.path() / "two/metrics.jsonl");
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(b.size(), 3u);
    for (size_t i = 0; i < a.size(); i++) {
        EXPECT_EQ(a[i]["reward_mean"], b[i]["reward_mean"]) << i;
        EXPECT_EQ(a[i]["response_length_mean"], b[i]["response_length_mean"]) << i;
        EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << i;
        EXPECT_EQ(a[i]["grad_norm"], b[i]["grad_norm"]) << i;
    }
    EXPECT_NE(a[0]["grad_norm"].get<double>(), 0.0);  // the update is not empty
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(bytes(t.path() / "one/checkpoints/step-3" / f) ==
                    bytes(t.path() / "two/checkpoints/step-3" / f))
            << f << " differs";
    }
    EXPECT_TRUE(testutil::slurp(t.path() / "one/samples.jsonl") ==
                testutil::slurp(t.path() / "two/samples.jsonl"));
    // One group a round on 2 ranks: rank 1 generates nothing and still trains on the round.
    const std::string one_group = " --set rollout.prompts_per_step=1 --set train.steps=1";
    const std::string tail = " --set train.checkpoint_every=1";
    ASSERT_EQ(one_process(t, args("g1") + one_group + tail).rc, 0);
    const Proc g2 = ranks(t, 2, args("g2") + one_group + tail);
    ASSERT_EQ(g2.rc, 0) << g2.err;
    EXPECT_TRUE(bytes(t.path() / "g1/checkpoints/step-1/model.safetensors") ==
                bytes(t.path() / "g2/checkpoints/step-1/model.safetensors"));
    // The update shared out: train.micro_batch_tokens=1 makes every sequence a micro-batch.
    // Two mini-batches of one group of 2 on 2 ranks: one micro-batch each, so the old and the
    // reference log-probabilities (scored on the rank that trains the sequence) and the update
    // are one process's bit for bit.
    const std::string split =
        " --set rollout.prompts_per_step=2 --set rollout.samples_per_prompt=2"
        " --set train.micro_batch_tokens=1 --set algorithm.minibatches=2"
        " --set algorithm.kl_beta=0.1";
    ASSERT_EQ(one_process(t, args("s1") + split).rc, 0);
    const Proc s2 = ranks(t, 2, args("s2") + split);
    ASSERT_EQ(s2.rc, 0) << s2.err;
    const auto x = testutil::read_jsonl(t.path() / "s1/metrics.jsonl");
    const auto y = testutil::read_jsonl(t.path() / "s2/metrics.jsonl");
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); i++) {
        EXPECT_EQ(x[i]["loss"], y[i]["loss"]) << i;
        EXPECT_EQ(x[i]["grad_norm"], y[i]["grad_norm"]) << i;
        EXPECT_EQ(x[i]["micro_batches"], y[i]["micro_batches"]) << i;
        EXPECT_EQ(x[i]["kl"], y[i]["kl"]) << i;
    }
    EXPECT_EQ(x[0]["micro_batches"].get<int>(), 4);
    EXPECT_TRUE(x[0].contains("kl")) << x[0].dump();
    EXPECT_TRUE(bytes(t.path() / "s1/checkpoints/step-3/model.safetensors") ==
                bytes(t.path() / "s2/checkpoints/step-3/model.safetensors"));
    // Twelve sequences, six micro-batches a rank: each rank sums its own first, so the sums
    // round in another order (docs/SCALING.md); the same run within rounding.
    const std::string many = " --set train.micro_batch_tokens=1";
    ASSERT_EQ(one_process(t, args("m1") + many).rc, 0);
    ASSERT_EQ(ranks(t, 2, args("m2") + many).rc, 0);
    const auto u = testutil::read_jsonl(t.path() / "m1/metrics.jsonl");
    const auto v = testutil::read_jsonl(t.path() / "m2/metrics.jsonl");
    ASSERT_EQ(u.size(), v.size());
    // Step 1 (later steps sample from weights a rounding apart, which may flip a token).
    EXPECT_EQ(u[0]["reward_mean"], v[0]["reward_mean"]);  // the same rollouts
    EXPECT_NEAR(u[0]["grad_norm"].get<double>(), v[0]["grad_norm"].get<double>(),
                1e-5 * u[0]["grad_norm"].get<double>());
    EXPECT_EQ(u[0]["micro_batches"], 12);
    // Resumed on another rank count: 2 ranks to step 2 (the step-3 checkpoint removed, as if
    // killed after step 2's), then one process from there ends on the same bytes.
    const std::string every = " --set train.checkpoint_every=1";
    ASSERT_EQ(ranks(t, 2, args("mixed") + every).rc, 0);
    fs::remove_all(t.path() / "mixed/checkpoints/step-3");
    const Proc resumed =
        one_process(t, args("mixed") + every + " --resume " + (t.path() / "mixed").string());
    ASSERT_EQ(resumed.rc, 0) << resumed.err;
    EXPECT_NE(resumed.out.find("resumed"), std::string::npos) << resumed.out;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(bytes(t.path() / "one/checkpoints/step-3" / f) ==
                    bytes(t.path() / "mixed/checkpoints/step-3" / f))
            << f << " differs after a resume on one process";
    }
}

TEST(ShardedEval, TwoRanksStoreWhatOneProcessStoresAndResume) {
    TempDir t;
    testutil::write_byte_model(t.path() / "model", 128);
    std::string lines;
    for (int i = 0; i < 7; i++) {
        lines += "{\"id\": \"q" + std::to_string(i) + "\", \"prompt\": \"" + std::to_string(i) +
                 "+1=\", \"answer\": \"" + std::to_string(i + 1) + "\"}\n";
    }
    const fs::path data = t.path() / "d.jsonl";
    write_file_durable(data, lines);
    const std::string base = "eval --model " + (t.path() / "model").string() + " --data " +
                             data.string() + " --max-tokens 6 --seed 5 --batch 4 --raw --out ";
    const Proc one = one_process(t, base + (t.path() / "one").string() + " --n 3");
    ASSERT_EQ(one.rc, 0) << one.err;
    const Proc two = ranks(t, 2, base + (t.path() / "two").string() + " --n 3");
    ASSERT_EQ(two.rc, 0) << two.out << two.err;
    EXPECT_NE(two.err.find("eval: 21 generated (0 failed), 0 already stored"), std::string::npos)
        << two.err;
    auto by_key = [](const fs::path& run) {
        std::map<std::pair<std::string, int>, eval::SampleRecord> m;
        for (eval::SampleRecord& r : eval::SampleStore(run.string()).samples())
            m[{r.item_id, r.sample}] = r;
        return m;
    };
    const auto a = by_key(t.path() / "one"), b = by_key(t.path() / "two");
    ASSERT_EQ(a.size(), 21u);
    ASSERT_EQ(b.size(), 21u);
    for (const auto& [key, r] : a) {
        const eval::SampleRecord& x = b.at(key);
        EXPECT_EQ(r.completion, x.completion) << key.first << " " << key.second;
        EXPECT_EQ(r.seed, x.seed);
        EXPECT_EQ(r.score, x.score);
        EXPECT_EQ(r.prompt, x.prompt);
        EXPECT_EQ(r.completion_tokens, x.completion_tokens);
    }
    // The results are the same numbers (results.json's metrics, not its timings).
    const json ra = json::parse(read_file(t.path() / "one/results.json"));
    const json rb = json::parse(read_file(t.path() / "two/results.json"));
    ASSERT_TRUE(ra["metrics"].is_object() && !ra["metrics"].empty()) << ra.dump();
    EXPECT_EQ(ra["metrics"], rb["metrics"]);
    EXPECT_EQ(ra["pass_at_k_curve"], rb["pass_at_k_curve"]);
    // A larger --n on 2 ranks generates only the new samples, as on one process.
    const Proc more = ranks(t, 2, base + (t.path() / "two").string() + " --n 5");
    ASSERT_EQ(more.rc, 0) << more.err;
    EXPECT_NE(more.err.find("eval: 14 generated (0 failed), 21 already stored"), std::string::npos)
        << more.err;
    EXPECT_EQ(by_key(t.path() / "two").size(), 35u);
}

// A rubric reward judged by a model under mpirun: each rank judges the groups it generated (one
// judge cache, shared through SQLite's locking) and the judge's totals are summed over ranks; the
// rewards, the update and the totals equal one process's.
TEST(DataParallelRl, RubricRewardsAreJudgedWhereGeneratedAndTotalsSummed) {
    TempDir t;
    testutil::write_byte_model(t.path() / "base", 128);
    // The judge: "met" for two requests in three, decided by the request's text alone.
    testutil::TestServer judge;
    std::atomic<int> requests{0};
    judge.http().Post(
        "/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
            requests++;
            const json body = json::parse(req.body);
            const std::string user = body["messages"][1]["content"].get<std::string>();
            const bool met = std::hash<std::string>()(user) % 3 != 0;
            const json reply{{"explanation", "checked"}, {"criteria_met", met}};
            const json out{{"id", "c"},
                           {"object", "chat.completion"},
                           {"model", "m"},
                           {"choices",
                            {{{"index", 0},
                              {"message", {{"role", "assistant"}, {"content", reply.dump()}}},
                              {"finish_reason", "stop"}}}},
                           {"usage", {{"prompt_tokens", 100}, {"completion_tokens", 10}}}};
            res.set_content(out.dump(), "application/json");
        });
    std::string lines;
    for (int i = 0; i < 12; i++) {
        lines += "{\"id\": \"i" + std::to_string(i) + "\", \"prompt\": \"say " + std::to_string(i) +
                 "\", \"rubric\": [{\"criterion\": \"It is polite\", \"points\": 2}, "
                 "{\"criterion\": \"It is short\", \"points\": 1}]}\n";
    }
    write_file_durable(t.path() / "rubric.jsonl", lines);
    auto args = [&](const std::string& name) {
        return "train rl --set model.path=" + (t.path() / "base").string() +
               " --set run.dir=" + t.path().string() + " --set run.name=" + name +
               " --set task.name=jsonl --set task.data=" + (t.path() / "rubric.jsonl").string() +
               " --set rollout.prompts_per_step=3 --set rollout.samples_per_prompt=4"
               " --set rollout.max_new_tokens=6 --set train.steps=2 --set train.eval_every=0"
               " --set train.checkpoint_every=2 --set train.lr=5e-2 --set train.warmup_steps=0"
               " --set algorithm.dynamic_sampling=false --set rewards.correct=0"
               " --set rewards.format=0 --set rewards.rubric=1 --set rubric.judge=openai:" +
               judge.base_url() + "#m";
    };
    const Proc one = one_process(t, args("one"));
    ASSERT_EQ(one.rc, 0) << one.err;
    const int one_requests = requests.exchange(0);
    const Proc two = ranks(t, 2, args("two"));
    ASSERT_EQ(two.rc, 0) << two.out << two.err;
    const auto a = testutil::read_jsonl(t.path() / "one/metrics.jsonl");
    const auto b = testutil::read_jsonl(t.path() / "two/metrics.jsonl");
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    for (size_t i = 0; i < a.size(); i++) {
        EXPECT_EQ(a[i]["reward_mean"], b[i]["reward_mean"]) << i;
        EXPECT_EQ(a[i]["reward/rubric"], b[i]["reward/rubric"]) << i;
        EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << i;
        EXPECT_EQ(a[i]["grad_norm"], b[i]["grad_norm"]) << i;
        // Every judgement is a request or a cache hit, whichever rank made it.
        const json& ja = a[i]["judge"];
        const json& jb = b[i]["judge"];
        EXPECT_EQ(ja["judge_requests"].get<int64_t>() + ja["judge_cache_hits"].get<int64_t>(),
                  jb["judge_requests"].get<int64_t>() + jb["judge_cache_hits"].get<int64_t>())
            << i;
        EXPECT_EQ(jb["judge_prompt_tokens"].get<int64_t>(),
                  100 * jb["judge_requests"].get<int64_t>());
    }
    EXPECT_GT(a[0]["judge"]["judge_requests"].get<int64_t>(), 0);
    // The totals are what the judge saw: rank 1's requests counted with rank 0's.
    EXPECT_EQ(b.back()["judge"]["judge_requests"].get<int64_t>(), requests.load());
    EXPECT_EQ(a.back()["judge"]["judge_requests"].get<int64_t>(), one_requests);
    // The rewards vary (so the advantages and the update are not 0).
    EXPECT_GT(a[0]["reward_std"].get<double>(), 0.0) << a[0].dump();
    EXPECT_TRUE(bytes(t.path() / "one/checkpoints/step-2/model.safetensors") ==
                bytes(t.path() / "two/checkpoints/step-2/model.safetensors"));
}

// Rubric items under mpirun: every rank generates its share, rank 0 alone judges (here the
// programmatic criteria, through the same queue a judge model's calls take) and stores; the
// scores and per-criterion results equal one process's.
TEST(ShardedEval, RubricItemsAreJudgedOnRankZeroAsOneProcessJudgesThem) {
    TempDir t;
    testutil::write_byte_model(t.path() / "model", 128);
    std::string lines;
    for (int i = 0; i < 5; i++) {
        lines += "{\"id\": \"q" + std::to_string(i) + "\", \"prompt\": \"" + std::to_string(i) +
                 "+1=\", \"answer\": \"" + std::to_string(i + 1) + "\"}\n";
        lines += "{\"id\": \"r" + std::to_string(i) + "\", \"prompt\": \"say " + std::to_string(i) +
                 "\", \"rubric\": [{\"kind\": \"regex\", \"pattern\": \"[a-m]\", "
                 "\"points\": 2}, {\"kind\": \"contains\", \"value\": \"" +
                 std::to_string(i) + "\", \"points\": 1}]}\n";
    }
    const fs::path data = t.path() / "d.jsonl";
    write_file_durable(data, lines);
    const std::string base = "eval --model " + (t.path() / "model").string() + " --data " +
                             data.string() +
                             " --max-tokens 6 --seed 5 --batch 4 --raw --n 3 --out ";
    const Proc one = one_process(t, base + (t.path() / "one").string());
    ASSERT_EQ(one.rc, 0) << one.err;
    const Proc two = ranks(t, 2, base + (t.path() / "two").string());
    ASSERT_EQ(two.rc, 0) << two.out << two.err;
    EXPECT_NE(two.err.find("eval: 30 generated (0 failed), 0 already stored"), std::string::npos)
        << two.err;
    std::map<std::pair<std::string, int>, eval::SampleRecord> a, b;
    for (eval::SampleRecord& r : eval::SampleStore((t.path() / "one").string()).samples())
        a[{r.item_id, r.sample}] = r;
    for (eval::SampleRecord& r : eval::SampleStore((t.path() / "two").string()).samples())
        b[{r.item_id, r.sample}] = r;
    ASSERT_EQ(a.size(), 30u);
    ASSERT_EQ(b.size(), 30u);
    int judged = 0;
    for (const auto& [key, r] : a) {
        const eval::SampleRecord& x = b.at(key);
        EXPECT_EQ(r.completion, x.completion) << key.first << " " << key.second;
        EXPECT_EQ(r.score, x.score) << key.first << " " << key.second;
        EXPECT_EQ(r.rubric, x.rubric) << key.first << " " << key.second;
        EXPECT_EQ(r.error, x.error);
        if (key.first[0] == 'r') {
            ASSERT_FALSE(x.rubric.empty()) << key.first << " was not judged";
            ASSERT_TRUE(x.score.has_value());
            judged++;
        }
    }
    EXPECT_EQ(judged, 15);
    const json ra = json::parse(read_file(t.path() / "one/results.json"));
    const json rb = json::parse(read_file(t.path() / "two/results.json"));
    EXPECT_EQ(ra["metrics"], rb["metrics"]);
}

}  // namespace crucible
