// The whole model against PyTorch: logits, loss, every parameter gradient and 10 AdamW steps
// on fixtures written by scripts/gen_model_fixtures.py (an independent PyTorch
// implementation that runs each sequence separately, so packing is checked too).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "fixture_batch.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"

namespace crucible {
namespace {

struct Fixture {
    SafetensorsFile file;
    ModelConfig config;
    PackedBatch batch;
    explicit Fixture(const std::string& name)
        : file(std::string(CRUCIBLE_FIXTURE_DIR) + "/" + name + ".safetensors") {
        config = parse_model_config(nlohmann::json::parse(file.metadata().at("config")), name);
        batch = testutil::fixture_batch(file);
    }
    std::vector<float> f32(const std::string& name) const {
        return testutil::fixture_f32(file, name);
    }
};

using testutil::rel_error;

class ModelVsTorch : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelVsTorch, LogitsLossAndGradients) {
    Fixture fx(GetParam());
    Model model(fx.config);
    load_weights(model, fx.file, /*allow_extra=*/true);
    model.zero_grads();
    const double loss = model.forward(fx.batch);
    const float ref_loss = fx.f32("ref.loss")[0];
    EXPECT_NEAR(loss, ref_loss, 1e-4 * std::fabs(ref_loss));
    EXPECT_LT(rel_error(model.logits(), fx.f32("ref.logits")), 1e-4);
    model.backward();
    for (const TensorInfo& t : model.tensors()) {
        const double err = rel_error(model.grads() + t.offset, fx.f32("grad." + t.name));
        EXPECT_LT(err, 1e-3) << t.name;
    }
}

TEST_P(ModelVsTorch, TenAdamWStepsMatchTorch) {
    Fixture fx(GetParam());
    Model model(fx.config);
    load_weights(model, fx.file, /*allow_extra=*/true);
    const auto hp = nlohmann::json::parse(fx.file.metadata().at("adamw"));
    const std::vector<float> ref = fx.f32("ref.adamw_losses");
    std::vector<float> m(model.num_params(), 0.0f), v(model.num_params(), 0.0f);
    for (int step = 0; step < hp["steps"].get<int>(); step++) {
        model.zero_grads();
        const double loss = model.forward(fx.batch);
        EXPECT_NEAR(loss, ref[step], 1e-4 * std::fabs(ref[step])) << "step " << step;
        model.backward();
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1
        const double norm = kernels::global_norm(model.grads(), model.num_params());
        const double coef = hp["grad_clip"].get<double>() / (norm + 1e-6);
        if (coef < 1.0) kernels::scale_inplace(model.grads(), model.num_params(), (float)coef);
        for (const TensorInfo& t : model.tensors()) {
            const kernels::AdamWParams p{hp["lr"].get<float>(), hp["beta1"].get<float>(),
                                         hp["beta2"].get<float>(), hp["eps"].get<float>(),
                                         t.decay ? hp["weight_decay"].get<float>() : 0.0f};
            kernels::adamw_update(model.params() + t.offset, model.grads() + t.offset,
                                  m.data() + t.offset, v.data() + t.offset, t.numel, p, step + 1);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelVsTorch,
                         ::testing::Values("model_qwen2_tied", "model_qwen2_untied",
                                           "model_llama_headdim"));

}  // namespace
}  // namespace crucible
