// HF model folders both ways, with PyTorch as the other party: folders written by
// scripts/hf_folder.py (its own safetensors writer; F32, BF16, sharded) load here with logits
// matching PyTorch's, and folders saved here load in that script with matching logits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

const std::string kScript =
    fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path() / "scripts" / "hf_folder.py";

fs::path fresh_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("crucible_hf_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(d);
    return d;
}

int run(const std::string& args) {
    const std::string cmd = "/usr/bin/python3 " + kScript + " " + args + " > /dev/null";
    return std::system(cmd.c_str());
}

// Logits of `model` on `tokens` (one sequence).
std::vector<float> logits_of(Model& model, const std::vector<int32_t>& tokens) {
    PackedBatch b;
    b.add_sequence(tokens, std::vector<int32_t>(tokens.size(), 0),
                   std::vector<float>(tokens.size(), 0.0f));
    model.forward(b);
    const size_t n = tokens.size() * model.config().vocab_size;
    return std::vector<float>(model.logits(), model.logits() + n);
}

struct Reference {
    std::vector<int32_t> tokens;
    std::vector<float> logits;
};

Reference read_reference(const fs::path& file) {
    SafetensorsFile f(file);
    Reference r;
    r.tokens.resize(f.at("tokens").numel());
    f.at("tokens").to_i32(r.tokens.data());
    r.logits.resize(f.at("logits").numel());
    f.at("logits").to_f32(r.logits.data());
    return r;
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0, s = 1e-12;
    for (size_t i = 0; i < b.size(); i++) {
        d = std::max(d, (double)std::fabs(a[i] - b[i]));
        s = std::max(s, (double)std::fabs(b[i]));
    }
    return d / s;
}

struct Case {
    const char* name;
    const char* args;
};

class HfFolder : public ::testing::TestWithParam<Case> {};

TEST_P(HfFolder, PyTorchFolderLoadsWithMatchingLogitsAndOurFolderLoadsInPyTorch) {
    const fs::path dir = fresh_dir(GetParam().name);
    ASSERT_EQ(run("make " + dir.string() + " " + GetParam().args), 0);
    auto model = load_model(dir);
    const Reference ref = read_reference(dir / "reference.safetensors");
    ASSERT_EQ(ref.logits.size(), ref.tokens.size() * model->config().vocab_size);
    EXPECT_LT(rel_error(logits_of(*model, ref.tokens), ref.logits), 1e-4);

    // Back the other way: the folder we save, read by PyTorch with its own reader, must
    // reproduce the original model's logits.
    const fs::path out = dir / "saved";
    fs::create_directories(out);
    save_model(*model, out);
    nlohmann::json saved_config = nlohmann::json::parse(read_file(out / "config.json"));
    EXPECT_EQ(saved_config["model_type"], model->config().model_type);
    EXPECT_EQ(fs::exists(out / "model.safetensors"), true);
    SafetensorsFile saved(out / "model.safetensors");
    EXPECT_EQ(saved.has("lm_head.weight"), !model->config().tie_word_embeddings);
    EXPECT_EQ(
        run("check " + out.string() + " --reference " + (dir / "reference.safetensors").string()),
        0);
    fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, HfFolder,
    ::testing::Values(Case{"qwen2_tied_f32", "--arch qwen2 --seed 1 --tied"},
                      Case{"qwen2_untied_bf16", "--arch qwen2 --seed 2 --dtype bf16"},
                      Case{"llama_sharded", "--arch llama --seed 3 --shards 3"},
                      Case{"llama_bf16_sharded", "--arch llama --seed 4 --dtype bf16 --shards 2"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(HfFolderErrors, IndexNamingAMissingShardOrTensorIsAnError) {
    const fs::path dir = fresh_dir("broken");
    ASSERT_EQ(run("make " + dir.string() + " --arch qwen2 --seed 5 --shards 2"), 0);
    const fs::path index = dir / "model.safetensors.index.json";
    nlohmann::json j = nlohmann::json::parse(read_file(index));
    j["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors";
    write_file_durable(index, j.dump());
    try {
        load_model(dir);
        FAIL() << "a missing shard must be an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model-00009-of-00009.safetensors"), std::string::npos)
            << e.what();
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace crucible
