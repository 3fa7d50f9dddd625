// The model with bfloat16 matmuls: against its own fp32 path within the bands docs/PERFORMANCE.md
// states, and never on a stale bf16 copy of weights that changed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model_util.h"
#include "test_util.h"

using namespace crucible;

namespace {

ModelConfig bf16_test_config() {
    ModelConfig c = testutil::tiny_model_config(300, 64);
    c.hidden_size = 64;
    c.intermediate_size = 160;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.qkv_bias = true;
    return c;
}

PackedBatch test_batch(int vocab) {
    PackedBatch b;
    uint64_t x = 7;
    for (int len : {23, 9, 31}) {
        std::vector<int32_t> in(len), next(len);
        std::vector<float> w(len, 1.0f / 60);
        for (int i = 0; i < len; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            in[i] = (int32_t)((x >> 33) % vocab);
            next[i] = (int32_t)((x >> 13) % vocab);
        }
        b.add_sequence(in, next, w);
    }
    return b;
}

double norm(const float* a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return std::sqrt(s);
}

}  // namespace

TEST(ModelBf16, DtypeNamesAreCheckedAndTheDefaultIsFloat32) {
    EXPECT_EQ(parse_matmul_dtype("bfloat16", "train.dtype"), MatmulDtype::bfloat16);
    EXPECT_EQ(parse_matmul_dtype("float32", "train.dtype"), MatmulDtype::float32);
    try {
        parse_matmul_dtype("bf16", "train.dtype");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("train.dtype"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("bfloat16"), std::string::npos);
    }
    EXPECT_EQ(Model(bf16_test_config()).matmul_dtype(), MatmulDtype::float32);
}

// The stated bands (docs/PERFORMANCE.md, "BF16"): per-token loss within 0.02 of fp32's, every
// parameter tensor's gradient within 3% relative L2 error of fp32's, for weights of std 0.05.
// This shape measures 0.005 and 1.0%: the bands sit 3-4x above, so they catch a kernel that
// drops or doubles a term (tens of percent) and never an honest rounding. (The error grows with
// the logits' scale: at std 0.2, 0.075 per token.)
TEST(ModelBf16, ForwardAndBackwardStayWithinTheStatedBandsOfFp32) {
    const ModelConfig c = bf16_test_config();
    Model a(c), b(c);
    a.init_random(11, 0.05f);
    b.init_random(11, 0.05f);
    b.set_matmul_dtype(MatmulDtype::bfloat16);
    const PackedBatch batch = test_batch(c.vocab_size);
    a.zero_grads();
    b.zero_grads();
    const double la = a.forward(batch), lb = b.forward(batch);
    double worst_token = 0;
    for (int n = 0; n < batch.n_tokens(); n++) {
        worst_token =
            std::max(worst_token, (double)std::fabs(a.token_losses()[n] - b.token_losses()[n]));
    }
    EXPECT_LT(worst_token, 0.02);
    EXPECT_GT(worst_token, 0.0) << "the bf16 path computed exactly the fp32 numbers";
    EXPECT_NEAR(la, lb, 0.02 * std::fabs(la));
    a.backward();
    b.backward();
    double worst_grad = 0;
    for (const TensorInfo& t : a.tensors()) {
        std::vector<float> d(t.numel);
        for (size_t i = 0; i < t.numel; i++)
            d[i] = a.grads()[t.offset + i] - b.grads()[t.offset + i];
        const double rel = norm(d.data(), t.numel) / norm(a.grads() + t.offset, t.numel);
        EXPECT_LT(rel, 0.03) << t.name;
        worst_grad = std::max(worst_grad, rel);
    }
    RecordProperty("worst_token_loss_diff", std::to_string(worst_token));
    RecordProperty("worst_grad_rel_l2", std::to_string(worst_grad));
}

// Weights written through params() (an optimizer step, a load) are what the next forward pass
// uses: the result equals a model built with those weights from the start.
TEST(ModelBf16, AWeightChangeIsSeenByTheNextForwardPass) {
    const ModelConfig c = bf16_test_config();
    Model m(c);
    m.init_random(5, 0.2f);
    m.set_matmul_dtype(MatmulDtype::bfloat16);
    const PackedBatch batch = test_batch(c.vocab_size);
    const double before = m.forward(batch);
    float* w = m.params();
    for (size_t i = 0; i < m.num_params(); i++) w[i] *= 1.25f;
    const double after = m.forward(batch);
    Model fresh(c);
    std::copy(m.params(), m.params() + m.num_params(), fresh.params());
    fresh.set_matmul_dtype(MatmulDtype::bfloat16);
    EXPECT_NE(before, after);
    EXPECT_EQ(after, fresh.forward(batch));
    // and through param(name)
    m.param("model.norm.weight")[0] += 1.0f;
    m.param("lm_head.weight")[3] += 1.0f;
    fresh.param("model.norm.weight")[0] += 1.0f;
    fresh.param("lm_head.weight")[3] += 1.0f;
    EXPECT_EQ(m.forward(batch), fresh.forward(batch));
    // Back to float32: the exact fp32 numbers again.
    Model exact(c);
    std::copy(m.params(), m.params() + m.num_params(), exact.params());
    m.set_matmul_dtype(MatmulDtype::float32);
    EXPECT_EQ(m.forward(batch), exact.forward(batch));
}

// An inference-only bf16 model gives its fp32 matrices back and runs exactly as before; what
// would need them (training, saving, another dtype, new weights) is a clear error.
TEST(ModelBf16, AReleasedModelRunsTheSameAndRefusesWhatNeedsTheFp32Weights) {
    const ModelConfig c = bf16_test_config();
    Model m(c);
    m.init_random(5, 0.05f);
    m.set_matmul_dtype(MatmulDtype::bfloat16);
    const PackedBatch batch = test_batch(c.vocab_size);
    const double before = m.forward(batch);
    m.release_fp32_matrices();
    EXPECT_TRUE(m.fp32_released());
    const Model& cm = m;
    // The whole pages inside a 40 KB matrix were given back: they read as zeros now.
    const TensorInfo* up = cm.find("model.layers.0.mlp.up_proj.weight");
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGE_SIZE);
    const float* first = cm.params() + up->offset;
    const auto begin = (const float*)(((uintptr_t)first + page - 1) / page * page);
    const auto end = (const float*)(((uintptr_t)(first + up->numel)) / page * page);
    ASSERT_GT(end - begin, (ptrdiff_t)(up->numel / 2));
    double released = 0;
    for (const float* p = begin; p < end; p++) released += std::fabs(*p);
    EXPECT_EQ(released, 0.0) << "the matrix's pages still hold its fp32 values";
    EXPECT_EQ(m.forward(batch), before);
    EXPECT_THROW(m.backward(), Error);
    testutil::TempDir dir;
    EXPECT_THROW(save_model(m, dir.path() / "out"), Error);
    EXPECT_THROW(m.set_matmul_dtype(MatmulDtype::float32), Error);
    m.params()[0] = 1.0f;  // a write the bf16 copy cannot follow
    EXPECT_THROW(m.forward(batch), Error);
    Model f(c);
    EXPECT_THROW(f.release_fp32_matrices(), Error);  // a float32 model needs its matrices
}

// Loading with the matrices held in bf16 alone computes what loading in fp32 and switching to
// bf16 computes, bit for bit; the matrices' fp32 pages were never kept.
TEST(ModelBf16, LoadingStraightToBf16ComputesTheSameAsConvertingAfterTheLoad) {
    testutil::TempDir dir;
    const ModelConfig c = bf16_test_config();
    Model m(c);
    m.init_random(21, 0.05f);
    save_model(m, dir.path());
    auto full = load_model(dir.path());
    full->set_matmul_dtype(MatmulDtype::bfloat16);
    auto lean = load_model(dir.path(), MatmulDtype::bfloat16);
    EXPECT_TRUE(lean->fp32_released());
    EXPECT_EQ(lean->matmul_dtype(), MatmulDtype::bfloat16);
    const PackedBatch batch = test_batch(c.vocab_size);
    EXPECT_EQ(full->forward(batch), lean->forward(batch));
    // norms and biases stay fp32
    const Model& cl = *lean;
    EXPECT_EQ(cl.params()[cl.find("model.norm.weight")->offset],
              m.params()[m.find("model.norm.weight")->offset]);
    EXPECT_THROW(lean->backward(), Error);  // no adapters: nothing may train
}
