// Q8_0 matrices: the kernels against the fp32 kernels over the dequantized matrix (GGUF's own
// decoder, model/gguf), and a q8_0 model against the fp32 model whose matrices are those values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "kernels/q8_0_linear.h"
#include "kernels/small_batch_linear.h"
#include "model/checkpoint.h"
#include "model/float_formats.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model_util.h"
#include "test_util.h"

using namespace crucible;
namespace k = crucible::kernels;

namespace {

std::vector<float> random_values(size_t n, uint64_t seed, float scale) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = (float)(rng.normal() * scale);
    return v;
}

// A weight matrix whose blocks span the scales a model meets: ordinary, tiny (subnormal fp16
// scales), all zero, and one block with a single outlier.
std::vector<float> test_matrix(int OC, int C, uint64_t seed) {
    std::vector<float> w = random_values((size_t)OC * C, seed, 0.05f);
    for (int j = 0; j < C && OC > 2; j++) {
        w[(size_t)1 * C + j] *= 1e-5f;  // d below fp16's normal range
        w[(size_t)2 * C + j] = 0.0f;
    }
    if (OC > 3) w[(size_t)3 * C + 5] = 40.0f;
    return w;
}

float fp16_round(float x) {
    return fp16_to_fp32(fp32_to_fp16(x));
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

ModelConfig q8_test_config() {
    ModelConfig c = testutil::tiny_model_config(320, 128);
    c.hidden_size = 64;
    c.intermediate_size = 96;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.qkv_bias = true;
    c.tie_word_embeddings = false;
    return c;
}

// The fp32 model whose every matrix is the Q8_0 rounding of m's (norms and biases as they are).
std::unique_ptr<Model> dequantized_copy(const Model& m) {
    auto d = std::make_unique<Model>(m.config());
    std::memcpy(d->params(), m.params(), m.num_params() * 4);
    for (const TensorInfo& t : m.tensors()) {
        if (t.shape.size() != 2) continue;
        const std::vector<uint8_t> q = encode_ggml(GgmlType::q8_0, m.params() + t.offset, t.numel);
        decode_ggml(GgmlType::q8_0, q.data(), t.numel, d->params() + t.offset);
    }
    return d;
}

PackedBatch batch_of(int vocab, std::initializer_list<int> lengths, uint64_t seed) {
    PackedBatch b;
    Rng rng(seed);
    for (int len : lengths) {
        std::vector<int32_t> in(len), next(len);
        for (int i = 0; i < len; i++) {
            in[i] = (int32_t)rng.below(vocab);
            next[i] = (int32_t)rng.below(vocab);
        }
        b.add_sequence(in, next, std::vector<float>(len, 1.0f / 100));
    }
    return b;
}

}  // namespace

TEST(Q8_0Linear, DequantizingIsGgufsDecoder) {
    const int n = 32 * 40;
    const std::vector<float> w = test_matrix(40, 32, 1);
    const std::vector<uint8_t> q = encode_ggml(GgmlType::q8_0, w.data(), n);
    std::vector<float> ours(n), gguf(n);
    k::dequantize_q8_0(ours.data(), q.data(), n);
    decode_ggml(GgmlType::q8_0, q.data(), n, gguf.data());
    EXPECT_TRUE(same_bits(ours, gguf));
    // Worked by hand: a block of 0, 1, ..., 31 has d = 31/127 rounded to fp16 and q_j = j * 127/31
    // rounded; the outlier row keeps its 40 exactly (it sets its block's scale).
    std::vector<float> ramp(32);
    for (int j = 0; j < 32; j++) ramp[j] = (float)j;
    const std::vector<uint8_t> qr = encode_ggml(GgmlType::q8_0, ramp.data(), 32);
    std::vector<float> back(32);
    k::dequantize_q8_0(back.data(), qr.data(), 32);
    const float d = fp16_round(31.0f / 127.0f);
    for (int j = 0; j < 32; j++) {
        EXPECT_EQ(back[j], std::roundf(j * (127.0f / 31.0f)) * d) << j;
    }
    EXPECT_NEAR(ours[3 * 32 + 5], 40.0f, 40.0f / 2048);
}

TEST(Q8_0Linear, ForwardIsTheFp32KernelOverTheDequantizedMatrix) {
    // Row counts of every kernel class (weight stream 1-4, small batch 5-128, sgemm above) and
    // shapes with ragged panels (OC not a multiple of the panel or the 12-row tile).
    for (const auto& [C, OC] :
         std::vector<std::pair<int, int>>{{32, 7}, {96, 100}, {1024, 77}, {2048, 130}}) {
        const std::vector<float> w = test_matrix(OC, C, C + OC);
        const std::vector<uint8_t> q = encode_ggml(GgmlType::q8_0, w.data(), w.size());
        std::vector<float> deq(w.size());
        decode_ggml(GgmlType::q8_0, q.data(), w.size(), deq.data());
        const std::vector<float> bias = random_values(OC, 9, 0.1f);
        for (int N : {1, 2, 3, 4, 5, 17, 128, 129, 300}) {
            const std::vector<float> x = random_values((size_t)N * C, N, 1.0f);
            for (const float* b : {(const float*)nullptr, bias.data()}) {
                std::vector<float> ours((size_t)N * OC), ref((size_t)N * OC);
                k::linear_forward_q8_0(ours.data(), x.data(), q.data(), b, N, C, OC);
                k::linear_forward(ref.data(), x.data(), deq.data(), b, N, C, OC);
                if (N <= k::kSmallBatchMaxRows) {
                    EXPECT_TRUE(same_bits(ours, ref)) << "N " << N << " C " << C << " OC " << OC;
                    continue;
                }
                // sgemm blocks its sums by the matrix's size: a panel may round differently.
                double worst = 0;
                for (size_t i = 0; i < ours.size(); i++) {
                    const int n = (int)(i / OC), o = (int)(i % OC);
                    double mag = b ? std::fabs(b[o]) : 0.0;
                    for (int c = 0; c < C; c++) {
                        mag += std::fabs((double)x[(size_t)n * C + c] * deq[(size_t)o * C + c]);
                    }
                    worst = std::max(worst, std::fabs((double)ours[i] - ref[i]) / (mag + 1e-30));
                }
                EXPECT_LT(worst, 1e-6) << "N " << N << " C " << C << " OC " << OC;
            }
        }
    }
}

TEST(Q8_0Linear, BackwardIsTheSumOverTheDequantizedMatrix) {
    const int C = 1024, OC = 300;  // several panels of rows
    const std::vector<float> w = test_matrix(OC, C, 4);
    const std::vector<uint8_t> q = encode_ggml(GgmlType::q8_0, w.data(), w.size());
    std::vector<float> deq(w.size());
    decode_ggml(GgmlType::q8_0, q.data(), w.size(), deq.data());
    for (int N : {1, 5, 200}) {
        const std::vector<float> dout = random_values((size_t)N * OC, 100 + N, 1.0f);
        std::vector<float> dinp((size_t)N * C, 0.5f);  // accumulates
        k::linear_backward_q8_0(dinp.data(), dout.data(), q.data(), N, C, OC);
        double worst = 0;
        for (int n = 0; n < N; n++) {
            for (int c = 0; c < C; c++) {
                double s = 0.5, mag = 0;
                for (int o = 0; o < OC; o++) {
                    const double p = (double)dout[(size_t)n * OC + o] * deq[(size_t)o * C + c];
                    s += p;
                    mag += std::fabs(p);
                }
                worst = std::max(worst, std::fabs(dinp[(size_t)n * C + c] - s) / (mag + 0.5));
            }
        }
        EXPECT_LT(worst, 1e-6) << "N " << N;  // fp32 sums of 300 products
    }
}

TEST(Q8_0Linear, EmbeddingRowsAreTheDequantizedRows) {
    const int V = 50, C = 64;
    const std::vector<float> w = test_matrix(V, C, 8);
    const std::vector<uint8_t> q = encode_ggml(GgmlType::q8_0, w.data(), w.size());
    std::vector<float> deq(w.size());
    decode_ggml(GgmlType::q8_0, q.data(), w.size(), deq.data());
    const std::vector<int32_t> tokens{3, 0, 49, 3, 17};
    std::vector<float> out(tokens.size() * C);
    k::embedding_forward_q8_0(out.data(), tokens.data(), q.data(), (int)tokens.size(), C);
    for (size_t n = 0; n < tokens.size(); n++) {
        EXPECT_EQ(0, std::memcmp(out.data() + n * C, deq.data() + (size_t)tokens[n] * C, C * 4));
    }
}

TEST(ModelQ8_0, ComputesTheFp32ModelOverTheDequantizedMatrices) {
    Model m(q8_test_config());
    m.init_random(5, 0.05f);
    auto ref = dequantized_copy(m);
    m.set_matmul_dtype(MatmulDtype::q8_0);
    // 63 rows (the small-batch kernel) and 210 rows (sgemm): the same loss and logits, bit for bit.
    for (const PackedBatch& b : {batch_of(320, {23, 9, 31}, 1), batch_of(320, {90, 120}, 2)}) {
        const double loss = m.forward(b);
        EXPECT_EQ(loss, ref->forward(b));
        const size_t n = (size_t)b.n_tokens() * 320;
        EXPECT_EQ(0, std::memcmp(m.logits(), ref->logits(), n * 4));
    }
    // Its own weights do not train; the master weights are untouched by quantizing.
    EXPECT_THROW(m.backward(), Error);
    const std::string name = "model.layers.0.mlp.up_proj.weight";
    EXPECT_NE(0, std::memcmp(m.param(name), ref->param(name), 64 * 4));
    // A weight change is seen by the next forward pass (the copy is re-derived).
    m.param(name)[0] += 1.0f;
    ref = dequantized_copy(m);
    const PackedBatch b = batch_of(320, {40}, 3);
    EXPECT_EQ(m.forward(b), ref->forward(b));
}

TEST(ModelQ8_0, LoadingStraightToQ8_0IsTheSameAsQuantizingAfterTheLoad) {
    testutil::TempDir dir;
    Model m(q8_test_config());
    m.init_random(21, 0.05f);
    save_model(m, dir.path());
    auto full = load_model(dir.path());
    full->set_matmul_dtype(MatmulDtype::q8_0);
    auto lean = load_model(dir.path(), MatmulDtype::q8_0);
    EXPECT_TRUE(lean->fp32_released());
    EXPECT_EQ(lean->matmul_dtype(), MatmulDtype::q8_0);
    const PackedBatch batch = batch_of(320, {23, 9, 31}, 4);
    EXPECT_EQ(full->forward(batch), lean->forward(batch));
    EXPECT_THROW(lean->set_matmul_dtype(MatmulDtype::float32), Error);
    EXPECT_THROW(save_model(*lean, dir.path() / "x"), Error);
}

TEST(ModelQ8_0, LoraOverAQ8_0BaseIsLoraOverTheDequantizedBase) {
    Model m(q8_test_config());
    m.init_random(6, 0.05f);
    auto ref = dequantized_copy(m);
    const LoraConfig lora{4, 8.0, {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"}};
    m.set_matmul_dtype(MatmulDtype::q8_0);
    m.release_fp32_matrices();
    m.enable_lora(lora, 7);
    ref->enable_lora(lora, 7);
    // B = 0 makes every adapter gradient but dB zero: give B values so dA flows too.
    for (Model* x : {&m, ref.get()}) {
        Rng rng(8);
        for (size_t i = 0; i < x->lora_num_params(); i++) {
            x->lora_params()[i] = (float)(rng.normal() * 0.05);
        }
    }
    const PackedBatch b = batch_of(320, {50, 70, 30}, 5);  // 150 rows: sgemm
    EXPECT_EQ(m.forward(b), ref->forward(b));
    std::memset(m.lora_grads(), 0, m.lora_num_params() * 4);
    std::memset(ref->lora_grads(), 0, ref->lora_num_params() * 4);
    m.backward();
    ref->backward();
    // The base's input gradients are summed a panel of rows at a time: the same sums in
    // another order, so the adapter gradients agree to fp32 rounding.
    for (const TensorInfo& t : m.lora_tensors()) {
        double diff = 0, mag = 0;
        for (size_t i = 0; i < t.numel; i++) {
            diff +=
                std::pow((double)m.lora_grads()[t.offset + i] - ref->lora_grads()[t.offset + i], 2);
            mag += std::pow((double)ref->lora_grads()[t.offset + i], 2);
        }
        EXPECT_GT(mag, 0.0) << t.name;
        EXPECT_LT(std::sqrt(diff / mag), 1e-5) << t.name;
    }
    // Merging the adapters into the quantized base is refused with the reason.
    try {
        m.merge_lora();
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
    }
}

TEST(ModelQ8_0, TheEnginesLogprobsAreTheTrainersSoTheFirstRatioIsExactlyOne) {
    Model m(q8_test_config());
    m.init_random(11, 0.3f);
    m.set_matmul_dtype(MatmulDtype::q8_0);
    GenerationRequest r;
    r.prompt = {9, 8, 7, 6, 5};
    r.params.temperature = 1.0f;
    r.params.max_tokens = 12;
    r.params.seed = 5;
    r.params.logprobs = 1;
    r.n = 6;  // every engine step has at least 5 rows, as the trainer's forward does
    const auto out = Engine(m).generate({r});
    PackedBatch b;
    for (const auto& s : out[0]) {
        std::vector<int32_t> seq(r.prompt);
        seq.insert(seq.end(), s.tokens.begin(), s.tokens.end());
        b.add_sequence(std::vector<int32_t>(seq.begin(), seq.end() - 1),
                       std::vector<int32_t>(seq.begin() + 1, seq.end()),
                       std::vector<float>(seq.size() - 1, 0.0f));
    }
    m.forward(b);
    for (size_t i = 0; i < out[0].size(); i++) {
        for (size_t t = 0; t < out[0][i].tokens.size(); t++) {
            const float trainer = -m.token_losses()[b.seq_start[i] + r.prompt.size() - 1 + t];
            EXPECT_EQ(std::exp(out[0][i].logprobs[t] - trainer), 1.0f);  // ratio exactly 1
        }
    }
}

TEST(ModelQ8_0, ShapesThatDoNotFitItsBlocksAreRefusedByName) {
    ModelConfig c = q8_test_config();
    c.intermediate_size = 80;  // down_proj's input: not a multiple of 32
    Model m(c);
    m.init_random(1, 0.05f);
    try {
        m.set_matmul_dtype(MatmulDtype::q8_0);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("down_proj.weight has input size 80"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(m.matmul_dtype(), MatmulDtype::float32);  // unchanged
    // Values Q8_0 cannot hold (a NaN, an inf, a block scale past fp16's range) are named, never
    // quantized into NaN blocks.
    const ModelConfig ok = q8_test_config();
    for (float bad : {NAN, INFINITY, 1e7f}) {
        Model q(ok);
        q.init_random(2, 0.05f);
        q.param("model.layers.1.mlp.up_proj.weight")[70] = bad;
        q.set_matmul_dtype(MatmulDtype::q8_0);
        try {
            q.forward(batch_of(320, {5}, 1));
            FAIL() << bad;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("up_proj.weight: element 70"), std::string::npos)
                << e.what();
        }
    }
    Model edge(ok);  // the largest magnitude it holds
    edge.init_random(2, 0.05f);
    edge.param("model.layers.1.mlp.up_proj.weight")[70] = 65504.0f * 127.0f;
    edge.set_matmul_dtype(MatmulDtype::q8_0);
    EXPECT_NO_THROW(edge.forward(batch_of(320, {5}, 1)));
    EXPECT_EQ(parse_matmul_dtype("q8_0", "--dtype"), MatmulDtype::q8_0);
    EXPECT_THROW(parse_matmul_dtype("q8", "--dtype"), Error);
}
