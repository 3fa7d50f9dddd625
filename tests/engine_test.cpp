// The generation engine against the reference generator (full recompute per token, the
// trainer's forward): greedy outputs agree whatever the batching, chunking and sharing;
// seeded sampling is reproducible; the samplers draw from their definitions.
#include "engine/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "core/error.h"
#include "engine/kv_cache.h"
#include "engine/reference_generate.h"
#include "engine/sampler.h"
#include "model_util.h"

namespace crucible {
namespace {

ModelConfig tiny_config() {
    ModelConfig c = testutil::tiny_model_config(61, 96);
    c.rope_theta = 10000.0f;
    return c;
}

// A random model with large enough weights that greedy continuations vary by prompt.
Model& tiny_model() {
    static Model* m = [] {
        auto* model = new Model(tiny_config());
        model->init_random(11, 0.3f);
        return model;
    }();
    return *m;
}

std::vector<std::vector<int32_t>> prompts() {
    return {{1, 2, 3},
            {5},
            {7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24},
            {30, 31},
            {40, 41, 42, 43, 44, 45, 46}};
}

std::vector<GenerationRequest> greedy_requests(int max_tokens, int n = 1) {
    std::vector<GenerationRequest> reqs;
    for (const auto& p : prompts()) {
        GenerationRequest r;
        r.prompt = p;
        r.params.temperature = 0.0f;
        r.params.max_tokens = max_tokens;
        r.n = n;
        reqs.push_back(r);
    }
    return reqs;
}

// A model that only generates holds no gradient buffer (its weights' size again: 2 GB for a
// 0.5B model); training allocates it, zeroed, on first use.
TEST(Engine, AGeneratingModelHoldsNoGradients) {
    Model model(tiny_config());
    model.init_random(5, 0.3f);
    const Model& view = model;
    EXPECT_EQ(view.grads(), nullptr);
    Engine engine(model, EngineOptions{});
    GenerationRequest r = greedy_requests(4)[0];
    r.params.logprobs = 0;  // re-scored through Model::forward, the trainer's function
    const auto out = engine.generate({r});
    EXPECT_EQ(out[0][0].logprobs.size(), out[0][0].tokens.size());
    EXPECT_EQ(view.grads(), nullptr);
    model.zero_grads();
    ASSERT_NE(view.grads(), nullptr);
    for (size_t i = 0; i < model.num_params(); i++) ASSERT_EQ(view.grads()[i], 0.0f);
}

// This process's resident memory in MiB (Linux: /proc/self/statm, pages).
double resident_mib() {
    long pages_total = 0, pages_resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return -1;
    const int got = std::fscanf(f, "%ld %ld", &pages_total, &pages_resident);
    std::fclose(f);
    return got == 2 ? pages_resident * (sysconf(_SC_PAGESIZE) / 1048576.0) : -1;
}

// The KV pool is reserved, not written: a 256 MiB pool costs no resident memory until blocks
// are written, and then about what the written blocks hold.
TEST(KvCache, ThePoolBecomesResidentAsBlocksAreWritten) {
#ifdef CRUCIBLE_SANITIZED
    GTEST_SKIP() << "the sanitizers' shadow memory is what this would measure";
#endif
    const ModelConfig c = tiny_config();  // 2 layers, kv_dim 16: 2 KiB of K per block
    const int blocks = 65536;             // 128 MiB of K and 128 MiB of V
    const double before = resident_mib();
    ASSERT_GT(before, 0);
    KvCache cache(c, blocks);
    const double reserved = resident_mib();
    EXPECT_LT(reserved - before, 16.0) << "the whole pool became resident at construction";
    // 1,024 blocks written (16,384 tokens of every layer): 4 MiB of K and V.
    KvCache::Table t;
    ASSERT_TRUE(cache.reserve(t, 1024 * KvCache::kBlockSize));
    for (int pos = 0; pos < 1024 * KvCache::kBlockSize; pos++) {
        t.length = pos + 1;
        for (int l = 0; l < c.num_hidden_layers; l++) {
            std::fill_n(cache.k_at(t, l, pos), c.kv_dim(), 1.0f);
            std::fill_n(cache.v_at(t, l, pos), c.kv_dim(), 1.0f);
        }
    }
    const double written = resident_mib();
    EXPECT_GT(written - reserved, 3.0);
    EXPECT_LT(written - reserved, 16.0);
}

TEST(Engine, GreedyMatchesReferenceGenerationBatchedOrOneAtATime) {
    Model& model = tiny_model();
    const int max_new = 20;
    const auto ref = greedy_generate_reference(model, prompts(), max_new, /*stop_token=*/-1);
    Engine batched(model);
    const auto all = batched.generate(greedy_requests(max_new));
    for (size_t r = 0; r < ref.size(); r++) {
        EXPECT_EQ(all[r][0].tokens, ref[r]) << "prompt " << r;
        EXPECT_EQ(all[r][0].finish_reason, "length");
        Engine single(model);
        const auto one = single.generate({greedy_requests(max_new)[r]});
        EXPECT_EQ(one[0][0].tokens, ref[r]) << "prompt " << r << " alone";
    }
    // Continuous batching really batched: fewer forward passes than sequences x tokens.
    EXPECT_LT(batched.steps(), 5 * (max_new + 1));
}

TEST(Engine, ChunkedPrefillAndSmallKvPoolGiveTheSameTokens) {
    Model& model = tiny_model();
    const auto ref = greedy_generate_reference(model, prompts(), 12, -1);
    EngineOptions small;
    small.max_batch_tokens = 4;  // prompts prefill in chunks of <= 4 rows
    small.kv_blocks = 12;        // requests wait for blocks instead of all running at once
    Engine engine(model, small);
    const auto out = engine.generate(greedy_requests(12));
    for (size_t r = 0; r < ref.size(); r++) EXPECT_EQ(out[r][0].tokens, ref[r]) << r;
}

TEST(Engine, SamplesShareThePromptAndGreedySamplesAgree) {
    Model& model = tiny_model();
    const auto ref = greedy_generate_reference(model, prompts(), 10, -1);
    Engine engine(model);
    const auto out = engine.generate(greedy_requests(10, /*n=*/4));
    for (size_t r = 0; r < ref.size(); r++) {
        ASSERT_EQ(out[r].size(), 4u);
        for (const auto& s : out[r]) EXPECT_EQ(s.tokens, ref[r]) << r;
    }
    // The prompt was prefilled once per request, not once per sample.
    size_t prompt_tokens = 0;
    for (const auto& p : prompts()) prompt_tokens += p.size();
    EXPECT_EQ(engine.prefill_tokens(), (int64_t)prompt_tokens);
}

TEST(Engine, SeededSamplingIsReproducibleAndSamplesDiffer) {
    Model& model = tiny_model();
    GenerationRequest r;
    r.prompt = {3, 4, 5};
    r.params.temperature = 1.0f;
    r.params.max_tokens = 16;
    r.params.seed = 42;
    r.n = 6;
    Engine a(model), b(model);
    const auto x = a.generate({r}), y = b.generate({r});
    std::set<std::vector<int32_t>> distinct;
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(x[0][i].tokens, y[0][i].tokens);
        distinct.insert(x[0][i].tokens);
    }
    EXPECT_GT(distinct.size(), 1u);
    r.params.seed = 43;
    EXPECT_NE(Engine(model).generate({r})[0][0].tokens, x[0][0].tokens);
}

TEST(Engine, StopTokensAndMaxTokens) {
    Model& model = tiny_model();
    const auto ref = greedy_generate_reference(model, {{1, 2, 3}}, 20, -1);
    GenerationRequest r = greedy_requests(20)[0];
    r.params.stop_ids = {ref[0][4]};  // the fifth greedy token ends it (or an earlier repeat)
    const auto out = Engine(model).generate({r});
    const size_t stop_at = std::find(ref[0].begin(), ref[0].end(), ref[0][4]) - ref[0].begin();
    EXPECT_EQ(out[0][0].tokens, std::vector<int32_t>(ref[0].begin(), ref[0].begin() + stop_at + 1));
    EXPECT_EQ(out[0][0].finish_reason, "stop");
}

// The logprobs the engine reports are the trainer's: re-scoring the same packed batch with
// Model::forward gives the same numbers bit for bit, so an RL ratio at the first update is 1.
// (Scored in a different packing, the linear layers may take other kernels for the other row
// counts and the last bits move; the trainer must score old logprobs on its own micro-batches.)
// With bfloat16 matmuls too, as long as every step of the engine runs 5 rows or more (1 to 4
// take the weight stream, whose sums round differently): a 5-token prompt and 6 samples.
TEST(Engine, LogprobsAreTheTrainersSoTheFirstImportanceRatioIsExactlyOne) {
    for (MatmulDtype dtype : {MatmulDtype::float32, MatmulDtype::bfloat16}) {
        Model& model = tiny_model();
        model.set_matmul_dtype(dtype);
        const bool bf16 = dtype == MatmulDtype::bfloat16;
        GenerationRequest r;
        r.prompt = bf16 ? std::vector<int32_t>{9, 8, 7, 6, 5} : std::vector<int32_t>{9, 8, 7, 6};
        r.params.temperature = 1.0f;
        r.params.max_tokens = 12;
        r.params.seed = 5;
        r.params.logprobs = 3;
        r.n = bf16 ? 6 : 3;
        const auto out = Engine(model).generate({r});
        PackedBatch b;  // the samples in order, as the engine packs them
        for (const auto& s : out[0]) {
            std::vector<int32_t> seq(r.prompt);
            seq.insert(seq.end(), s.tokens.begin(), s.tokens.end());
            b.add_sequence(std::vector<int32_t>(seq.begin(), seq.end() - 1),
                           std::vector<int32_t>(seq.begin() + 1, seq.end()),
                           std::vector<float>(seq.size() - 1, 0.0f));
        }
        model.forward(b);
        for (size_t i = 0; i < out[0].size(); i++) {
            const auto& s = out[0][i];
            ASSERT_EQ(s.logprobs.size(), s.tokens.size());
            for (size_t t = 0; t < s.tokens.size(); t++) {
                const float trainer =
                    -model.token_losses()[b.seq_start[i] + r.prompt.size() - 1 + t];
                EXPECT_EQ(std::exp(s.logprobs[t] - trainer), 1.0f);  // ratio exactly 1
                ASSERT_EQ(s.top_logprobs[t].size(), 3u);
                EXPECT_GE(s.top_logprobs[t][0].logprob, s.logprobs[t]);  // the best is at least it
                EXPECT_LE(s.top_logprobs[t][0].logprob, 0.0f);
            }
        }
        model.set_matmul_dtype(MatmulDtype::float32);
    }
}

TEST(Engine, BadRequestsAreErrors) {
    Model& model = tiny_model();
    GenerationRequest r;
    r.params.max_tokens = 4;
    EXPECT_THROW(Engine(model).generate({r}), Error);  // empty prompt
    r.prompt = {1, 999};
    EXPECT_THROW(Engine(model).generate({r}), Error);  // id out of range
    r.prompt.assign(96, 1);
    EXPECT_THROW(Engine(model).generate({r}), Error);  // no room in the context
}

// ---- samplers against their definitions ----------------------------------------------------

// Logits log(p) for p = {0.4, 0.3, 0.15, 0.1, 0.05}: the filters' effects are hand-checkable.
const std::vector<float> kLogits = {std::log(0.4f), std::log(0.3f), std::log(0.15f), std::log(0.1f),
                                    std::log(0.05f)};

TEST(Sampler, FiltersKeepWhatTheirDefinitionsKeep) {
    SamplingParams p;
    auto dist = [&] { return sampling_distribution(kLogits.data(), 5, p); };
    std::vector<double> d = dist();
    EXPECT_NEAR(d[0], 0.4, 1e-6);
    EXPECT_NEAR(d[4], 0.05, 1e-6);
    p.top_k = 2;  // {0.4, 0.3} renormalised
    d = dist();
    EXPECT_NEAR(d[0], 0.4 / 0.7, 1e-6);
    EXPECT_NEAR(d[1], 0.3 / 0.7, 1e-6);
    EXPECT_EQ(d[2], 0.0);
    p = SamplingParams{};
    p.top_p = 0.8f;  // 0.4 + 0.3 = 0.7 < 0.8, + 0.15 = 0.85 >= 0.8: three tokens
    d = dist();
    EXPECT_NEAR(d[2], 0.15 / 0.85, 1e-6);
    EXPECT_EQ(d[3], 0.0);
    p = SamplingParams{};
    p.min_p = 0.3f;  // threshold 0.3 * 0.4 = 0.12: tokens with p >= 0.12 are 0.4, 0.3, 0.15
    d = dist();
    EXPECT_NEAR(d[0], 0.4 / 0.85, 1e-6);
    EXPECT_EQ(d[3], 0.0);
    p = SamplingParams{};
    p.temperature = 2.0f;  // p_i ∝ sqrt(p_i)
    d = dist();
    double z = 0;
    for (double q : {0.4, 0.3, 0.15, 0.1, 0.05}) z += std::sqrt(q);
    EXPECT_NEAR(d[1], std::sqrt(0.3) / z, 1e-6);
}

// Frequencies of 40,000 draws fall within 5 standard errors of each token's probability.
TEST(Sampler, DrawFrequenciesMatchTheDistribution) {
    for (int variant = 0; variant < 3; variant++) {
        SamplingParams p;
        p.top_k = variant == 1 ? 3 : 0;
        p.top_p = variant == 2 ? 0.8f : 1.0f;
        const std::vector<double> want = sampling_distribution(kLogits.data(), 5, p);
        Rng rng(variant + 1);
        std::vector<int> count(5, 0);
        const int draws = 40000;
        for (int i = 0; i < draws; i++) count[sample_token(kLogits.data(), 5, p, rng)]++;
        for (int t = 0; t < 5; t++) {
            const double f = (double)count[t] / draws;
            const double se = std::sqrt(want[t] * (1 - want[t]) / draws);
            if (want[t] == 0.0) {
                EXPECT_EQ(count[t], 0) << "variant " << variant << " token " << t;
            } else {
                EXPECT_NEAR(f, want[t], 5 * se) << "variant " << variant << " token " << t;
            }
        }
    }
}

TEST(Sampler, TemperatureZeroIsArgmax) {
    SamplingParams p;
    p.temperature = 0.0f;
    Rng rng(1);
    const std::vector<float> l = {0.1f, 2.0f, 2.0f, -1.0f};
    EXPECT_EQ(sample_token(l.data(), 4, p, rng), 1);  // the first maximum
}

TEST(KvCache, ForkSharesBlocksAndAppendCopiesTheSharedPartialBlock) {
    KvCache cache(tiny_config(), 8);
    KvCache::Table a;
    ASSERT_TRUE(cache.reserve(a, 20));  // 2 blocks, second partly filled
    a.length = 20;
    *cache.k_at(a, 0, 17) = 3.5f;
    KvCache::Table b = cache.fork(a);
    EXPECT_EQ(cache.refcount(a.blocks[0]), 2);
    EXPECT_EQ(cache.free_blocks(), 6);
    ASSERT_TRUE(cache.reserve(b, 1));  // b writes into the shared partial block: copy it
    EXPECT_NE(a.blocks[1], b.blocks[1]);
    EXPECT_EQ(a.blocks[0], b.blocks[0]);
    EXPECT_EQ(*cache.k_at(b, 0, 17), 3.5f);  // the copy holds the prompt's keys
    EXPECT_EQ(cache.free_blocks(), 5);
    cache.release(a);
    cache.release(b);
    EXPECT_EQ(cache.free_blocks(), 8);
    KvCache::Table big;
    EXPECT_FALSE(cache.reserve(big, 8 * 16 + 1));  // more than the pool: refused, unchanged
    EXPECT_TRUE(big.blocks.empty());
}

}  // namespace
}  // namespace crucible
