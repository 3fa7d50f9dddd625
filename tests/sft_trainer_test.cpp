// The SFT trainer's contracts beyond resumption: accumulation does not change the objective,
// a seed fixes a run, a checkpoint folder is a valid starting model, the loss falls, and the
// example configs run.
#include "train/sft_trainer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "run/run_folder.h"
#include "train/sft_config.h"
#include "write_failure.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir =
        fs::temp_directory_path() / ("crucible_trainer_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

Config tiny(const fs::path& dir, const std::string& name) {
    Config c(kSftConfigDefaults);
    for (const char* s : {"model.arch.hidden_size=32", "model.arch.intermediate_size=48",
                          "model.arch.num_hidden_layers=2", "model.arch.num_attention_heads=4",
                          "model.arch.num_key_value_heads=2", "data.builtin_train_examples=200",
                          "data.builtin_eval_examples=16", "train.batch_size=8",
                          "train.warmup_steps=1", "train.eval_every=0", "train.eval_generate=0",
                          "train.log_every=1000", "train.checkpoint_every=0"}) {
        c.set(s);
    }
    c.set("run.dir=" + dir.string());
    c.set("run.name=" + name);
    return c;
}

TEST(SftTrainer, GradientAccumulationGivesTheSameStep) {
    // The objective is a token mean over the whole step, so splitting the 8 sequences into
    // 4 micro-batches changes only the summation order of the gradients.
    const fs::path dir = fresh_dir("accum");
    std::ostringstream log;
    Config one = tiny(dir, "one"), four = tiny(dir, "four");
    one.set("train.steps=1");
    four.set("train.steps=1");
    four.set("train.grad_accum=4");
    SftTrainer a(one, false, log), b(four, false, log);
    a.run();
    b.run();
    // After a step, grads() still holds that step's (clipped) gradient. AdamW's first step is
    // ~lr * sign(g), which would amplify rounding differences, so compare the gradients.
    double scale = 0, diff = 0;
    for (size_t i = 0; i < a.model().num_params(); i++) {
        scale = std::max(scale, (double)std::fabs(a.model().grads()[i]));
        diff = std::max(diff, (double)std::fabs(a.model().grads()[i] - b.model().grads()[i]));
    }
    EXPECT_GT(scale, 1e-3);
    EXPECT_LT(diff, 1e-5 * scale);
    fs::remove_all(dir);
}

TEST(SftTrainer, SameSeedSameRunOtherSeedOtherRun) {
    const fs::path dir = fresh_dir("seed");
    std::ostringstream log;
    auto final_weights = [&](const std::string& name, int seed) {
        Config c = tiny(dir, name);
        c.set("train.steps=3");
        c.set("seed=" + std::to_string(seed));
        SftTrainer t(c, false, log);
        t.run();
        return read_file(t.checkpoint_dir(3) / "model.safetensors");
    };
    const std::string a = final_weights("a", 7), b = final_weights("b", 7),
                      c = final_weights("c", 8);
    EXPECT_TRUE(a == b);
    EXPECT_FALSE(a == c);
    fs::remove_all(dir);
}

TEST(SftTrainer, StartsFromACheckpointFolder) {
    const fs::path dir = fresh_dir("from_ckpt");
    std::ostringstream log;
    Config first = tiny(dir, "first");
    first.set("train.steps=2");
    SftTrainer t1(first, false, log);
    t1.run();
    const fs::path ckpt = t1.checkpoint_dir(2);
    Config second = tiny(dir, "second");
    second.set("train.steps=1");
    second.set("model.path=" + ckpt.string());
    SftTrainer t2(second, false, log);
    auto saved = load_model(ckpt);
    ASSERT_EQ(saved->num_params(), t2.model().num_params());
    EXPECT_EQ(
        0, std::memcmp(saved->params(), t2.model().params(), saved->num_params() * sizeof(float)));
    fs::remove_all(dir);
}

TEST(SftTrainer, LossFallsAndMetricsAreLoggedEveryStep) {
    const fs::path dir = fresh_dir("falls");
    std::ostringstream log;
    Config c = tiny(dir, "run");
    c.set("train.steps=40");
    c.set("train.lr=0.01");
    c.set("train.eval_every=20");
    SftTrainer t(c, false, log);
    t.run();
    std::ifstream in(dir / "run" / "metrics.jsonl");
    std::string line;
    std::vector<double> losses;
    int evals = 0;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j["step"].get<int>(), (int)losses.size() + 1);
        losses.push_back(j["loss"].get<double>());
        evals += j.contains("eval_loss");
    }
    ASSERT_EQ(losses.size(), 40u);
    EXPECT_EQ(evals, 2);
    // From ln(264) ~ 5.58 (uniform over the vocabulary) to well under half of it.
    EXPECT_NEAR(losses.front(), std::log(264.0), 0.3);
    EXPECT_LT(losses.back(), 0.5 * losses.front());
    fs::remove_all(dir);
}

// A metrics line that cannot be written stops the run with an error naming the file, at the
// step whose line was lost and before its checkpoint: the log and the checkpoints still agree.
TEST(SftTrainer, AFullDiskUnderTheMetricsStopsTheRun) {
    if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
    const fs::path dir = fresh_dir("full_disk");
    std::ostringstream log;
    Config c = tiny(dir, "run");
    c.set("train.steps=5");
    c.set("train.checkpoint_every=1");
    SftTrainer t(c, false, log);
    const fs::path metrics = dir / "run" / "metrics.jsonl";
    fs::remove(metrics);
    fs::create_symlink("/dev/full", metrics);  // every write fails with ENOSPC
    std::string msg;
    try {
        t.run();
    } catch (const Error& e) {
        msg = e.what();
    }
    EXPECT_NE(msg.find(metrics.string()), std::string::npos) << msg;
    EXPECT_EQ(t.step(), 1);
    EXPECT_EQ(latest_checkpoint(dir / "run" / "checkpoints"), -1);
    fs::remove_all(dir);
}

TEST(SftTrainer, AFileSizeLimitUnderTheMetricsStopsTheRunOnWholeLines) {
    const fs::path dir = fresh_dir("fsize");
    std::ostringstream log;
    Config c = tiny(dir, "run");
    c.set("train.steps=200");
    SftTrainer t(c, false, log);
    const fs::path metrics = dir / "run" / "metrics.jsonl";
    std::string msg;
    {
        // Only metrics.jsonl grows during the steps (no eval, no checkpoint before step 200);
        // a line is ~180 bytes, so a write fails with EFBIG within the first ten steps.
        FileSizeLimit limit(1500);
        ASSERT_TRUE(limit.ok());
        try {
            t.run();
        } catch (const Error& e) {
            msg = e.what();
        }
    }
    EXPECT_NE(msg.find(metrics.string()), std::string::npos) << msg;
    EXPECT_GT(t.step(), 1);
    EXPECT_LT(t.step(), 20);
    // Every step before the failing one is logged, and no torn line is left.
    std::ifstream in(metrics);
    std::string line;
    int64_t lines = 0;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j["step"].get<int64_t>(), ++lines);
    }
    EXPECT_EQ(lines, t.step() - 1);
    EXPECT_EQ(latest_checkpoint(dir / "run" / "checkpoints"), -1);
    fs::remove_all(dir);
}

// The example configs stay valid: each runs a couple of steps through the real binary.
TEST(SftTrainer, ExampleConfigsRun) {
    const fs::path dir = fresh_dir("examples");
    for (const char* example : {"sft_countdown.yaml", "sft_jsonl.yaml"}) {
        const std::string src = fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path();
        const std::string cmd =
            "cd " + src + " && " + CRUCIBLE_BINARY + " train sft --config examples/" + example +
            " --set train.steps=2 --set train.eval_generate=2" +
            " --set data.builtin_train_examples=300 --set run.dir=" + dir.string() +
            " --set run.name=" + example + " > /dev/null";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
        EXPECT_TRUE(fs::exists(dir / example / "checkpoints/step-2/model.safetensors"));
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace crucible

#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {
namespace {

// A model folder with its own BPE tokenizer.json: the trainer tokenizes with it (a merge
// "a"+"b" -> id 256, eos "<eos>" = 257 from tokenizer_config.json) and its checkpoints carry
// the same tokenizer files.
TEST(SftTrainer, TrainsWithTheModelFoldersOwnTokenizer) {
    const fs::path dir = fresh_dir("bpe");
    const fs::path model_dir = dir / "model";
    fs::create_directories(model_dir);
    ModelConfig c;
    c.vocab_size = 264;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = 64;
    Model m(c);
    m.init_random(1);
    save_model(m, model_dir);
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; b++) vocab[byte_level_char(static_cast<uint8_t>(b))] = b;
    vocab["ab"] = 256;
    const nlohmann::json byte_level = {{"type", "ByteLevel"},
                                       {"add_prefix_space", false},
                                       {"trim_offsets", false},
                                       {"use_regex", false}};
    const nlohmann::json tok = {
        {"version", "1.0"},
        {"added_tokens",
         {{{"id", 257},
           {"content", "<eos>"},
           {"single_word", false},
           {"lstrip", false},
           {"rstrip", false},
           {"normalized", false},
           {"special", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer", byte_level},
        {"decoder", byte_level},
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"})})}}}};
    write_file_durable(model_dir / "tokenizer.json", tok.dump());
    write_file_durable(model_dir / "tokenizer_config.json", R"({"eos_token": "<eos>"})");
    const TextTokenizer t = load_text_tokenizer(model_dir);
    EXPECT_EQ(t.encode("xab"), (std::vector<int32_t>{'x', 256}));
    EXPECT_EQ(t.eos, 257);
    const SftExample ex = make_prompt_completion(t, "q", "ab");
    EXPECT_EQ(ex.tokens, (std::vector<int32_t>{'q', 256, 257}));

    write_file_durable(dir / "data.jsonl", "{\"prompt\": \"ab=\", \"completion\": \"ab\"}\n");
    Config cfg = tiny(dir, "run");
    cfg.set("model.path=" + model_dir.string());
    cfg.set("data.train=" + (dir / "data.jsonl").string());
    cfg.set("data.eval=\"\"");
    cfg.set("train.steps=2");
    std::ostringstream log;
    SftTrainer trainer(cfg, false, log);
    trainer.run();
    EXPECT_EQ(read_file(trainer.checkpoint_dir(2) / "tokenizer.json"),
              read_file(model_dir / "tokenizer.json"));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace crucible
