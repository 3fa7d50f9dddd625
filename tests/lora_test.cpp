// LoRA: the adapters' loss, logits and gradients against a hand-written PyTorch LoRA
// (scripts/gen_lora_fixture.py), the frozen base, PEFT folders in and out, merging, and the
// adapters through the generation engine's cached forward pass.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "engine/reference_generate.h"
#include "fixture_batch.h"
#include "model/checkpoint.h"
#include "model/gguf_reader.h"
#include "model/lora_adapter.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model_util.h"
#include "test_util.h"

using namespace crucible;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using testutil::rel_error;

struct LoraFixture {
    SafetensorsFile file{std::string(CRUCIBLE_FIXTURE_DIR) + "/lora_qwen2.safetensors"};
    ModelConfig config;
    LoraConfig lora;
    PackedBatch batch;
    LoraFixture() {
        config = parse_model_config(json::parse(file.metadata().at("config")), "lora fixture");
        const json l = json::parse(file.metadata().at("lora"));
        lora.rank = l["r"];
        lora.alpha = l["lora_alpha"];
        lora.targets = l["target_modules"].get<std::vector<std::string>>();
        batch = testutil::fixture_batch(file);
    }
    std::vector<float> f32(const std::string& name) const {
        return testutil::fixture_f32(file, name);
    }
    // The base from the fixture, the adapters enabled and set to the fixture's.
    std::unique_ptr<Model> model() const {
        auto m = std::make_unique<Model>(config);
        load_weights(*m, file, /*allow_extra=*/true);
        m->enable_lora(lora, 1);
        for (const TensorInfo& t : m->lora_tensors())
            file.at(t.name).to_f32(m->lora_params() + t.offset);
        return m;
    }
};

void randomize_adapters(Model& m, uint64_t seed) {
    Rng rng(seed);
    for (size_t i = 0; i < m.lora_num_params(); i++)
        m.lora_params()[i] = (float)(0.2 * rng.normal());
}

PackedBatch small_batch(int vocab) {
    PackedBatch b;
    std::vector<int32_t> in, next;
    for (int i = 0; i < 12; i++) {
        in.push_back((i * 7 + 3) % vocab);
        next.push_back((i * 5 + 1) % vocab);
    }
    b.add_sequence(in, next, std::vector<float>(in.size(), 1.0f / 12));
    return b;
}

}  // namespace

TEST(Lora, LossLogitsAndAdapterGradientsMatchAHandWrittenPyTorchLora) {
    const LoraFixture fx;
    auto m = fx.model();
    m->zero_grads();
    const double loss = m->forward(fx.batch);
    const float ref = fx.f32("ref.loss")[0];
    EXPECT_NEAR(loss, ref, 1e-5 * std::fabs(ref));
    EXPECT_LT(rel_error(m->logits(), fx.f32("ref.logits")), 1e-4);
    m->backward();
    ASSERT_EQ(m->lora_tensors().size(), 20u);  // 2 layers x 5 targets x (A, B)
    for (const TensorInfo& t : m->lora_tensors()) {
        const double err = rel_error(m->lora_grads() + t.offset, fx.f32("grad." + t.name));
        EXPECT_LT(err, 1e-4) << t.name;
    }
    // The base is frozen: no gradient buffer of its size was ever allocated.
    const Model& cm = *m;
    EXPECT_EQ(cm.grads(), nullptr);
}

// With B = 0 (the initialisation) the model computes exactly the base's numbers, and the first
// gradient reaches B only: dA = (scale B^T dy) x^T is zero while B is (worked by hand).
TEST(Lora, AFreshAdapterLeavesTheModelExactlyAsItWasAndOnlyBLearnsFirst) {
    const ModelConfig c = testutil::tiny_model_config(64, 32);
    Model base(c), m(c);
    base.init_random(3, 0.2f);
    m.init_random(3, 0.2f);
    m.enable_lora(LoraConfig{}, 9);
    const PackedBatch b = small_batch(64);
    EXPECT_EQ(base.forward(b), m.forward(b));
    for (int i = 0; i < b.n_tokens() * 64; i++) ASSERT_EQ(base.logits()[i], m.logits()[i]);
    m.zero_grads();
    m.backward();
    double a_norm = 0, b_norm = 0, a_init = 0;
    for (const TensorInfo& t : m.lora_tensors()) {
        const bool is_a = t.name.find("lora_A") != std::string::npos;
        for (size_t i = 0; i < t.numel; i++) {
            (is_a ? a_norm : b_norm) += std::fabs(m.lora_grads()[t.offset + i]);
            if (is_a) a_init = std::max(a_init, (double)std::fabs(m.lora_params()[t.offset + i]));
        }
    }
    EXPECT_EQ(a_norm, 0.0);
    EXPECT_GT(b_norm, 0.0);
    // A ~ U(-1/sqrt(in), 1/sqrt(in)): in = 32 or 48 here, so |A| <= 1/sqrt(32).
    EXPECT_LE(a_init, 1 / std::sqrt(32.0));
    EXPECT_GT(a_init, 0.5 / std::sqrt(48.0));
    EXPECT_EQ(m.lora_tensors().size(), 2u * 7 * 2);
}

TEST(Lora, PeftFolderRoundTripsAndMergingComputesTheSameModel) {
    testutil::TempDir dir;
    const ModelConfig c = testutil::tiny_model_config(64, 32);
    Model m(c);
    m.init_random(4, 0.2f);
    m.enable_lora(LoraConfig{8, 16.0, {"q_proj", "v_proj", "down_proj"}}, 2);
    randomize_adapters(m, 5);
    save_lora_adapter(m, dir.path() / "adapter", "base-folder");
    const json cfg = json::parse(read_file(dir.path() / "adapter" / "adapter_config.json"));
    EXPECT_EQ(cfg["peft_type"], "LORA");
    EXPECT_EQ(cfg["r"], 8);
    EXPECT_EQ(cfg["lora_alpha"], 16.0);
    EXPECT_EQ(cfg["base_model_name_or_path"], "base-folder");
    const SafetensorsFile st(dir.path() / "adapter" / "adapter_model.safetensors");
    EXPECT_EQ(st.at("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape,
              (std::vector<int64_t>{32, 8}));
    EXPECT_EQ(st.at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape,
              (std::vector<int64_t>{8, 32}));

    Model back(c);
    back.init_random(4, 0.2f);
    load_lora_adapter(back, dir.path() / "adapter");
    ASSERT_EQ(back.lora_num_params(), m.lora_num_params());
    for (size_t i = 0; i < m.lora_num_params(); i++)
        ASSERT_EQ(back.lora_params()[i], m.lora_params()[i]);
    const PackedBatch b = small_batch(64);
    const double with_adapters = m.forward(b);
    std::vector<float> logits(m.logits(), m.logits() + b.n_tokens() * 64);
    EXPECT_EQ(back.forward(b), with_adapters);

    back.merge_lora();
    EXPECT_FALSE(back.has_lora());
    EXPECT_NEAR(back.forward(b), with_adapters, 1e-5 * std::fabs(with_adapters));
    EXPECT_LT(rel_error(back.logits(), logits), 1e-5);
    fs::create_directories(dir.path() / "merged");
    save_model(back, dir.path() / "merged");  // a plain HF folder again
    EXPECT_NEAR(load_model(dir.path() / "merged")->forward(b), with_adapters,
                1e-5 * std::fabs(with_adapters));
}

TEST(Lora, BadAdaptersAndSettingsAreClearErrorsAndLeaveNothingBehind) {
    testutil::TempDir dir;
    const ModelConfig c = testutil::tiny_model_config(64, 32);
    auto expect_error = [](const auto& f, const std::string& part) {
        try {
            f();
            ADD_FAILURE() << "no error; expected one naming " << part;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    Model m(c);
    expect_error([&] { m.enable_lora(LoraConfig{0, 1.0, {"q_proj"}}, 1); }, "lora.rank");
    expect_error([&] { m.enable_lora(LoraConfig{4, 8.0, {"lm_head"}}, 1); }, "lm_head");
    expect_error([&] { m.enable_lora(LoraConfig{4, 8.0, {}}, 1); }, "lora.targets");
    // k_proj is 16 x 32 here: a rank of 17 could never be reached (and a huge one would only
    // fail allocating).
    expect_error([&] { m.enable_lora(LoraConfig{17, 8.0, {"k_proj"}}, 1); }, "exceeds 16");
    m.enable_lora(LoraConfig{16, 8.0, {"k_proj"}}, 1);
    m.drop_lora();
    EXPECT_FALSE(m.has_lora());
    expect_error([&] { load_lora_adapter(m, dir.path() / "none"); }, "adapter_config.json");

    // An adapter trained on another shape: the tensor and both shapes are named.
    ModelConfig wide = c;
    wide.hidden_size = 48;
    Model other(wide);
    other.enable_lora(LoraConfig{4, 8.0, {"q_proj"}}, 1);
    save_lora_adapter(other, dir.path() / "wide");
    expect_error([&] { load_lora_adapter(m, dir.path() / "wide"); },
                 "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape "
                 "[4, 48] but the base model needs [4, 32]");
    EXPECT_FALSE(m.has_lora()) << "a failed load must not leave adapters behind";

    // Settings this LoRA does not compute are refused by name.
    Model ok(c);
    ok.enable_lora(LoraConfig{4, 8.0, {"q_proj"}}, 1);
    save_lora_adapter(ok, dir.path() / "ok");
    const fs::path cfg = dir.path() / "ok" / "adapter_config.json";
    const std::string good = read_file(cfg);
    for (const auto& [key, value] :
         std::vector<std::pair<std::string, json>>{{"use_rslora", true},
                                                   {"use_dora", true},
                                                   {"fan_in_fan_out", true},
                                                   {"bias", "all"},
                                                   {"target_modules", "q_proj|v_proj"},
                                                   {"peft_type", "IA3"},
                                                   {"r", -1}}) {
        json j = json::parse(good);
        j[key] = value;
        write_file_durable(cfg, j.dump());
        expect_error([&] { load_lora_adapter(m, dir.path() / "ok"); }, key);
        EXPECT_FALSE(m.has_lora());
    }
    // A NaN or an infinity in the adapter's weights: refused, naming the tensor.
    write_file_durable(cfg, good);
    for (float bad : {std::nanf(""), INFINITY}) {
        Model poisoned(c);
        poisoned.enable_lora(LoraConfig{4, 8.0, {"q_proj"}}, 1);
        poisoned.lora_params()[5] = bad;
        save_lora_adapter(poisoned, dir.path() / "bad");
        expect_error([&] { load_lora_adapter(m, dir.path() / "bad"); },
                     "q_proj.lora_A.weight' holds a non-finite value at element 5");
        EXPECT_FALSE(m.has_lora());
    }
    // A tensor the config does not name.
    json j = json::parse(good);
    j["target_modules"] = {"v_proj"};
    write_file_durable(cfg, j.dump());
    expect_error([&] { load_lora_adapter(m, dir.path() / "ok"); }, "missing");

    // Merging needs the fp32 weights: refused on an inference-only bf16 model.
    Model served(c);
    served.enable_lora(LoraConfig{}, 1);
    served.set_matmul_dtype(MatmulDtype::bfloat16);
    served.release_fp32_matrices();
    expect_error([&] { served.merge_lora(); }, "released");
}

// The engine's cached forward pass runs the adapters too: its greedy tokens are those of the
// full-recompute reference (Model::forward) on the LoRA model, in both precisions.
TEST(Lora, TheEngineGeneratesWithTheAdapters) {
    const ModelConfig c = testutil::tiny_model_config(64, 48);
    for (MatmulDtype dtype : {MatmulDtype::float32, MatmulDtype::bfloat16}) {
        Model m(c);
        m.init_random(6, 0.3f);
        m.enable_lora(LoraConfig{4, 8.0, {"q_proj", "k_proj", "o_proj", "up_proj"}}, 3);
        randomize_adapters(m, 8);
        m.set_matmul_dtype(dtype);
        const std::vector<std::vector<int32_t>> prompts{{1, 2, 3, 4, 5}, {9, 8, 7, 6, 5, 4}};
        const auto ref = greedy_generate_reference(m, prompts, 10, -1);
        std::vector<GenerationRequest> reqs(2);
        for (int i = 0; i < 2; i++) {
            reqs[i].prompt = prompts[i];
            reqs[i].params.temperature = 0.0f;
            reqs[i].params.max_tokens = 10;
        }
        const auto out = Engine(m).generate(reqs);
        Model plain(c);
        plain.init_random(6, 0.3f);
        plain.set_matmul_dtype(dtype);
        const auto base = greedy_generate_reference(plain, prompts, 10, -1);
        for (int i = 0; i < 2; i++) EXPECT_EQ(out[i][0].tokens, ref[i]) << to_string(dtype);
        EXPECT_NE(ref, base) << "the adapters changed nothing; the test cannot tell";
    }
}

// `crucible convert --lora ADAPTER --to hf|gguf`: the merged folder computes what the model with
// the adapters computes; the GGUF carries the merged weights.
TEST(Lora, ConvertMergesAnAdapterIntoAnHfFolderAndAGguf) {
    testutil::TempDir dir;
    const auto base = testutil::write_byte_model(dir.path() / "base", 64);
    Model m(base->config());
    std::copy(base->params(), base->params() + base->num_params(), m.params());
    m.enable_lora(LoraConfig{4, 8.0, {"k_proj", "gate_proj"}}, 1);
    randomize_adapters(m, 12);
    save_lora_adapter(m, dir.path() / "adapter");
    const PackedBatch b = small_batch(base->config().vocab_size);
    const double want = m.forward(b);
    const std::string bin = CRUCIBLE_BINARY;
    const std::string q = " 2> " + (dir.path() / "err.txt").string();
    ASSERT_EQ(
        std::system((bin + " convert --to hf --lora " + (dir.path() / "adapter").string() + " " +
                     (dir.path() / "base").string() + " " + (dir.path() / "merged").string() + q)
                        .c_str()),
        0)
        << read_file(dir.path() / "err.txt");
    auto merged = load_model(dir.path() / "merged");
    EXPECT_NEAR(merged->forward(b), want, 1e-5 * std::fabs(want));
    EXPECT_TRUE(fs::exists(dir.path() / "merged" / "tokenizer.json"));
    EXPECT_NE(base->forward(b), want) << "the adapter changed nothing; the test cannot tell";
    ASSERT_EQ(
        std::system((bin + " convert --to gguf --type f32 --lora " +
                     (dir.path() / "adapter").string() + " " + (dir.path() / "base").string() +
                     " " + (dir.path() / "merged.gguf").string() + q)
                        .c_str()),
        0)
        << read_file(dir.path() / "err.txt");
    const GgufFile g = read_gguf(dir.path() / "merged.gguf");
    const std::vector<float> k = g.tensor_f32("blk.1.attn_k.weight");
    const float* want_k = merged->param("model.layers.1.self_attn.k_proj.weight");
    for (size_t i = 0; i < k.size(); i++) ASSERT_EQ(k[i], want_k[i]) << i;
    // A LoRA checkpoint given as IN_DIR (an adapter folder naming its base) converts merged,
    // never as the bare base.
    save_lora_adapter(m, dir.path() / "ckpt", (dir.path() / "base").string());
    ASSERT_EQ(std::system((bin + " convert --to hf " + (dir.path() / "ckpt").string() + " " +
                           (dir.path() / "merged2").string() + q)
                              .c_str()),
              0)
        << read_file(dir.path() / "err.txt");
    EXPECT_NEAR(load_model(dir.path() / "merged2")->forward(b), want, 1e-5 * std::fabs(want));
    EXPECT_THROW(save_model(m, dir.path() / "bare"), Error);  // adapters are never dropped
    // A second hf conversion into the same folder is refused.
    EXPECT_NE(std::system((bin + " convert --to hf " + (dir.path() / "base").string() + " " +
                           (dir.path() / "merged").string() + q)
                              .c_str()),
              0);
}

// ../shared/reference/environments-and-scale.md: Qwen2.5-0.5B with adapters on every linear
// layer has 549,888 x r adapter parameters. One layer of that shape (24 in the model) holds a
// 24th of them.
TEST(Lora, TheAdapterCountOfQwen25HalfBIsThePublishedOne) {
    ModelConfig c;
    c.vocab_size = 16;
    c.hidden_size = 896;
    c.intermediate_size = 4864;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 14;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.max_position_embeddings = 8;
    Model m(c);
    m.enable_lora(LoraConfig{}, 1);  // rank 16, all seven projections
    EXPECT_EQ(24 * m.lora_num_params(), 549888u * 16);
}
