// Runs that cannot be right are refused or stopped (issue 22, item 10): a model or batch that
// would not fit the machine's memory is refused before allocating, naming the field and the
// estimate; a loss or gradient that goes non-finite stops SFT and RL before any checkpoint of
// that state is written, and the earlier checkpoints stay.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model_util.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using testutil::error_of;
using namespace std::string_literals;

ModelConfig tiny_arch() {
    return testutil::tiny_gqa_config();
}

Config tiny_sft(const fs::path& dir) {
    Config c(kSftConfigDefaults);
    for (const char* s : {"model.arch.hidden_size=32", "model.arch.intermediate_size=48",
                          "model.arch.num_hidden_layers=2", "model.arch.num_attention_heads=4",
                          "model.arch.num_key_value_heads=2", "data.builtin_train_examples=200",
                          "data.builtin_eval_examples=16", "train.batch_size=8",
                          "train.warmup_steps=1", "train.eval_every=0", "train.eval_generate=0",
                          "train.log_every=1000", "train.checkpoint_every=1", "train.steps=4"}) {
        c.set(s);
    }
    c.set("run.dir=" + dir.string());
    c.set("run.name=run");
    return c;
}

// ---- memory estimates -----------------------------------------------------------------------

TEST(ModelMemory, ParamCountIsTheLayoutsWithoutAllocating) {
    ModelConfig c = tiny_arch();
    EXPECT_EQ(Model::param_count(c), static_cast<double>(Model(c).num_params()));
    c.tie_word_embeddings = false;
    EXPECT_EQ(Model::param_count(c), static_cast<double>(Model(c).num_params()));
    c.model_type = "llama";
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    EXPECT_EQ(Model::param_count(c), static_cast<double>(Model(c).num_params()));
}

// The case: num_hidden_layers 1000000 ran 53 s and died of std::bad_alloc.
TEST(ModelMemory, AModelBeyondTheMachineIsRefusedNamingTheFieldAndTheEstimate) {
    ModelConfig c = tiny_arch();
    c.num_hidden_layers = 1000000;
    c.hidden_size = 4096;
    c.intermediate_size = 16384;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    const std::string e = error_of([&] { Model m(c); });
    EXPECT_NE(e.find("num_hidden_layers 1000000"), std::string::npos) << e;
    EXPECT_NE(e.find(" GB"), std::string::npos) << e;
}

TEST(SftMemory, AModelOrBatchBeyondTheMachineIsRefusedNamingTheFieldAndTheEstimate) {
    testutil::TempDir dir;
    std::ostringstream log;
    Config layers = tiny_sft(dir.path());
    layers.set("model.arch.num_hidden_layers=1000000");
    std::string e = error_of([&] { SftTrainer t(layers, false, log); });
    EXPECT_NE(e.find("model.arch: num_hidden_layers 1000000"), std::string::npos) << e;
    EXPECT_NE(e.find(" GB"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(dir.path() / "run" / "config.yaml")) << "refused before writing";

    Config batch = tiny_sft(dir.path());
    batch.set("train.batch_size=1000000000");
    e = error_of([&] { SftTrainer t(batch, false, log); });
    EXPECT_NE(e.find("train.batch_size 1000000000"), std::string::npos) << e;
    EXPECT_NE(e.find(" GB"), std::string::npos) << e;

    // Accumulation makes the micro-batch small, but the index of the step's sequences and
    // the model still count; a modest run passes.
    Config ok = tiny_sft(dir.path());
    ok.set("train.steps=1");
    EXPECT_NO_THROW({ SftTrainer t(ok, false, log); });
}

// ---- non-finite losses ----------------------------------------------------------------------

TEST(SftNonFinite, ALossThatGoesNonFiniteStopsBeforeAnyCheckpointOfThatState) {
    testutil::TempDir dir;
    std::ostringstream log;
    SftTrainer t(tiny_sft(dir.path()), false, log);
    t.run(2);
    ASSERT_TRUE(fs::exists(t.checkpoint_dir(2)));
    // Poison the final norm: every logit, so the loss, becomes NaN at step 3.
    const TensorInfo* norm = t.model().find("model.norm.weight");
    ASSERT_NE(norm, nullptr);
    for (size_t i = 0; i < norm->numel; i++) {
        t.model().params()[norm->offset + i] = std::numeric_limits<float>::quiet_NaN();
    }
    const std::string e = error_of([&] { t.run(); });
    EXPECT_NE(e.find("step 3"), std::string::npos) << e;
    EXPECT_NE(e.find("loss is"), std::string::npos) << e;
    EXPECT_NE(e.find("nan"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(t.checkpoint_dir(3)));
    EXPECT_FALSE(fs::exists(t.checkpoint_dir(4)));
    EXPECT_TRUE(fs::exists(t.checkpoint_dir(1)));
    EXPECT_TRUE(fs::exists(t.checkpoint_dir(2)));
    // The published checkpoint is the clean step-2 state.
    const auto m = load_model(t.checkpoint_dir(2));
    for (size_t i = 0; i < m->num_params(); i++) ASSERT_TRUE(std::isfinite(m->params()[i]));
}

TEST(RlTrainerNonFinite, AGradientThatGoesNonFiniteStopsBeforeAnyCheckpointOfThatState) {
    testutil::TempDir dir;
    Model m(tiny_arch());
    m.init_random(3);
    const fs::path model = dir.path() / "model";
    fs::create_directories(model);
    save_model(m, model);
    ByteTokenizer::save_hf_files(model, tiny_arch().max_position_embeddings);
    Config c(kRlConfigDefaults);
    for (const std::string& s :
         {"run.dir=" + dir.path().string(), "run.name=run"s, "model.path=" + model.string(),
          "task.train_examples=200"s, "task.eval_examples=8"s, "rewards.correct=0"s,
          "rollout.prompts_per_step=4"s, "rollout.samples_per_prompt=4"s,
          "rollout.max_new_tokens=6"s, "train.steps=4"s, "train.lr=1e-2"s, "train.warmup_steps=0"s,
          "train.checkpoint_every=1"s, "train.eval_every=0"s, "train.eval_problems=4"s,
          "train.log_every=100"s, "algorithm.advantage=dr_grpo"s}) {
        c.set(s);
    }
    // From step 3 the reward is finite but so large (1e300 x the share of low ids) that the
    // unnormalised advantage overflows the float loss weights: the gradient goes non-finite.
    auto huge = std::make_shared<std::atomic<bool>>(false);
    rl::RewardFunction low_ids{
        "low_ids", 1.0,
        [huge](const rl::TaskItem&, const std::string&, const std::vector<int32_t>& ids, bool) {
            double n = 0;
            for (int32_t id : ids) n += id < 128;
            const double share = ids.empty() ? 0.0 : n / static_cast<double>(ids.size());
            return *huge ? 1e300 * share : share;
        }};
    std::ostringstream log;
    rl::RlTrainer t(c, false, log, {low_ids});
    t.run(2);
    ASSERT_TRUE(fs::exists(t.checkpoint_dir(2)));
    *huge = true;
    const std::string e = error_of([&] { t.run(); });
    EXPECT_NE(e.find("step 3"), std::string::npos) << e;
    EXPECT_TRUE(e.find("gradient norm is") != std::string::npos ||
                e.find("loss is") != std::string::npos)
        << e;
    EXPECT_FALSE(fs::exists(t.checkpoint_dir(3)));
    EXPECT_TRUE(fs::exists(t.checkpoint_dir(1)));
    EXPECT_TRUE(fs::exists(t.checkpoint_dir(2)));
}

}  // namespace
}  // namespace crucible
