// LoRA through both trainers: the adapters learn while the base stays as it was, checkpoints are
// PEFT adapter folders that load back as base + adapters, a resumed run continues exactly, and
// an RL run at lr 0 has every ratio exactly 1 (bf16 base released, as a LoRA run holds it).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

using namespace crucible;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path base_folder(const fs::path& dir) {
    const ModelConfig c = testutil::tiny_gqa_config();
    Model m(c);
    m.init_random(3, 0.1f);
    const fs::path out = dir / "base";
    fs::create_directories(out);
    save_model(m, out);
    ByteTokenizer::save_hf_files(out, c.max_position_embeddings);
    return out;
}

Config sft_config(const fs::path& dir, const fs::path& base, const std::string& name) {
    Config c(kSftConfigDefaults);
    for (const std::string& s :
         {"run.dir=" + dir.string(), "run.name=" + name, "model.path=" + base.string(),
          std::string("lora.rank=4"), std::string("lora.alpha=8"),
          std::string("lora.targets=q_proj,v_proj,up_proj,down_proj"),
          std::string("data.builtin_train_examples=300"), std::string("data.max_seq_len=48"),
          std::string("data.builtin_eval_examples=16"), std::string("train.batch_size=8"),
          std::string("train.lr=1e-2"), std::string("train.warmup_steps=0"),
          std::string("train.eval_every=0"), std::string("train.eval_generate=0"),
          std::string("train.log_every=1000"), std::string("train.checkpoint_every=3"),
          std::string("train.steps=9")}) {
        c.set(s);
    }
    return c;
}

Config rl_config(const fs::path& dir, const fs::path& base, const std::string& name) {
    Config c(kRlConfigDefaults);
    for (const std::string& s : {"run.dir=" + dir.string(),
                                 "run.name=" + name,
                                 "model.path=" + base.string(),
                                 std::string("lora.rank=4"),
                                 std::string("lora.alpha=16"),
                                 std::string("task.train_examples=200"),
                                 std::string("task.eval_examples=8"),
                                 std::string("rewards.correct=0"),
                                 std::string("rewards.soft_overlong=0"),
                                 std::string("rollout.prompts_per_step=4"),
                                 std::string("rollout.samples_per_prompt=4"),
                                 std::string("rollout.max_new_tokens=6"),
                                 std::string("train.steps=4"),
                                 std::string("train.lr=5e-2"),
                                 std::string("train.warmup_steps=0"),
                                 std::string("train.eval_every=0"),
                                 std::string("train.eval_problems=4"),
                                 std::string("train.eval_samples=2"),
                                 std::string("train.log_every=100"),
                                 std::string("train.checkpoint_every=2")}) {
        c.set(s);
    }
    return c;
}

rl::RewardFunction low_ids() {
    return {"low_ids", 1.0,
            [](const rl::TaskItem&, const std::string&, const std::vector<int32_t>& ids, bool) {
                if (ids.empty()) return 0.0;
                double n = 0;
                for (int32_t id : ids) n += id < 128;
                return n / static_cast<double>(ids.size());
            }};
}

}  // namespace

TEST(LoraTrain, SftTrainsTheAdaptersOnlyAndResumesExactly) {
    testutil::TempDir dir;
    const fs::path base = base_folder(dir.path());
    const std::string base_bytes = read_file(base / "model.safetensors");
    std::ostringstream log;
    {
        SftTrainer straight(sft_config(dir.path(), base, "a"), false, log);
        EXPECT_TRUE(straight.model().has_lora());
        straight.run();
    }
    {
        SftTrainer first(sft_config(dir.path(), base, "b"), false, log);
        first.run(5);  // the last checkpoint is step 3
    }
    SftTrainer resumed(sft_config(dir.path(), base, "b"), true, log);
    EXPECT_EQ(resumed.step(), 3);
    EXPECT_TRUE(resumed.model().has_lora());
    resumed.run();
    const fs::path a9 = dir.path() / "a/checkpoints/step-9",
                   b9 = dir.path() / "b/checkpoints/step-9";
    for (const char* file : {"adapter_model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(read_file(a9 / file) == read_file(b9 / file)) << file << " differs";
    }
    EXPECT_FALSE(fs::exists(a9 / "model.safetensors")) << "a LoRA checkpoint holds the adapters";
    EXPECT_EQ(read_file(base / "model.safetensors"), base_bytes) << "the base was written";
    // The checkpoint loads as base + adapters and computes what the trainer's model computes.
    auto loaded = load_model(a9);
    ASSERT_TRUE(loaded->has_lora());
    EXPECT_EQ(loaded->lora_config().targets,
              (std::vector<std::string>{"q_proj", "v_proj", "up_proj", "down_proj"}));
    auto plain = load_model(base);
    PackedBatch b;
    b.add_sequence({1, 50, 60, 70, 80, 90}, {50, 60, 70, 80, 90, 2},
                   std::vector<float>(6, 1.0f / 6));
    EXPECT_NE(loaded->forward(b), plain->forward(b)) << "the adapters did not train";
    const json m = testutil::read_jsonl(dir.path() / "a/metrics.jsonl").back();
    EXPECT_LT(m["loss"].get<double>(),
              testutil::read_jsonl(dir.path() / "a/metrics.jsonl").front()["loss"].get<double>());
}

TEST(LoraTrain, SftRefusesLoraWithoutABase) {
    testutil::TempDir dir;
    Config c = sft_config(dir.path(), "", "x");
    c.set("model.path=");
    std::ostringstream log;
    try {
        SftTrainer t(c, false, log);
        FAIL() << "LoRA on a new random model must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("lora.rank"), std::string::npos) << e.what();
    }
}

TEST(LoraTrain, AQ8_0BaseTrainsAdaptersOnly) {
    testutil::TempDir dir;
    const fs::path base = base_folder(dir.path());
    std::ostringstream log;
    // Full fine-tuning of a Q8_0 model is refused before any work, in both trainers.
    Config sft = sft_config(dir.path(), base, "s");
    sft.set("lora.rank=0");
    sft.set("train.dtype=q8_0");
    Config rl = rl_config(dir.path(), base, "r");
    rl.set("lora.rank=0");
    rl.set("train.dtype=q8_0");
    for (int which = 0; which < 2; which++) {
        try {
            if (which == 0) SftTrainer t(sft, false, log);
            if (which == 1) rl::RlTrainer t(rl, false, log, {low_ids()});
            FAIL() << "full fine-tuning of a q8_0 base must be refused";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("train.dtype: q8_0"), std::string::npos)
                << e.what();
        }
    }
    // With adapters it trains: the base held as Q8_0 alone, the loss falls.
    sft.set("lora.rank=4");
    sft.set("run.name=s2");
    SftTrainer t(sft, false, log);
    EXPECT_TRUE(t.model().fp32_released());
    t.run();
    const auto m = testutil::read_jsonl(t.run_dir() / "metrics.jsonl");
    ASSERT_GE(m.size(), 2u);
    EXPECT_LT(m.back()["loss"].get<double>(), m.front()["loss"].get<double>());
}

TEST(LoraTrain, RlLearnsThroughTheAdaptersRatioOneAtLrZeroAndResumesExactly) {
    testutil::TempDir dir;
    const fs::path base = base_folder(dir.path());
    std::ostringstream log;
    // lr 0, a bf16 or Q8_0 base held alone: every ratio exactly 1.
    for (const std::string dtype : {"bfloat16", "q8_0"}) {
        Config c = rl_config(dir.path(), base, "zero-" + dtype);
        c.set("train.lr=0");
        c.set("train.dtype=" + dtype);
        c.set("algorithm.minibatches=2");
        c.set("algorithm.updates_per_batch=2");
        rl::RlTrainer t(c, false, log, {low_ids()});
        EXPECT_TRUE(t.model().fp32_released());
        EXPECT_EQ(to_string(t.model().matmul_dtype()), dtype);
        t.run();
        for (const json& m : testutil::read_jsonl(t.run_dir() / "metrics.jsonl")) {
            EXPECT_EQ(m["ratio_mean"].get<double>(), 1.0) << m.dump();
        }
    }
    // lr > 0: the adapters move and a resumed run ends on the same adapters.
    rl::RlTrainer straight(rl_config(dir.path(), base, "a"), false, log, {low_ids()});
    straight.run();
    {
        rl::RlTrainer first(rl_config(dir.path(), base, "b"), false, log, {low_ids()});
        first.run(3);  // the last checkpoint is step 2
    }
    rl::RlTrainer resumed(rl_config(dir.path(), base, "b"), true, log, {low_ids()});
    EXPECT_EQ(resumed.step(), 2);
    resumed.run();
    const Model& a = straight.model();
    const Model& r = resumed.model();
    ASSERT_EQ(a.lora_num_params(), r.lora_num_params());
    EXPECT_EQ(0, std::memcmp(a.lora_params(), r.lora_params(), a.lora_num_params() * 4));
    auto start = load_model(base);
    start->enable_lora(a.lora_config(), 0);  // B = 0 at the start: any trained B moved
    double moved = 0;
    for (const TensorInfo& t : a.lora_tensors()) {
        if (t.name.find("lora_B") == std::string::npos) continue;
        for (size_t i = 0; i < t.numel; i++) moved += std::fabs(a.lora_params()[t.offset + i]);
    }
    EXPECT_GT(moved, 0.0);
    // The base's weights are the base folder's.
    EXPECT_EQ(0, std::memcmp(a.params(), start->params(), a.num_params() * 4));
}
