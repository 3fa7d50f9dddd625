// The RL loop end to end on a tiny random model: it runs, the policy moves towards the reward,
// resume is bit-identical, failing rewards are contained, dynamic sampling refills, and bad
// configs are refused naming the keys. Plus a shortened `crucible demo`.
#include "rl/rl_trainer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "demo/demo.h"
#include "http_test_server.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "rl/presets.h"
#include "rl/rl_config.h"
#include "run/run_folder.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::rl {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

fs::path tiny_model(const fs::path& dir) {
    const ModelConfig c = testutil::tiny_gqa_config();
    Model m(c);
    m.init_random(3);
    const fs::path out = dir / "model";
    fs::create_directories(out);
    save_model(m, out);
    ByteTokenizer::save_hf_files(out, c.max_position_embeddings);
    return out;
}

Config tiny_config(const fs::path& dir, const fs::path& model) {
    Config c(kRlConfigDefaults);
    c.set("run.dir=" + dir.string());
    c.set("run.name=run");
    c.set("model.path=" + model.string());
    c.set("task.train_examples=200");
    c.set("task.eval_examples=8");
    c.set("rewards.correct=0");  // a random model never solves Countdown: the test reward leads
    c.set("rewards.soft_overlong=0");
    c.set("rollout.prompts_per_step=4");
    c.set("rollout.samples_per_prompt=4");
    c.set("rollout.max_new_tokens=6");
    c.set("train.steps=6");
    c.set("train.lr=1e-2");
    c.set("train.warmup_steps=0");
    c.set("train.checkpoint_every=2");
    c.set("train.eval_every=0");
    c.set("train.eval_problems=4");
    c.set("train.eval_samples=2");
    c.set("train.log_every=100");
    return c;
}

// The share of completion tokens with ids below 128 (ASCII bytes): a dense, graded reward that
// a random policy earns about half of.
RewardFunction low_ids() {
    return {"low_ids", 1.0,
            [](const TaskItem&, const std::string&, const std::vector<int32_t>& ids, bool) {
                if (ids.empty()) return 0.0;
                double n = 0;
                for (int32_t id : ids) n += id < 128;
                return n / static_cast<double>(ids.size());
            }};
}

using testutil::read_jsonl;

TEST(RlTrainer, MovesThePolicyTowardsTheReward) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    Config c = tiny_config(dir.path(), model);
    c.set("train.steps=30");
    std::ostringstream log;
    RlTrainer trainer(c, false, log, {low_ids()});
    const auto before = std::vector<float>(trainer.model().params(),
                                           trainer.model().params() + trainer.model().num_params());
    trainer.run();
    const auto metrics = read_jsonl(dir.path() / "run" / "metrics.jsonl");
    ASSERT_EQ(metrics.size(), 30u);
    for (const json& m : metrics) {
        EXPECT_TRUE(std::isfinite(m["loss"].get<double>())) << m.dump();
        EXPECT_TRUE(std::isfinite(m["grad_norm"].get<double>())) << m.dump();
        EXPECT_TRUE(m.contains("reward/low_ids"));
    }
    double moved = 0;
    for (size_t i = 0; i < before.size(); i++)
        moved += std::abs(before[i] - trainer.model().params()[i]);
    EXPECT_GT(moved, 0.0);
    // A random policy earns about half; 30 steps at lr 1e-2 take it most of the way to 1.
    auto mean_reward = [&](size_t from) {
        double sum = 0;
        for (size_t i = from; i < from + 3; i++) sum += metrics[i]["reward/low_ids"].get<double>();
        return sum / 3;
    };
    EXPECT_GT(mean_reward(27), mean_reward(0) + 0.25)
        << "the policy did not learn to prefer low ids: " << mean_reward(0) << " -> "
        << mean_reward(27);
    const auto samples = read_jsonl(dir.path() / "run" / "samples.jsonl");
    EXPECT_GE(samples.size(), 30u * 16u);
    EXPECT_TRUE(samples[0].contains("advantage"));
    EXPECT_TRUE(samples[0]["rewards"].contains("low_ids"));
}

// docs/RL.md: pi_old's log-probabilities come from the trainer's own forward over the same
// packed micro-batches (a separate scoring pass for every mini-batch after the first), so
// with unchanged weights (lr = 0) every ratio of every mini-batch and pass is exactly 1 and
// nothing clips. With lr > 0 and one pass (mu = 1, as DAPO) the later mini-batches are
// off-policy: the ratio moves and the clip acts. (Were pi_old taken in each mini-batch's own
// forward, the one-pass run would show ratio 1 and no clipping, and this test would fail.)
// The same holds with bfloat16 matmuls: sampling and training share the kernels and the bf16
// copy of the weights.
TEST(RlTrainer, SeveralMiniBatchesAtLrZeroHaveEveryRatioExactlyOne) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    double max_off = 0.0, clipped = 0.0;
    for (const std::string dtype : {"float32", "bfloat16"})
        for (const char* lr : {"0", "5e-2"}) {
            const bool zero = std::string(lr) == "0";
            Config c = tiny_config(dir.path(), model);
            c.set(std::string("run.name=lr") + lr + dtype);
            c.set("train.dtype=" + dtype);
            c.set("train.steps=3");
            c.set(std::string("train.lr=") + lr);
            c.set("algorithm.minibatches=4");
            c.set(std::string("algorithm.updates_per_batch=") + (zero ? "2" : "1"));
            c.set("algorithm.clip_low=0.02");
            c.set("algorithm.clip_high=0.02");
            std::ostringstream log;
            RlTrainer trainer(c, false, log, {low_ids()});
            trainer.run();
            for (const json& m : read_jsonl(trainer.run_dir() / "metrics.jsonl")) {
                EXPECT_EQ(m["optimizer_steps"].get<int64_t>() % (zero ? 8 : 4), 0) << m.dump();
                if (zero) {
                    EXPECT_EQ(m["ratio_mean"].get<double>(), 1.0) << m.dump();
                    EXPECT_EQ(m["clip_frac_low"].get<double>(), 0.0) << m.dump();
                    EXPECT_EQ(m["clip_frac_high"].get<double>(), 0.0) << m.dump();
                } else {
                    max_off = std::max(max_off, std::abs(m["ratio_mean"].get<double>() - 1.0));
                    clipped += m["clip_frac_low"].get<double>() + m["clip_frac_high"].get<double>();
                }
            }
        }
    EXPECT_GT(max_off, 1e-4);
    EXPECT_GT(clipped, 0.0);
}

// Gradient accumulation changes nothing: one step's gradient from one micro-batch equals the
// sum over four (the loss normaliser is the whole mini-batch's), up to float rounding.
TEST(RlTrainer, GradientAccumulationOverMicroBatchesMatchesOneBatch) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    std::vector<std::vector<float>> grads;
    std::vector<json> lines;
    for (const char* rows : {"4096", "48"}) {
        Config c = tiny_config(dir.path(), model);
        c.set(std::string("run.name=mb") + rows);
        c.set("train.steps=1");
        c.set("train.lr=0");  // the gradient is taken at the starting weights on both sides
        c.set("train.grad_clip=0");
        c.set(std::string("train.micro_batch_tokens=") + rows);
        std::ostringstream log;
        RlTrainer trainer(c, false, log, {low_ids()});
        trainer.run();
        const Model& m = trainer.model();
        grads.emplace_back(m.grads(), m.grads() + m.num_params());
        lines.push_back(read_jsonl(trainer.run_dir() / "metrics.jsonl").at(0));
    }
    EXPECT_EQ(lines[0]["micro_batches"].get<int>(), 1);
    EXPECT_GE(lines[1]["micro_batches"].get<int>(), 4);
    EXPECT_NEAR(lines[0]["loss"].get<double>(), lines[1]["loss"].get<double>(), 1e-6);
    float scale = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < grads[0].size(); i++) {
        scale = std::max(scale, std::abs(grads[0][i]));
        diff = std::max(diff, std::abs(grads[0][i] - grads[1][i]));
    }
    ASSERT_GT(scale, 0.0f);
    EXPECT_LE(diff, 1e-5f * scale) << "max |difference| " << diff << " of max |grad| " << scale;
}

// A task of the test's own with correctness and format credit (as Countdown's TinyZero rules
// give): a completion is correct when its first byte is below 32 and earns 0.1 format credit
// when its first byte is in [32, 160) and it is not correct. Items with an odd index are never
// correct, so their groups are all wrong. Held-out items: even ones are always correct, odd
// ones never, with 0.1 credit (held-out accuracy is exactly 1/2; with the credit, 0.55).
Task byte_task(int n_train, int n_eval) {
    Task t;
    t.name = "first_byte";
    for (int i = 0; i < n_train + n_eval; i++) {
        TaskItem item;
        item.id = (i < n_train ? "train-" : "eval-") + std::to_string(i);
        item.prompt = "say " + std::to_string(i) + ":";
        for (unsigned char ch : item.prompt) item.prompt_ids.push_back(ch);
        item.index = i < n_train ? i : i - n_train;
        (i < n_train ? t.train : t.eval).push_back(std::move(item));
    }
    t.score = [](const TaskItem& item, const std::string& text) {
        const int b = text.empty() ? -1 : static_cast<unsigned char>(text[0]);
        TaskScore s;
        if (item.id.rfind("eval-", 0) == 0) {  // held out: even correct, odd 0.1 credit
            s.correct = item.index % 2 == 0 ? 1.0 : 0.0;
            s.format = item.index % 2 == 0 ? 0.0 : 0.1;
            return s;
        }
        s.correct = item.index % 2 == 0 && b >= 0 && b < 32 ? 1.0 : 0.0;
        s.format = *s.correct == 0.0 && b >= 32 && b < 160 ? 0.1 : 0.0;
        return s;
    };
    t.has_format_credit = true;
    return t;
}

// `accuracy` and `eval_accuracy` count fully correct samples only; the 0.1 format credit is in
// the reward and in its own component, recomputed here from the logged completions.
TEST(RlTrainer, AccuracyIsTheFractionOfFullyCorrectSamples) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    Config c = tiny_config(dir.path(), model);
    c.set("rewards.correct=1");
    c.set("train.steps=2");
    c.set("train.eval_every=1");
    c.set("train.eval_samples=4");
    std::ostringstream log;
    RlTrainer trainer(c, false, log, {}, byte_task(40, 8));
    trainer.run();
    const auto metrics = read_jsonl(trainer.run_dir() / "metrics.jsonl");
    const auto samples = read_jsonl(trainer.run_dir() / "samples.jsonl");
    double credit_total = 0.0;
    for (int64_t step = 1; step <= 2; step++) {
        double n = 0, correct = 0, format = 0, reward = 0;
        for (const json& s : samples) {
            if (s["step"] != step) continue;
            const std::string text = s["completion"];
            const std::string id = s["item"];
            const bool even = std::stoi(id.substr(id.find('-') + 1)) % 2 == 0;
            const int b = text.empty() ? -1 : static_cast<unsigned char>(text[0]);
            const bool ok = even && b >= 0 && b < 32;
            const double credit = !ok && b >= 32 && b < 160 ? 0.1 : 0.0;
            EXPECT_EQ(s["rewards"]["correct"].get<double>(), ok ? 1.0 : 0.0) << s.dump();
            EXPECT_EQ(s["rewards"]["format"].get<double>(), credit) << s.dump();
            EXPECT_DOUBLE_EQ(s["reward"].get<double>(), (ok ? 1.0 : 0.0) + credit);
            n++;
            correct += ok;
            format += credit;
            reward += (ok ? 1.0 : 0.0) + credit;
        }
        const json& m = metrics[step - 1];
        ASSERT_GT(n, 0);
        EXPECT_DOUBLE_EQ(m["accuracy"].get<double>(), correct / n) << m.dump();
        EXPECT_NEAR(m["reward/format"].get<double>(), format / n, 1e-12);
        EXPECT_NEAR(m["reward_mean"].get<double>(), reward / n, 1e-12);
        credit_total += format;
    }
    EXPECT_GT(credit_total, 0.0);  // the test saw format credit that accuracy had to leave out
    const TaskEvaluation ev = trainer.evaluate();  // 4 held-out problems (2 even) x 4 samples
    EXPECT_EQ(ev.mean, 0.5);
    EXPECT_EQ(ev.failures, 0);
    EXPECT_EQ(metrics[0]["eval_accuracy"].get<double>(), 0.5);
    EXPECT_EQ(metrics[1]["eval_accuracy"].get<double>(), 0.5);
}

// Refused at start: training items that no weighted component pays (rubric-only lines with
// the default rewards.rubric 0 trained on nothing and printed "done"); a gold answer that the
// verifier matches with an empty completion. At run time a verdict other than 0 or 1 marks
// the sample invalid (accuracy counts only fully correct samples), a weighted sum that
// overflows too, and a held-out verdict that throws is a counted failure, not a stop.
TEST(RlTrainer, RewardsThatPayNothingOrTheEmptyAnswerAreRefused) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    std::ostringstream log;
    const fs::path rubric_only =
        dir.write("r.jsonl",
                  "{\"prompt\": \"a\", \"rubric\": [{\"criterion\": \"c\", \"kind\": \"regex\", "
                  "\"pattern\": \"a\", \"points\": 1}]}\n");
    Config c = tiny_config(dir.path(), model);
    c.set("task.name=jsonl");
    c.set("task.data=" + rubric_only.string());
    c.set("rewards.correct=1");
    std::string e = testutil::error_of([&] { RlTrainer t(c, false, log); });
    EXPECT_NE(e.find("rewards.rubric"), std::string::npos) << e;
    const fs::path regex_empty =
        dir.write("x.jsonl", "{\"prompt\": \"a\", \"answer\": \"4?\", \"verifier\": \"regex\"}\n");
    c.set("task.data=" + regex_empty.string());
    e = testutil::error_of([&] { RlTrainer t(c, false, log); });
    EXPECT_NE(e.find("x.jsonl:1"), std::string::npos) << e;
    EXPECT_NE(e.find("empty completion"), std::string::npos) << e;

    Task half = byte_task(8, 4);
    half.score = [](const TaskItem& item, const std::string&) {
        if (item.id.rfind("eval-", 0) == 0 && item.index == 1) throw std::runtime_error("boom");
        TaskScore s;
        s.correct = item.index % 2 == 0 ? 0.5 : 1.0;  // 0.5 is not a verdict
        return s;
    };
    Config h = tiny_config(dir.path(), model);
    h.set("run.name=half");
    h.set("rewards.correct=1");
    h.set("train.steps=1");
    RlTrainer t(h, false, log, {}, half);
    t.run();
    for (const json& s : read_jsonl(t.run_dir() / "samples.jsonl")) {
        const std::string id = s["item"];
        const bool even = std::stoi(id.substr(id.find('-') + 1)) % 2 == 0;
        EXPECT_EQ(s.contains("error"), even) << s.dump();
        if (even) {
            EXPECT_TRUE(s["reward"].is_null());
        }
    }
    const json m = read_jsonl(t.run_dir() / "metrics.jsonl").at(0);
    EXPECT_EQ(m["accuracy"].get<double>(), 1.0) << m.dump();  // only the 1.0 verdicts count
    // Held-out items 0 and 2 (verdict 0.5) and 1 (throws), 2 samples each, fail; item 3 is
    // correct.
    EXPECT_EQ(m["eval_failures"].get<int>(), 6) << m.dump();
    EXPECT_EQ(m["eval_accuracy"].get<double>(), 1.0) << m.dump();
    // A weight that overflows the sum marks the sample, it does not train on inf.
    Config big = tiny_config(dir.path(), model);
    big.set("run.name=big");
    big.set("train.steps=1");
    RlTrainer b(big, false, log,
                {{"huge", 1e308,
                  [](const TaskItem&, const std::string&, const std::vector<int32_t>&, bool) {
                      return std::optional<double>(1e308);
                  }}});
    b.run();
    EXPECT_EQ(read_jsonl(b.run_dir() / "metrics.jsonl").at(0)["invalid_samples"].get<int>(), 16);
}

// Dynamic sampling drops the groups that are all right or all wrong (DAPO; verl's
// filter_groups metric acc) even when a shaping reward makes their rewards differ; with
// metric reward those groups would be kept.
TEST(RlTrainer, DynamicSamplingFiltersOnAccuracyByDefault) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    for (const char* metric : {"accuracy", "reward"}) {
        Config c = tiny_config(dir.path(), model);
        c.set(std::string("run.name=") + metric);
        c.set("rewards.correct=1");
        c.set("train.steps=2");
        c.set("algorithm.dynamic_sampling=true");
        if (std::string(metric) == "reward") c.set("algorithm.dynamic_sampling_metric=reward");
        std::ostringstream log;
        RlTrainer trainer(c, false, log, {low_ids()}, byte_task(40, 4));
        trainer.run();
        std::map<std::pair<int, int>, std::vector<json>> groups;  // (step, group) -> samples
        for (const json& s : read_jsonl(trainer.run_dir() / "samples.jsonl"))
            groups[{s["step"].get<int>(), s["group"].get<int>()}].push_back(s);
        int kept_all_same = 0, kept = 0;
        for (const auto& [key, g] : groups) {
            double lo = 2, hi = -1;
            for (const json& s : g) {
                lo = std::min(lo, s["rewards"]["correct"].get<double>());
                hi = std::max(hi, s["rewards"]["correct"].get<double>());
            }
            if (!g[0]["kept"].get<bool>()) continue;
            kept++;
            kept_all_same += lo == hi;
        }
        EXPECT_GT(kept, 0) << metric;
        if (std::string(metric) == "accuracy") {
            EXPECT_EQ(kept_all_same, 0);
        } else {
            EXPECT_GT(kept_all_same, 0);  // odd items: all wrong, rewards differ by low_ids
        }
    }
    // Accuracy needs a gold answer on every training item.
    testutil::TempDir d2;
    const fs::path data =
        d2.write("r.jsonl",
                 "{\"prompt\": \"a\", \"rubric\": [{\"criterion\": \"c\", \"kind\": \"regex\", "
                 "\"pattern\": \"a\", \"points\": 1}]}\n");
    Config c = tiny_config(d2.path(), model);
    c.set("task.name=jsonl");
    c.set("task.data=" + data.string());
    c.set("algorithm.dynamic_sampling=true");
    std::ostringstream log;
    const std::string e = testutil::error_of([&] { RlTrainer t(c, false, log); });
    EXPECT_NE(e.find("algorithm.dynamic_sampling_metric"), std::string::npos) << e;
}

TEST(RlTrainer, ResumeAfterAStopIsBitIdentical) {
    testutil::TempDir a_dir, b_dir;
    const fs::path model = tiny_model(a_dir.path());
    for (const char* opt : {"algorithm.minibatches=2", "algorithm.updates_per_batch=2"}) {
        Config a = tiny_config(a_dir.path(), model);
        Config b = tiny_config(b_dir.path(), model);
        a.set(opt);
        b.set(opt);
        a.set(std::string("run.name=") + (opt[10] == 'm' ? "mb" : "mu"));
        b.set(std::string("run.name=") + (opt[10] == 'm' ? "mb" : "mu"));
        std::ostringstream log;
        RlTrainer straight(a, false, log, {low_ids()});
        straight.run();
        {
            RlTrainer first(b, false, log, {low_ids()});
            first.run(4);  // checkpoints at 2 and 4, then "crashes"
        }
        // Simulate a kill after step 5's logs were written but before its checkpoint.
        {
            std::ofstream(b_dir.path() / a.get_string("run.name") / "metrics.jsonl", std::ios::app)
                << "{\"step\": 5, \"torn\": tr";
        }
        RlTrainer resumed(b, true, log, {low_ids()});
        EXPECT_EQ(resumed.step(), 4);
        resumed.run();
        ASSERT_EQ(straight.model().num_params(), resumed.model().num_params());
        EXPECT_EQ(0, std::memcmp(straight.model().params(), resumed.model().params(),
                                 straight.model().num_params() * sizeof(float)))
            << opt;
        const auto ma = read_jsonl(straight.run_dir() / "metrics.jsonl");
        const auto mb = read_jsonl(resumed.run_dir() / "metrics.jsonl");
        ASSERT_EQ(ma.size(), mb.size());
        for (size_t i = 0; i < ma.size(); i++) {
            for (const char* key : {"loss", "reward_mean", "grad_norm", "clip_frac_high"}) {
                EXPECT_EQ(ma[i][key], mb[i][key]) << opt << " step " << i + 1 << " " << key;
            }
        }
        // Several updates per batch: later updates are off-policy, so ratios move off 1.
        EXPECT_NE(ma.back()["ratio_mean"].get<double>(), 1.0) << opt;
        EXPECT_EQ(testutil::slurp(straight.checkpoint_dir(6) / "optimizer.safetensors"),
                  testutil::slurp(resumed.checkpoint_dir(6) / "optimizer.safetensors"));
    }
}

// A full disk under samples.jsonl stops the run between steps with an error naming the file
// (before, the lines were lost and the run went on); the step is not checkpointed, and a
// resume from the last checkpoint finishes the run with every step logged once.
TEST(RlTrainer, AFullDiskUnderTheLogsStopsTheRunAndResumeFinishesIt) {
    if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    Config c = tiny_config(dir.path(), model);
    c.set("train.steps=4");
    c.set("train.checkpoint_every=1");
    std::ostringstream log;
    const fs::path samples = dir.path() / "run" / "samples.jsonl";
    std::string msg;
    {
        RlTrainer t(c, false, log, {low_ids()});
        t.run(2);
        const std::string kept = testutil::slurp(samples);
        fs::remove(samples);
        fs::create_symlink("/dev/full", samples);  // every write fails with ENOSPC
        try {
            t.run();
        } catch (const Error& e) {
            msg = e.what();
        }
        fs::remove(samples);
        std::ofstream(samples) << kept;
    }
    EXPECT_NE(msg.find(samples.string()), std::string::npos) << msg;
    EXPECT_EQ(latest_checkpoint(dir.path() / "run" / "checkpoints"), 2);
    RlTrainer resumed(c, true, log, {low_ids()});
    resumed.run();
    int64_t step = 0;
    for (const json& m : read_jsonl(dir.path() / "run" / "metrics.jsonl"))
        EXPECT_EQ(m["step"].get<int64_t>(), ++step);
    EXPECT_EQ(step, 4);
    int64_t last = 0;
    for (const json& s : read_jsonl(samples)) {
        EXPECT_GE(s["step"].get<int64_t>(), last);
        last = s["step"].get<int64_t>();
    }
    EXPECT_EQ(last, 4);
}

TEST(RlTrainer, FailingRewardsMarkSamplesAndNeverStopTheRun) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    Config c = tiny_config(dir.path(), model);
    c.set("train.steps=2");
    int calls = 0;
    RewardFunction flaky{
        "flaky", 1.0,
        [&calls](const TaskItem&, const std::string&, const std::vector<int32_t>&, bool) -> double {
            calls++;
            if (calls % 3 == 0) throw std::runtime_error("judge unreachable");
            if (calls % 3 == 1) return std::nan("");
            return 1.0;
        }};
    std::ostringstream log;
    RlTrainer trainer(c, false, log, {low_ids(), flaky});
    trainer.run();
    const auto metrics = read_jsonl(dir.path() / "run" / "metrics.jsonl");
    ASSERT_EQ(metrics.size(), 2u);
    EXPECT_GT(metrics[0]["invalid_samples"].get<int>(), 0);
    int errors = 0, nan_errors = 0;
    for (const json& s : read_jsonl(dir.path() / "run" / "samples.jsonl")) {
        if (!s.contains("error")) continue;
        errors++;
        EXPECT_TRUE(s["reward"].is_null());
        EXPECT_FALSE(s["in_loss"].get<bool>());
        const std::string e = s["error"];
        nan_errors += e.find("not a finite number") != std::string::npos;
        EXPECT_TRUE(e.find("judge unreachable") != std::string::npos ||
                    e.find("not a finite number") != std::string::npos)
            << e;
    }
    EXPECT_GT(errors, 0);
    EXPECT_GT(nan_errors, 0);
}

TEST(RlTrainer, DynamicSamplingDropsUninformativeGroupsAndRefills) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    // Items with an even index always score 1: their groups have zero reward variance.
    RewardFunction half{
        "half", 1.0,
        [](const TaskItem& item, const std::string& text, const std::vector<int32_t>& ids, bool) {
            if (item.index % 2 == 0) return 1.0;
            return static_cast<double>(text.size() + ids.size() % 3);
        }};
    for (int rounds : {1, 3}) {
        Config c = tiny_config(dir.path(), model);
        c.set("run.name=r" + std::to_string(rounds));
        c.set("train.steps=1");
        c.set("algorithm.dynamic_sampling=true");
        c.set("algorithm.dynamic_sampling_metric=reward");  // the task's correctness is all 0
        c.set("algorithm.max_generation_batches=" + std::to_string(rounds));
        std::ostringstream log;
        RlTrainer trainer(c, false, log, {half});
        trainer.run();
        const json m = read_jsonl(trainer.run_dir() / "metrics.jsonl").at(0);
        int kept_even = 0, kept = 0;
        for (const json& s : read_jsonl(trainer.run_dir() / "samples.jsonl")) {
            if (!s["kept"].get<bool>()) continue;
            kept++;
            const std::string id = s["item"];
            kept_even += std::stoi(id.substr(id.find('-') + 1)) % 2 == 0;
        }
        EXPECT_EQ(kept_even, 0);  // never trains on a zero-variance group
        EXPECT_GT(m["frac_reward_zero_std"].get<double>(), 0.0);
        if (rounds == 1) {
            EXPECT_EQ(m["generation_rounds"].get<int>(), 1);
            EXPECT_LT(m["groups_kept"].get<int>(), 4);  // no refill: a short batch
        } else {
            EXPECT_GT(m["generation_rounds"].get<int>(), 1);
            EXPECT_EQ(m["groups_kept"].get<int>(), 4);  // refilled to prompts_per_step
            EXPECT_EQ(kept, 16);
        }
    }
}

TEST(RlTrainer, OverlongFilteringMasksTruncatedSamples) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    Config c = tiny_config(dir.path(), model);
    c.set("train.steps=1");
    c.set("rollout.max_new_tokens=2");
    c.set("algorithm.overlong_filter=true");
    c.set("algorithm.dynamic_sampling=false");
    std::ostringstream log;
    RlTrainer trainer(c, false, log, {low_ids()});
    trainer.run();
    int truncated = 0;
    for (const json& s : read_jsonl(trainer.run_dir() / "samples.jsonl")) {
        if (s["finish_reason"] == "length") {
            truncated++;
            EXPECT_FALSE(s["in_loss"].get<bool>());
        } else {
            EXPECT_TRUE(s["in_loss"].get<bool>());
        }
    }
    EXPECT_GT(truncated, 0);
}

TEST(RlTrainer, ConflictingOrBadConfigsNameTheKeys) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    auto error_with = [&](std::vector<std::string> sets) {
        Config c = tiny_config(dir.path(), model);
        c.set("rewards.correct=1");  // something pays every item, so the checks below are reached
        for (const auto& s : sets) c.set(s);
        std::ostringstream log;
        return testutil::error_of([&] { RlTrainer t(c, false, log); });
    };
    std::string e = error_with({"algorithm.ratio=sequence", "algorithm.dual_clip=3"});
    EXPECT_NE(e.find("algorithm.dual_clip"), std::string::npos) << e;
    EXPECT_NE(e.find("algorithm.ratio"), std::string::npos) << e;
    e = error_with({"rollout.samples_per_prompt=1"});
    EXPECT_NE(e.find("rollout.samples_per_prompt"), std::string::npos) << e;
    e = error_with({"algorithm.loss_aggregation=mean"});
    EXPECT_NE(e.find("algorithm.loss_aggregation"), std::string::npos) << e;
    e = error_with({"rollout.max_new_tokens=60"});
    EXPECT_NE(e.find("max_position_embeddings"), std::string::npos) << e;
    e = error_with({"task.name=jsonl"});
    EXPECT_NE(e.find("task.data"), std::string::npos) << e;
    Config c(kRlConfigDefaults);
    e = testutil::error_of([&] { c.set("algorithm.clip_hi=0.3"); });
    EXPECT_NE(e.find("algorithm.clip_hi"), std::string::npos) << e;
}

// `n` task jsonl lines "say i:" with a rubric only: one regex criterion worth 1 point, met
// when the completion holds a letter a-m.
std::string letter_rubric_items(int n) {
    std::string lines;
    for (int i = 0; i < n; i++) {
        lines += "{\"prompt\": \"say " + std::to_string(i) +
                 ":\", \"rubric\": [{\"criterion\": \"has a letter a-m\", \"kind\": "
                 "\"regex\", \"pattern\": \"[a-m]\", \"points\": 1}]}\n";
    }
    return lines;
}

// `rewards.rubric`: each rollout is scored by its item's rubric (here one programmatic regex
// criterion worth 1 point, so the HealthBench score is 1 when the completion has a letter
// a-m and 0 otherwise), logged as a reward component.
TEST(RlTrainer, RubricRewardScoresEachRolloutByItsItemsRubric) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    const fs::path data = dir.write("rubric.jsonl", letter_rubric_items(8));
    Config c = tiny_config(dir.path(), model);
    c.set("task.name=jsonl");
    c.set("task.data=" + data.string());
    c.set("rewards.rubric=1");
    c.set("train.steps=2");
    c.set("algorithm.dynamic_sampling=false");
    std::ostringstream log;
    RlTrainer trainer(c, false, log);
    trainer.run();
    int met = 0, n = 0;
    for (const json& s : read_jsonl(trainer.run_dir() / "samples.jsonl")) {
        const std::string text = s["completion"];
        bool has = false;
        for (char ch : text) has = has || (ch >= 'a' && ch <= 'm');
        ASSERT_TRUE(s["rewards"].contains("rubric")) << s.dump();
        EXPECT_EQ(s["rewards"]["rubric"].get<double>(), has ? 1.0 : 0.0) << text;
        EXPECT_EQ(s["reward"].get<double>(), has ? 1.0 : 0.0);  // correct: 0, soft_overlong: 0
        met += has;
        n++;
    }
    EXPECT_EQ(n, 2 * 16);
    EXPECT_GT(met, 0);
    EXPECT_LT(met, n);
    const json m = read_jsonl(trainer.run_dir() / "metrics.jsonl").back();
    EXPECT_TRUE(m.contains("reward/rubric"));
    EXPECT_TRUE(m.contains("judge"));
    // Items without a rubric are refused when the rubric reward is on.
    Config bad = tiny_config(dir.path(), model);
    bad.set("run.name=bad");
    bad.set("rewards.rubric=1");
    const std::string e = testutil::error_of([&] { RlTrainer t(bad, false, log); });
    EXPECT_NE(e.find("rewards.rubric"), std::string::npos) << e;
}

// With the default rewards.correct = 1, a rubric-only item has no `correct` component at all:
// the empty completion, which the exact verifier once matched against the missing answer
// (paying +1 for ending at once), earns only its rubric score.
TEST(RlTrainer, RubricOnlyItemsHaveNoCorrectComponent) {
    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    const fs::path data = dir.write("rubric.jsonl", letter_rubric_items(8));
    Config c = tiny_config(dir.path(), model);
    c.set("task.name=jsonl");
    c.set("task.data=" + data.string());
    c.set("rewards.correct=1");
    c.set("rewards.rubric=1");
    c.set("train.steps=2");
    std::ostringstream log;
    // A library reward that applies to no item: absent everywhere, not a 0.
    RewardFunction empty_probe{
        "probe", 0.0, [](const TaskItem&, const std::string&, const std::vector<int32_t>&, bool) {
            return std::optional<double>();  // applies to no item: never logged
        }};
    RlTrainer trainer(c, false, log, {empty_probe});
    trainer.run();
    int n = 0;
    for (const json& s : read_jsonl(trainer.run_dir() / "samples.jsonl")) {
        EXPECT_FALSE(s["rewards"].contains("correct")) << s.dump();
        EXPECT_FALSE(s["rewards"].contains("probe")) << s.dump();
        EXPECT_EQ(s["reward"].get<double>(), s["rewards"]["rubric"].get<double>()) << s.dump();
        n++;
    }
    EXPECT_EQ(n, 2 * 16);
    const json m = read_jsonl(trainer.run_dir() / "metrics.jsonl").back();
    EXPECT_FALSE(m.contains("accuracy")) << m.dump();  // nothing to be correct about
    EXPECT_FALSE(m.contains("reward/correct")) << m.dump();
}

// The rubric reward with an LLM judge over real HTTP: a scripted OpenAI-compatible judge says
// "met" when the response under judgement holds a letter a-m, and answers malformed JSON (on
// every attempt) when it holds a digit. Those samples are marked invalid with the judge's
// reason and left out of the update; the run goes on.
TEST(RlTrainer, RubricJudgeOverHttpScoresAndItsFailuresAreExcluded) {
    testutil::TestServer judge;
    std::atomic<int> requests{0};
    judge.http().Post("/v1/chat/completions", [&](const httplib::Request& req,
                                                  httplib::Response& res) {
        requests++;
        const json body = json::parse(req.body);
        const std::string user = body["messages"][1]["content"].get<std::string>();
        const size_t b = user.find(">>>\n", user.find("<<<BEGIN RESPONSE ")) + 4;
        const std::string response = user.substr(b, user.find("\n<<<END RESPONSE", b) - b);
        bool letter = false, digit = false;
        for (char ch : response) {
            letter = letter || (ch >= 'a' && ch <= 'm');
            digit = digit || (ch >= '0' && ch <= '9');
        }
        const std::string content =
            digit ? "not json" : json{{"explanation", "checked"}, {"criteria_met", letter}}.dump();
        const json out{
            {"id", "chatcmpl-1"},
            {"object", "chat.completion"},
            {"model", body.value("model", "")},
            {"choices",
             {{{"index", 0},
               {"message", {{"role", "assistant"}, {"content", content}}},
               {"finish_reason", "stop"}}}},
            {"usage", {{"prompt_tokens", 50}, {"completion_tokens", 5}, {"total_tokens", 55}}}};
        res.set_content(out.dump(), "application/json");
    });

    testutil::TempDir dir;
    const fs::path model = tiny_model(dir.path());
    std::string lines;
    for (int i = 0; i < 8; i++) {
        lines +=
            "{\"prompt\": \"say " + std::to_string(i) +
            ":\", \"rubric\": [{\"criterion\": \"Uses a letter from a to m\", \"points\": 2}]}\n";
    }
    Config c = tiny_config(dir.path(), model);
    c.set("task.name=jsonl");
    c.set("task.data=" + dir.write("rubric.jsonl", lines).string());
    c.set("rewards.rubric=1");
    c.set("rubric.judge=openai:" + judge.base_url() + "#judge");
    c.set("train.steps=2");
    c.set("algorithm.dynamic_sampling=false");
    std::ostringstream log;
    {
        RlTrainer trainer(c, false, log);
        trainer.run();
    }

    int met = 0, unmet = 0, failed = 0;
    for (const json& s : read_jsonl(dir.path() / "run" / "samples.jsonl")) {
        const std::string text = s["completion"];
        bool letter = false, digit = false;
        for (char ch : text) {
            letter = letter || (ch >= 'a' && ch <= 'm');
            digit = digit || (ch >= '0' && ch <= '9');
        }
        if (digit) {
            failed++;
            EXPECT_TRUE(s["reward"].is_null()) << s.dump();
            EXPECT_FALSE(s["in_loss"].get<bool>()) << s.dump();
            EXPECT_NE(s.value("error", "").find("rubric"), std::string::npos) << s.dump();
        } else {
            ASSERT_TRUE(s["rewards"].contains("rubric")) << s.dump();
            EXPECT_EQ(s["rewards"]["rubric"].get<double>(), letter ? 1.0 : 0.0) << text;
            (letter ? met : unmet)++;
        }
    }
    EXPECT_EQ(met + unmet + failed, 2 * 16);
    EXPECT_GT(met, 0);
    EXPECT_GT(unmet, 0);
    EXPECT_GT(failed, 0);
    const json m = read_jsonl(dir.path() / "run" / "metrics.jsonl").back();
    ASSERT_TRUE(m.contains("judge")) << m.dump();
    EXPECT_GT(m["judge"]["judge_requests"].get<int64_t>(), 0);
    EXPECT_GT(m["judge"]["judge_failures"].get<int64_t>(), 0);
    EXPECT_EQ(m["judge"]["judge_requests"].get<int64_t>(), requests.load());
}

TEST(RlDemo, ShortDemoWritesResultsAndAReportAndResumes) {
    testutil::TempDir dir;
    DemoOptions o;
    o.out_dir = (dir.path() / "demo").string();
    o.sft_steps = 20;
    o.rl_steps = 3;
    o.eval_problems = 12;
    o.eval_samples = 2;
    o.sft_overrides = {"train.batch_size=16", "data.builtin_train_examples=500",
                       "data.builtin_eval_examples=20", "train.warmup_steps=5"};
    o.rl_overrides = {"task.train_examples=500",    "task.eval_examples=20",
                      "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4",
                      "train.eval_problems=4",      "train.eval_samples=2"};
    std::ostringstream log;
    const json r = run_demo(o, log);
    for (const char* key : {"before", "after", "p_value", "seconds", "minimum_detectable_effect"}) {
        ASSERT_TRUE(r.contains(key)) << key;
        EXPECT_TRUE(std::isfinite(r[key].get<double>())) << key << ": " << r.dump();
    }
    EXPECT_LE(r["ci_before"][0].get<double>(), r["before"].get<double>());
    EXPECT_GE(r["ci_before"][1].get<double>(), r["before"].get<double>());
    const json saved = json::parse(testutil::slurp(dir.path() / "demo" / "results.json"));
    EXPECT_EQ(saved["after"], r["after"]);
    const std::string html = testutil::slurp(dir.path() / "demo" / "report.html");
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no external loads
    // The training curves of both runs (issue 21: the demo report had no loss, grad norm or lr).
    for (const char* part : {"SFT loss", "SFT grad norm", "RL loss", "RL grad norm",
                             "RL learning rate", "KL", "crucible report "})
        EXPECT_NE(html.find(part), std::string::npos) << part;
    // Re-running continues from the finished runs: same weights, same scores.
    std::ostringstream log2;
    const json again = run_demo(o, log2);
    EXPECT_EQ(again["before"], r["before"]);
    EXPECT_EQ(again["after"], r["after"]);
    EXPECT_NE(log2.str().find("resumed"), std::string::npos) << log2.str();
}

}  // namespace
}  // namespace crucible::rl

namespace crucible::rl {
namespace {

// The numbers and words of two config values are the same value ("3e-4" and "3.0e-4").
bool same_value(const std::string& a, const std::string& b) {
    char* end_a = nullptr;
    char* end_b = nullptr;
    const double x = std::strtod(a.c_str(), &end_a), y = std::strtod(b.c_str(), &end_b);
    if (!a.empty() && !b.empty() && *end_a == '\0' && *end_b == '\0') return x == y;
    return a == b;
}

std::vector<std::string> table_cells(const std::string& row) {
    std::vector<std::string> cells;
    std::stringstream in(row);
    std::string cell;
    std::getline(in, cell, '|');  // before the first bar
    while (std::getline(in, cell, '|')) {
        const size_t a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
        cells.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
    }
    if (!cells.empty() && cells.back().empty()) cells.pop_back();
    return cells;
}

// Each preset's effective config (the defaults, then examples/rl_<name>.yaml) is exactly what
// the table in docs/RL.md says, cell by cell; the table covers every algorithm.* key; the
// compiled-in presets are the example files; and every preset passes validation.
TEST(RlPresets, EffectiveConfigsMatchTheTable) {
    const std::filesystem::path root = std::filesystem::path(CRUCIBLE_FIXTURE_DIR) / ".." / "..";
    std::ifstream doc(root / "docs" / "RL.md");
    ASSERT_TRUE(doc) << "docs/RL.md";
    std::string line;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    while (std::getline(doc, line)) {
        if (header.empty()) {
            if (line.rfind("| key | defaults |", 0) == 0) header = table_cells(line);
            continue;
        }
        if (line.rfind("|", 0) != 0) break;
        if (line.rfind("|---", 0) == 0) continue;
        rows.push_back(table_cells(line));
    }
    ASSERT_EQ(header.size(), 6u) << "the presets table of docs/RL.md";
    std::map<std::string, Config> configs;
    configs.emplace("defaults", Config(kRlConfigDefaults));
    for (size_t col = 2; col < header.size(); col++) {
        const std::string& file = header[col];  // rl_<name>
        ASSERT_EQ(file.rfind("rl_", 0), 0u) << file;
        const std::string name = file.substr(3);
        EXPECT_EQ(std::string(rl_preset(name)),
                  testutil::slurp(root / "examples" / (file + ".yaml")))
            << "the compiled-in preset " << name << " is not examples/" << file << ".yaml";
        Config c(kRlConfigDefaults);
        c.merge_file((root / "examples" / (file + ".yaml")).string());
        EXPECT_NO_THROW(validate_rl_config(c)) << file;
        configs.emplace(file, c);
    }
    EXPECT_EQ(rl_preset_names(), (std::vector<std::string>{"grpo", "dapo", "dr_grpo", "gspo"}));
    std::set<std::string> keys;
    for (const auto& row : rows) {
        ASSERT_EQ(row.size(), header.size()) << row[0];
        keys.insert(row[0]);
        for (size_t col = 1; col < header.size(); col++) {
            const std::string actual = configs.at(header[col]).get_string(row[0]);
            EXPECT_TRUE(same_value(actual, row[col]))
                << header[col] << " " << row[0] << ": the config says " << actual
                << ", docs/RL.md says " << row[col];
        }
    }
    // Every algorithm knob is in the table.
    std::stringstream schema(kRlConfigDefaults);
    bool in_algorithm = false;
    int algorithm_keys = 0;
    while (std::getline(schema, line)) {
        if (!line.empty() && line[0] != ' ') in_algorithm = line.rfind("algorithm:", 0) == 0;
        if (!in_algorithm || line.rfind("  ", 0) != 0 || line[2] == ' ' || line[2] == '#') continue;
        const std::string key = "algorithm." + line.substr(2, line.find(':') - 2);
        EXPECT_TRUE(keys.count(key)) << key << " is missing from docs/RL.md's presets table";
        algorithm_keys++;
    }
    EXPECT_GE(algorithm_keys, 15);
    // A preset changes nothing outside the table but the sizes scaled to the built-in task.
    const std::set<std::string> sizes = {
        "model.path",  "task.name", "rollout.prompts_per_step", "rollout.max_new_tokens",
        "train.steps", "train.lr",  "train.warmup_steps"};
    for (const auto& [name, c] : configs) {
        for (const std::string& key : Config::diff(configs.at("defaults"), c)) {
            EXPECT_TRUE(keys.count(key) || sizes.count(key))
                << name << " sets " << key << ", which docs/RL.md's presets table does not list";
        }
    }
    // The recipes are what their papers say (the table could drift with the files together).
    EXPECT_EQ(configs.at("rl_dapo").get_double("algorithm.clip_high"), 0.28);
    EXPECT_TRUE(configs.at("rl_dapo").get_bool("algorithm.dynamic_sampling"));
    EXPECT_GT(configs.at("rl_dapo").get_int("algorithm.minibatches"), 1);
    EXPECT_EQ(configs.at("rl_grpo").get_double("algorithm.kl_beta"), 0.04);
    EXPECT_EQ(configs.at("rl_gspo").get_string("algorithm.ratio"), "sequence");
    EXPECT_EQ(configs.at("rl_dr_grpo").get_string("algorithm.advantage"), "dr_grpo");
    for (const char* preset : {"rl_grpo", "rl_dr_grpo", "rl_gspo", "defaults"}) {
        EXPECT_EQ(configs.at(preset).get_double("rewards.soft_overlong"), 0.0) << preset;
        EXPECT_FALSE(configs.at(preset).get_bool("algorithm.dynamic_sampling")) << preset;
    }
}

}  // namespace
}  // namespace crucible::rl
