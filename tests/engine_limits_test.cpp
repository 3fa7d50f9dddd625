// The engine at the edges of a request's numbers (issue 22, item 8): max_tokens near INT_MAX
// and the smallest KV pool the engine sizes itself.
#include <gtest/gtest.h>

#include <climits>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "model_util.h"

namespace crucible {
namespace {

constexpr int kContext = 96;

Model& limits_model() {
    static Model* m = [] {
        auto* model = new Model(testutil::tiny_model_config(61, kContext));
        model->init_random(5, 0.3f);
        return model;
    }();
    return *m;
}

GenerationRequest long_request(int prompt_len, int max_tokens, uint64_t seed) {
    GenerationRequest r;
    for (int i = 0; i < prompt_len; i++) r.prompt.push_back(1 + i % 50);
    r.params.max_tokens = max_tokens;
    r.params.temperature = 1.0f;
    r.params.seed = seed;
    r.params.stop_ids.clear();  // runs to the end of the context
    return r;
}

TEST(EngineLimits, OneSequencePoolHoldsARequestThatFillsTheContext) {
    EngineOptions o;
    o.max_batch_seqs = 1;
    Engine engine(limits_model(), o);
    // A prompt that ends inside a block: its last block is copied on the sample's first write,
    // so the worst case is one block more than the context's blocks, plus that copy.
    for (int prompt_len : {1, 3, 16, 17, 40}) {
        const GenerationRequest r = long_request(prompt_len, kContext - prompt_len, 1);
        EXPECT_NO_THROW(engine.validate(r, "request")) << prompt_len;
        const auto out = engine.generate({r});
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ((int)out[0][0].tokens.size(), kContext - prompt_len) << prompt_len;
        EXPECT_EQ(out[0][0].finish_reason, "length");
    }
}

TEST(EngineLimits, MaxTokensNearIntMaxDoesNotWrapTheWorstCase) {
    // A pool that holds exactly two full-context sequences: requests asking for INT_MAX
    // tokens each need a whole context, so at most two run at once and all finish.
    const int per_seq = (kContext + KvCache::kBlockSize - 1) / KvCache::kBlockSize;
    EngineOptions o;
    o.kv_blocks = 2 * (per_seq + 2);
    Engine engine(limits_model(), o);
    std::vector<GenerationRequest> reqs;
    for (int i = 0; i < 5; i++) reqs.push_back(long_request(3 + i, INT_MAX - i, 10 + i));
    for (const GenerationRequest& r : reqs) EXPECT_NO_THROW(engine.validate(r, "request"));
    std::vector<std::vector<GeneratedSequence>> out;
    ASSERT_NO_THROW(out = engine.generate(reqs));
    ASSERT_EQ(out.size(), reqs.size());
    for (size_t i = 0; i < reqs.size(); i++) {
        EXPECT_EQ(out[i][0].tokens.size() + reqs[i].prompt.size(), (size_t)kContext) << i;
        EXPECT_EQ(out[i][0].finish_reason, "length") << i;
    }
    EXPECT_EQ(engine.free_kv_blocks(), engine.kv_blocks());
    // n samples of INT_MAX tokens: the worst case is counted per sample, without wrapping.
    GenerationRequest many = long_request(3, INT_MAX, 1);
    many.n = 3;
    EXPECT_THROW(engine.validate(many, "request"), Error);
}

}  // namespace
}  // namespace crucible
