// `crucible experiment`: the two-stage bootstrap against formulas worked by hand, and a two-arm,
// two-seed experiment end to end (resumed run by run, refused when its spec changes).
#include "experiment/experiment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "eval/statistics.h"
#include "model_util.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

// With every run the same, the seeds stage changes nothing: the spread is the item bootstrap's,
// whose SE is the plug-in SE of a mean, sd_pop / sqrt(n).
TEST(SeedsAndItemsBootstrap, IdenticalRunsGiveTheItemSamplingError) {
    Rng rng(3);
    std::vector<double> items(200);
    for (double& v : items) v = rng.uniform();
    double m = 0, ss = 0;
    for (double v : items) m += v;
    m /= items.size();
    for (double v : items) ss += (v - m) * (v - m);
    const double plug_in_se = std::sqrt(ss / items.size()) / std::sqrt((double)items.size());
    const eval::BootstrapResult b = eval::seeds_and_items_bootstrap({items, items, items}, 4000, 1);
    EXPECT_NEAR(b.estimate, m, 1e-12);
    EXPECT_NEAR(b.se, plug_in_se, 0.06 * plug_in_se);
    EXPECT_NEAR(b.interval.lo, m - 1.96 * plug_in_se, 0.25 * plug_in_se);
    EXPECT_NEAR(b.interval.hi, m + 1.96 * plug_in_se, 0.25 * plug_in_se);
}

// With items that all score alike within a run, the items stage changes nothing: the spread is
// the bootstrap over the S run means, SE sd_pop(run means) / sqrt(S).
TEST(SeedsAndItemsBootstrap, ItemsThatScoreAlikeGiveTheSeedToSeedError) {
    const std::vector<double> run_means = {0.30, 0.42, 0.35, 0.51, 0.38, 0.45, 0.33, 0.40};
    eval::ScoreRows runs;
    for (double r : run_means) runs.push_back(std::vector<double>(50, r));
    double m = 0, ss = 0;
    for (double r : run_means) m += r;
    m /= run_means.size();
    for (double r : run_means) ss += (r - m) * (r - m);
    const double S = run_means.size();
    const double se = std::sqrt(ss / S) / std::sqrt(S);
    const eval::BootstrapResult b = eval::seeds_and_items_bootstrap(runs, 4000, 2);
    EXPECT_NEAR(b.estimate, m, 1e-12);
    EXPECT_NEAR(b.se, se, 0.06 * se);
}

// Paired on items: an arm that adds 0.1 to every item of the same runs differs by exactly 0.1
// in every replicate, whatever the items' own spread; with seed-to-seed spread in both arms the
// difference's SE is that of two independent means of S runs.
TEST(SeedsAndItemsBootstrap, TheDifferenceIsPairedOnItemsAndNotOnSeeds) {
    Rng rng(5);
    std::vector<double> items(100);
    for (double& v : items) v = rng.uniform() * 0.8;
    std::vector<double> shifted = items;
    for (double& v : shifted) v += 0.1;
    const eval::BootstrapResult d =
        eval::seeds_and_items_bootstrap_diff({items}, {shifted}, 2000, 3);
    EXPECT_NEAR(d.estimate, 0.1, 1e-12);
    EXPECT_NEAR(d.interval.lo, 0.1, 1e-12);
    EXPECT_NEAR(d.interval.hi, 0.1, 1e-12);
    EXPECT_NEAR(d.se, 0.0, 1e-12);
    // Seed spread only (items alike): var = var_a/S + var_b/S with plug-in variances.
    const std::vector<double> a_means = {0.2, 0.3, 0.25, 0.35}, b_means = {0.4, 0.3, 0.45, 0.5};
    eval::ScoreRows a, b;
    for (double r : a_means) a.push_back(std::vector<double>(30, r));
    for (double r : b_means) b.push_back(std::vector<double>(30, r));
    auto pop_var = [](const std::vector<double>& v) {
        double m = 0, ss = 0;
        for (double x : v) m += x;
        m /= v.size();
        for (double x : v) ss += (x - m) * (x - m);
        return ss / v.size();
    };
    const double se = std::sqrt(pop_var(a_means) / 4 + pop_var(b_means) / 4);
    const eval::BootstrapResult d2 = eval::seeds_and_items_bootstrap_diff(a, b, 6000, 4);
    EXPECT_NEAR(d2.estimate, 0.4125 - 0.275, 1e-12);
    EXPECT_NEAR(d2.se, se, 0.06 * se);
    EXPECT_NEAR(eval::minimum_detectable_difference(1.0), 1.959964 + 0.841621, 1e-5);
}

struct Cli {
    int rc = 0;
    std::string err;
};

// A shell command line's exit status and stderr.
Cli run_shell(const TempDir& t, const std::string& command) {
    const fs::path err = t.path() / "cli.err";
    const std::string cmd = command + " > /dev/null 2> " + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testutil::slurp(err)};
}

Cli run_cli(const TempDir& t, const std::string& args) {
    return run_shell(t, std::string(CRUCIBLE_BINARY) + " " + args);
}

// A tiny experiment: a random byte model, a task whose regex pays a completion holding a letter
// a-m (about a quarter of them at first), two arms — the control and lr 0, whose final policy
// is the base model whatever the seed — over two seeds.
struct TinyExperiment {
    TempDir t;
    fs::path spec, out;
    TinyExperiment() {
        testutil::write_byte_model(t.path() / "base", 128);
        std::string lines;
        for (int i = 0; i < 40; i++) {
            lines += "{\"id\": \"i" + std::to_string(i) + "\", \"prompt\": \"say " +
                     std::to_string(i) +
                     "\", \"answer\": \"(?s).*[a-m].*\", \"verifier\": \"regex\"}\n";
        }
        write_file_durable(t.path() / "task.jsonl", lines);
        std::string held_out;
        for (int i = 0; i < 12; i++) {
            held_out += "{\"id\": \"h" + std::to_string(i) + "\", \"prompt\": \"tell " +
                        std::to_string(i) +
                        "\", \"answer\": \"(?s).*[a-m].*\", \"verifier\": \"regex\"}\n";
        }
        write_file_durable(t.path() / "held_out.jsonl", held_out);
        spec = t.path() / "exp.yaml";
        write_file_durable(
            spec,
            "set:\n"
            "  - model.path=" +
                (t.path() / "base").string() +
                "\n"
                "  - task.name=jsonl\n"
                "  - task.data=" +
                (t.path() / "task.jsonl").string() +
                "\n"
                "  - task.eval_data=" +
                (t.path() / "held_out.jsonl").string() +
                "\n"
                "  - rollout.prompts_per_step=2\n"
                "  - rollout.samples_per_prompt=4\n"
                "  - rollout.max_new_tokens=6\n"
                "  - train.steps=2\n"
                "  - train.eval_every=0\n"
                "  - train.checkpoint_every=1\n"
                "  - train.lr=5e-2\n"
                "  - train.warmup_steps=0\n"
                "  - algorithm.dynamic_sampling=false\n"
                "arms:\n"
                "  - name: control\n"
                "  - name: lr0\n"
                "    set: [train.lr=0]\n"
                "seeds: [1, 2]\n"
                "eval: {items: 10, samples: 3, temperature: 1.0, seed: 7, every: 1}\n"
                "bootstrap: {resamples: 500, seed: 1}\n");
        out = t.path() / "exp";
    }
};

TEST(Experiment, TwoArmsTwoSeedsRunEvaluateAndReport) {
    TinyExperiment x;
    std::ostringstream log;
    experiment::run_experiment(experiment::load_spec(x.spec), x.out, log);
    EXPECT_NE(log.str().find("0 of 4 runs done"), std::string::npos) << log.str();
    const json r = json::parse(read_file(x.out / "results.json"));
    ASSERT_EQ(r["arms"].size(), 2u);
    EXPECT_EQ(r["control"], "control");
    // Each run's accuracy is its stored scores' mean; each arm's estimate the mean of its runs.
    for (const json& arm : r["arms"]) {
        ASSERT_EQ(arm["runs"].size(), 2u) << arm.dump();
        double sum = 0;
        for (const json& run : arm["runs"]) {
            const json e = json::parse(read_file(
                x.out / "runs" / arm["name"].get<std::string>() /
                ("seed-" + std::to_string(run["seed"].get<int>())) / "experiment_eval.json"));
            ASSERT_EQ(e["scores"].size(), 10u);
            double s = 0;
            int n = 0;
            for (const json& item : e["scores"]) {
                ASSERT_EQ(item.size(), 3u);
                double m = 0;
                for (const json& v : item) m += v.get<double>();
                s += m / 3;
                n++;
            }
            EXPECT_NEAR(run["accuracy"].get<double>(), s / n, 1e-12);
            sum += s / n;
            EXPECT_EQ(run["curves"]["step"].size(), 2u);  // the run's metrics.jsonl
            // eval.every 1: the step-1 checkpoint evaluated too, and the last point is the
            // final evaluation (the same policy, items and seeds).
            ASSERT_EQ(run["accuracy_by_step"].size(), 2u);
            EXPECT_EQ(run["accuracy_by_step"][0]["step"], 1);
            EXPECT_EQ(run["accuracy_by_step"][1]["step"], 2);
            EXPECT_NEAR(run["accuracy_by_step"][1]["accuracy"].get<double>(),
                        run["accuracy"].get<double>(), 1e-12);
            ASSERT_EQ(run["pass_at_k"].size(), 3u);
        }
        EXPECT_NEAR(arm["mean"]["estimate"].get<double>(), sum / 2, 1e-12);
        const double lo = arm["mean"]["ci95"][0], hi = arm["mean"]["ci95"][1];
        EXPECT_LE(lo, arm["mean"]["estimate"].get<double>());
        EXPECT_GE(hi, arm["mean"]["estimate"].get<double>());
    }
    // At lr 0 both seeds end on the base model and are evaluated on the same items with the
    // same sampling seeds: the same scores, no seed-to-seed spread.
    const json& lr0 = r["arms"][1];
    EXPECT_EQ(lr0["runs"][0]["accuracy"], lr0["runs"][1]["accuracy"]);
    EXPECT_EQ(lr0["seed_sd"].get<double>(), 0.0);
    // ... and its step-1 checkpoint, the same base policy reloaded, scores the same.
    EXPECT_NEAR(lr0["runs"][0]["accuracy_by_step"][0]["accuracy"].get<double>(),
                lr0["runs"][0]["accuracy"].get<double>(), 1e-12);
    EXPECT_GT(lr0["runs"][0]["accuracy"].get<double>(), 0.0);  // the task is not all zeros
    // The difference is the arms' estimates' difference, with its interval and verdict.
    ASSERT_EQ(r["differences"].size(), 1u);
    const json& d = r["differences"][0];
    EXPECT_NEAR(
        d["difference"]["estimate"].get<double>(),
        lr0["mean"]["estimate"].get<double>() - r["arms"][0]["mean"]["estimate"].get<double>(),
        1e-12);
    EXPECT_FALSE(d["verdict"].get<std::string>().empty());
    // pass@3 (every sample of the item): the arms' mean pass@3 curves' last points differ by the
    // pass@K difference's estimate.
    ASSERT_EQ(d["pass_at_k_difference"]["k"], 3);
    EXPECT_NEAR(d["pass_at_k_difference"]["estimate"].get<double>(),
                lr0["pass_at_k"][2].get<double>() - r["arms"][0]["pass_at_k"][2].get<double>(),
                1e-12);
    const std::string html = read_file(x.out / "report.html");
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_NE(html.find("lr0"), std::string::npos);

    // Each run's config is the spec's, the arm's overrides and its seed.
    const std::string lr0_config = read_file(x.out / "runs/lr0/seed-2/config.yaml");
    EXPECT_NE(lr0_config.find("lr: 0"), std::string::npos) << lr0_config;
    EXPECT_NE(lr0_config.find("seed: 2"), std::string::npos) << lr0_config;
    // A second call finds every run done and trains nothing.
    std::ostringstream again;
    experiment::run_experiment(experiment::load_spec(x.spec), x.out, again);
    EXPECT_NE(again.str().find("4 of 4 runs done"), std::string::npos) << again.str();
    EXPECT_EQ(again.str().find("seed 1 (resuming)"), std::string::npos);
    // A run whose evaluation was lost (killed after its last checkpoint) resumes from that
    // checkpoint, trains no further, and evaluates to the same scores.
    const fs::path eval_file = x.out / "runs/control/seed-2/experiment_eval.json";
    const json before = json::parse(read_file(eval_file));
    fs::remove(eval_file);
    std::ostringstream resumed;
    experiment::run_experiment(experiment::load_spec(x.spec), x.out, resumed);
    EXPECT_NE(resumed.str().find("3 of 4 runs done"), std::string::npos) << resumed.str();
    EXPECT_NE(resumed.str().find("control seed 2 (resuming)"), std::string::npos) << resumed.str();
    const json after = json::parse(read_file(eval_file));
    EXPECT_EQ(before["scores"], after["scores"]);
    // `experiment report` redraws the same results from the stored runs.
    const std::string results = read_file(x.out / "results.json");
    fs::remove(x.out / "results.json");
    const Cli rep = run_cli(x.t, "experiment report " + x.out.string());
    ASSERT_EQ(rep.rc, 0) << rep.err;
    EXPECT_EQ(read_file(x.out / "results.json"), results);
    // `compare --seed-spread`: two eval runs' difference set against the seeds' spread.
    for (const char* run : {"A", "B"}) {
        const Cli ev =
            run_cli(x.t, "eval --model " + (x.t.path() / "base").string() + " --data " +
                             (x.t.path() / "held_out.jsonl").string() +
                             " --n 2 --max-tokens 6 --raw --seed " + (run[0] == 'A' ? "1" : "2") +
                             " --out " + (x.t.path() / run).string());
        ASSERT_EQ(ev.rc, 0) << ev.err;
    }
    const fs::path cmp = x.t.path() / "cmp.json";
    const Cli c =
        run_cli(x.t, "compare " + (x.t.path() / "A").string() + " " + (x.t.path() / "B").string() +
                         " --seed-spread " + x.out.string() + " --json " + cmp.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    const json spread = json::parse(read_file(cmp))["seed_spread"];
    const double sd0 = r["arms"][0]["seed_sd"], sd1 = r["arms"][1]["seed_sd"];
    EXPECT_NEAR(spread["seed_sd"].get<double>(), std::sqrt((sd0 * sd0 + sd1 * sd1) / 2), 1e-12);
    EXPECT_NEAR(spread["single_run_difference_sd"].get<double>(),
                std::sqrt(2.0) * spread["seed_sd"].get<double>(), 1e-12);
    const double diff = json::parse(read_file(cmp))["diff"];
    EXPECT_EQ(spread["within_seed_spread"].get<bool>(),
              std::fabs(diff) < 2 * spread["single_run_difference_sd"].get<double>());
    // An edited base config is another experiment too (spec.json keeps its content's hash).
    {
        TempDir b;
        write_file_durable(b.path() / "base.yaml", "train:\n  lr: 0.05\n");
        write_file_durable(b.path() / "s.yaml", read_file(x.spec) + "base: base.yaml\n");
        const experiment::ExperimentSpec s = experiment::load_spec(b.path() / "s.yaml");
        std::ostringstream l;
        experiment::run_experiment(s, b.path() / "o", l);
        write_file_durable(b.path() / "base.yaml", "train:\n  lr: 0.01\n");
        const std::string edited =
            testutil::error_of([&] { experiment::run_experiment(s, b.path() / "o", l); });
        EXPECT_NE(edited.find("another spec"), std::string::npos) << edited;
    }
    // A stored evaluation edited by hand is refused by name, never averaged: a score past 1, a
    // missing row.
    {
        const fs::path f = x.out / "runs/lr0/seed-1/experiment_eval.json";
        const std::string good = read_file(f);
        json e = json::parse(good);
        e["scores"][0][0] = 7.0;
        write_file_durable(f, e.dump());
        std::string err = testutil::error_of([&] { experiment::experiment_results(x.out); });
        EXPECT_NE(err.find("a score outside [0, 1]"), std::string::npos) << err;
        e = json::parse(good);
        e["scores"].erase(e["scores"].size() - 1);
        write_file_durable(f, e.dump());
        err = testutil::error_of([&] { experiment::experiment_results(x.out); });
        EXPECT_NE(err.find("9 score rows for 10 items"), std::string::npos) << err;
        write_file_durable(f, good);
    }
    // The same folder with another spec is refused before any training.
    write_file_durable(x.spec, read_file(x.spec) + "preset: dapo\n");
    const std::string e = testutil::error_of(
        [&] { experiment::run_experiment(experiment::load_spec(x.spec), x.out, log); });
    EXPECT_NE(e.find("another spec"), std::string::npos) << e;
}

// Under mpirun the runs are dealt to groups of ranks: two ranks one run each at a time, or both
// ranks on every run (data-parallel), give the results of one process — a run's result does not
// depend on where it ran. A killed sharded experiment resumes the same way.
TEST(Experiment, RunsShardedAcrossRanksGiveOneProcesssResults) {
    TinyExperiment x;
    auto run = [&](const std::string& launcher, const fs::path& out, const std::string& extra) {
        return run_shell(x.t, launcher + std::string(CRUCIBLE_BINARY) + " experiment run --spec " +
                                  x.spec.string() + " --out " + out.string() + extra);
    };
    const std::string one = "OMP_NUM_THREADS=1 ";
    const std::string two = std::string(testutil::kMpiEnv) + "OMP_NUM_THREADS=1 mpirun -np 2 ";
    const Cli alone = run(one, x.out, "");
    ASSERT_EQ(alone.rc, 0) << alone.err;
    // What a run's result is, without the wall times.
    auto results = [](const fs::path& out) {
        json r = json::parse(read_file(out / "results.json"));
        for (json& arm : r["arms"]) {
            for (json& run : arm["runs"]) {
                run.erase("train_seconds");
                run.erase("eval_seconds");
            }
        }
        return r;
    };
    auto ranks_of = [](const fs::path& out, const char* arm, int seed) {
        return json::parse(read_file(out / "runs" / arm / ("seed-" + std::to_string(seed)) /
                                     "experiment_eval.json"))["ranks"]
            .get<int>();
    };
    const json expected = results(x.out);
    ASSERT_EQ(expected["arms"][0]["runs"].size(), 2u);

    const fs::path side_by_side = x.t.path() / "side_by_side";
    const Cli s = run(two, side_by_side, "");
    ASSERT_EQ(s.rc, 0) << s.err;
    EXPECT_NE(s.err.find("2 runs at a time on 1 rank(s) each"), std::string::npos) << s.err;
    // Runs side by side: each run's lines say whose they are.
    EXPECT_NE(s.err.find("[lr0 seed 2] experiment: lr0 seed 2: held-out accuracy"),
              std::string::npos)
        << s.err;
    EXPECT_EQ(results(side_by_side), expected);
    EXPECT_EQ(ranks_of(side_by_side, "lr0", 2), 1);
    // The trained weights too, byte for byte.
    EXPECT_EQ(read_file(side_by_side / "runs/control/seed-2/checkpoints/step-2/model.safetensors"),
              read_file(x.out / "runs/control/seed-2/checkpoints/step-2/model.safetensors"));

    const fs::path together = x.t.path() / "together";
    const Cli d = run(two, together, " --ranks-per-run 2");
    ASSERT_EQ(d.rc, 0) << d.err;
    EXPECT_NE(d.err.find("1 runs at a time on 2 rank(s) each"), std::string::npos) << d.err;
    EXPECT_EQ(results(together), expected);
    EXPECT_EQ(ranks_of(together, "control", 1), 2);

    // A lost run (its evaluation gone, its checkpoints kept) is redone by whichever group gets it.
    const fs::path lost = side_by_side / "runs/lr0/seed-1/experiment_eval.json";
    fs::remove(lost);
    fs::remove(side_by_side / "results.json");
    const Cli again = run(two, side_by_side, "");
    ASSERT_EQ(again.rc, 0) << again.err;
    EXPECT_NE(again.err.find("3 of 4 runs done"), std::string::npos) << again.err;
    EXPECT_NE(again.err.find("lr0 seed 1 (resuming)"), std::string::npos) << again.err;
    EXPECT_EQ(results(side_by_side), expected);

    // Ranks that groups of the asked size cannot divide are refused before any run.
    const Cli bad = run(two, x.t.path() / "bad", " --ranks-per-run 3");
    EXPECT_NE(bad.rc, 0);
    EXPECT_NE(bad.err.find("--ranks-per-run 3 must divide the number of ranks (2)"),
              std::string::npos)
        << bad.err;
    // One message, from rank 0 (the others wait for the abort).
    EXPECT_EQ(bad.err.find("rank 1 of 2"), std::string::npos) << bad.err;
    EXPECT_FALSE(fs::exists(x.t.path() / "bad"));
    // Ranks started with different experiments (mpirun's A : B form) are refused by name before
    // any run: a different spec, a different --ranks-per-run (which would split the ranks
    // differently and leave them waiting on each other).
    const fs::path other_spec = x.t.path() / "other.yaml";
    write_file_durable(other_spec, read_file(x.spec) + "preset: dapo\n");
    const std::string each = std::string(CRUCIBLE_BINARY) + " experiment run --out " +
                             (x.t.path() / "mixed").string() + " --spec ";
    for (const std::string& second :
         {other_spec.string(), x.spec.string() + " --ranks-per-run 2"}) {
        const Cli mixed =
            run_shell(x.t, std::string(testutil::kMpiEnv) + "OMP_NUM_THREADS=1 mpirun -np 1 " +
                               each + x.spec.string() + " : -np 1 " + each + second);
        EXPECT_NE(mixed.rc, 0) << second;
        EXPECT_NE(mixed.err.find("the experiment (its spec, --out or --ranks-per-run) differs "
                                 "between the ranks"),
                  std::string::npos)
            << mixed.err;
        EXPECT_FALSE(fs::exists(x.t.path() / "mixed" / "runs")) << second;
    }
    const Cli report =
        run_shell(x.t, two + CRUCIBLE_BINARY + " experiment report " + side_by_side.string());
    EXPECT_NE(report.rc, 0);
    EXPECT_NE(report.err.find("only `crucible experiment run` runs across ranks"),
              std::string::npos)
        << report.err;
}

// A run that fails while training says which run it was, and keeps the runs already done; a
// folder another `experiment run` is working on is refused (it would retrain that one's runs).
TEST(Experiment, AFailingRunIsNamedAndABusyFolderIsRefused) {
    TinyExperiment x;
    // The lr0 arm's task file disappears after the configs are checked: its runs fail.
    const fs::path doomed = x.t.path() / "doomed.jsonl";
    write_file_durable(doomed, read_file(x.t.path() / "task.jsonl"));
    std::string spec = read_file(x.spec);
    const std::string arm = "  - name: lr0\n    set: [train.lr=0]\n";
    ASSERT_NE(spec.find(arm), std::string::npos);
    spec.replace(spec.find(arm), arm.size(),
                 "  - name: lr0\n    set: [train.lr=0, task.data=" + doomed.string() + "]\n");
    write_file_durable(x.spec, spec);
    const experiment::ExperimentSpec s = experiment::load_spec(x.spec);
    fs::remove(doomed);
    std::ostringstream log;
    const std::string e = testutil::error_of([&] { experiment::run_experiment(s, x.out, log); });
    EXPECT_NE(e.find("experiment: arm 'lr0' seed 1: "), std::string::npos) << e;
    EXPECT_NE(e.find("doomed.jsonl"), std::string::npos) << e;
    // The control's runs came first and are kept: a rerun does not train them again.
    EXPECT_TRUE(fs::exists(x.out / "runs/control/seed-1/experiment_eval.json"));
    EXPECT_TRUE(fs::exists(x.out / "runs/control/seed-2/experiment_eval.json"));

    // Another process holds the folder: refused before any run, and nothing of it touched.
    write_file_durable(doomed, read_file(x.t.path() / "task.jsonl"));
    const int fd = ::open((x.out / ".lock").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    const pid_t child = fork();  // flock locks belong to the open file: another process tries
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::ostringstream l;
        const std::string busy =
            testutil::error_of([&] { experiment::run_experiment(s, x.out, l); });
        _exit(busy.find("another `crucible experiment run` is working on this folder") !=
                      std::string::npos
                  ? 0
                  : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_FALSE(fs::exists(x.out / "runs/lr0/seed-1/experiment_eval.json"));
    ::close(fd);
    // Released: the rerun trains only the failed arm's runs.
    std::ostringstream again;
    experiment::run_experiment(s, x.out, again);
    EXPECT_NE(again.str().find("2 of 4 runs done"), std::string::npos) << again.str();
    EXPECT_TRUE(fs::exists(x.out / "runs/lr0/seed-2/experiment_eval.json"));
}

// Bad specs: one message naming the file and the field, before any run starts.
TEST(Experiment, BadSpecsAreRefusedNamingTheField) {
    TempDir t;
    auto error_for = [&](const std::string& yaml) {
        const fs::path f = t.path() / "bad.yaml";
        write_file_durable(f, yaml);
        return testutil::error_of([&] {
            std::ostringstream log;
            experiment::run_experiment(experiment::load_spec(f), t.path() / "out", log);
        });
    };
    const std::string two_arms = "arms: [{name: a}, {name: b}]\n";
    EXPECT_NE(error_for(two_arms + "seeds: [1]\nevals: {items: 3}\n").find("'evals'"),
              std::string::npos);
    EXPECT_NE(error_for("arms: [{name: a}]\nseeds: [1]\n").find("at least two arms"),
              std::string::npos);
    EXPECT_NE(error_for(two_arms + "seeds: []\n").find("at least one seed"), std::string::npos);
    EXPECT_NE(error_for(two_arms + "seeds: [1, 1]\n").find("a seed twice"), std::string::npos);
    EXPECT_NE(error_for("arms: [{name: a}, {name: a}]\nseeds: [1]\n").find("named twice"),
              std::string::npos);
    EXPECT_NE(error_for("arms: [{name: a}, {name: ../b}]\nseeds: [1]\n").find("'arms[1].name'"),
              std::string::npos);
    EXPECT_NE(error_for(two_arms + "seeds: [1]\neval: {samples: 0}\n").find("eval.samples"),
              std::string::npos);
    EXPECT_NE(error_for(two_arms + "seeds: [1]\nbootstrap: {resamples: 1e12}\n")
                  .find("bootstrap.resamples"),
              std::string::npos);
    const std::string bad_preset =
        error_for("arms: [{name: a}, {name: b, preset: grpo2}]\nseeds: [1]\n");
    EXPECT_NE(bad_preset.find("arm 'b'"), std::string::npos) << bad_preset;
    EXPECT_NE(bad_preset.find("grpo2"), std::string::npos) << bad_preset;
    const std::string bad_key =
        error_for("arms: [{name: a}, {name: b, set: [algorithm.nope=1]}]\nseeds: [1]\n");
    EXPECT_NE(bad_key.find("arm 'b'"), std::string::npos) << bad_key;
    EXPECT_NE(bad_key.find("algorithm.nope"), std::string::npos) << bad_key;
    EXPECT_FALSE(fs::exists(t.path() / "out"));
}

}  // namespace
}  // namespace crucible
