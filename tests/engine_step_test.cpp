// The engine driven incrementally (submit / step / cancel), as the server drives it: requests
// that join a running batch get the tokens generate() gives them, callbacks stream exactly the
// final samples, and a cancelled request's KV blocks are free at once.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/reference_generate.h"
#include "model_util.h"

namespace crucible {
namespace {

Model& step_model() {
    static Model* m = [] {
        auto* model = new Model(testutil::tiny_model_config(61, 96));
        model->init_random(11, 0.3f);
        return model;
    }();
    return *m;
}

GenerationRequest request(std::vector<int32_t> prompt, int max_tokens, float temperature,
                          uint64_t seed, int n) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.params.max_tokens = max_tokens;
    r.params.temperature = temperature;
    r.params.seed = seed;
    r.n = n;
    return r;
}

TEST(EngineStep, RequestsJoiningARunningBatchGetGeneratesTokens) {
    Model& model = step_model();
    const std::vector<GenerationRequest> reqs = {
        request({1, 2, 3}, 20, 0.0f, 0, 1), request({5, 6}, 15, 1.0f, 9, 3),
        request({7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 10, 0.0f, 0, 2),
        request({30}, 25, 0.8f, 4, 2)};
    const auto want = Engine(model).generate(reqs);
    Engine engine(model);
    std::map<int, std::vector<GeneratedSequence>> got;
    // Per request and sample: the tokens the callback saw, and how often it saw a finish.
    std::map<int, std::map<int, std::vector<int32_t>>> streamed;
    std::map<int, std::map<int, int>> finishes;
    int submitted = 0;
    auto submit_next = [&] {
        const int r = submitted++;
        engine.submit(
            reqs[r],
            [&, r](int sample, int32_t token, const std::string& finish) {
                streamed[r][sample].push_back(token);
                if (!finish.empty()) finishes[r][sample]++;
            },
            [&, r](std::vector<GeneratedSequence>&& out) { got[r] = std::move(out); });
    };
    submit_next();
    int steps = 0;
    // The others join one by one, each a few steps after the previous one.
    while (engine.step()) {
        if (++steps % 3 == 0 && submitted < (int)reqs.size()) submit_next();
        ASSERT_LT(steps, 1000);
    }
    while (submitted < (int)reqs.size()) {  // any left join an idle engine
        submit_next();
        while (engine.step()) {
        }
    }
    ASSERT_EQ(got.size(), reqs.size());
    for (size_t r = 0; r < reqs.size(); r++) {
        ASSERT_EQ(got[r].size(), want[r].size()) << r;
        for (size_t i = 0; i < want[r].size(); i++) {
            EXPECT_EQ(got[r][i].tokens, want[r][i].tokens) << r << "/" << i;
            EXPECT_EQ(got[r][i].finish_reason, want[r][i].finish_reason);
            EXPECT_EQ(streamed[r][(int)i], want[r][i].tokens) << "streamed " << r << "/" << i;
            EXPECT_EQ(finishes[r][(int)i], 1);
        }
    }
    EXPECT_EQ(engine.free_kv_blocks(), engine.kv_blocks());
    EXPECT_EQ(engine.num_running(), 0);
}

TEST(EngineStep, GreedyOutputDoesNotDependOnWhenARequestJoins) {
    Model& model = step_model();
    const auto ref = greedy_generate_reference(model, {{4, 4, 2}}, 12, -1);
    Engine engine(model);
    std::vector<int32_t> late;
    engine.submit(request({1, 2, 3}, 40, 0.0f, 0, 4), {}, {});
    for (int i = 0; i < 5; i++) ASSERT_TRUE(engine.step());
    engine.submit(request({4, 4, 2}, 12, 0.0f, 0, 1), {},
                  [&](std::vector<GeneratedSequence>&& out) { late = out[0].tokens; });
    while (engine.step()) {
    }
    EXPECT_EQ(late, ref[0]);
}

TEST(EngineStep, CancelFreesTheKvBlocksAtOnceAndSilencesTheRequest) {
    Model& model = step_model();
    Engine engine(model);
    const int total = engine.kv_blocks();
    int tokens_a = 0, done_a = 0;
    const int64_t a = engine.submit(
        request({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, 60, 1.0f, 1, 3),
        [&](int, int32_t, const std::string&) { tokens_a++; },
        [&](std::vector<GeneratedSequence>&&) { done_a++; });
    std::vector<int32_t> b_tokens;
    engine.submit(request({2, 3}, 8, 0.0f, 0, 1), {},
                  [&](std::vector<GeneratedSequence>&& out) { b_tokens = out[0].tokens; });
    for (int i = 0; i < 4; i++) ASSERT_TRUE(engine.step());
    EXPECT_LT(engine.free_kv_blocks(), total);
    EXPECT_EQ(engine.num_running(), 4);  // three samples of a, one of b
    const int before = tokens_a;
    EXPECT_TRUE(engine.cancel(a));
    EXPECT_FALSE(engine.cancel(a));  // already gone
    EXPECT_EQ(engine.num_running(), 1);
    while (engine.step()) {
    }
    EXPECT_EQ(tokens_a, before);  // nothing more for the cancelled request
    EXPECT_EQ(done_a, 0);
    EXPECT_EQ(b_tokens, greedy_generate_reference(model, {{2, 3}}, 8, -1)[0]);
    EXPECT_EQ(engine.free_kv_blocks(), total);
    // Cancelled right away: the blocks of the prompt being prefilled are freed too.
    const int64_t c = engine.submit(request({1, 2, 3}, 8, 0.0f, 0, 2), {}, {});
    EXPECT_EQ(engine.num_waiting(), 1);
    ASSERT_TRUE(engine.step());
    EXPECT_LT(engine.free_kv_blocks(), total);
    EXPECT_TRUE(engine.cancel(c));
    EXPECT_EQ(engine.free_kv_blocks(), total);
    EXPECT_FALSE(engine.step());
    // A queued request can be cancelled before it ever runs.
    const int64_t d = engine.submit(request({1}, 4, 0.0f, 0, 1), {}, {});
    EXPECT_TRUE(engine.cancel(d));
    EXPECT_EQ(engine.num_waiting(), 0);
    EXPECT_FALSE(engine.step());
}

TEST(EngineStep, LogprobsOfASubmittedRequestAreGeneratesBitForBit) {
    Model& model = step_model();
    GenerationRequest r = request({9, 8, 7, 6}, 12, 1.0f, 5, 3);
    r.params.logprobs = 2;
    const auto want = Engine(model).generate({r});
    Engine engine(model);
    std::vector<GeneratedSequence> got;
    engine.submit(r, {}, [&](std::vector<GeneratedSequence>&& out) { got = std::move(out); });
    while (engine.step()) {
    }
    ASSERT_EQ(got.size(), 3u);
    for (size_t i = 0; i < 3; i++) {
        EXPECT_EQ(got[i].tokens, want[0][i].tokens);
        EXPECT_EQ(got[i].logprobs, want[0][i].logprobs);  // exact: same packing, same forward
        ASSERT_EQ(got[i].top_logprobs.size(), want[0][i].top_logprobs.size());
        for (size_t t = 0; t < got[i].top_logprobs.size(); t++) {
            ASSERT_EQ(got[i].top_logprobs[t].size(), 2u);
            EXPECT_EQ(got[i].top_logprobs[t][0].token, want[0][i].top_logprobs[t][0].token);
        }
    }
}

// generate()'s per-request callback fires while other requests still decode (the RL trainer
// starts judging a finished group then), once per request, with the samples it returns.
TEST(EngineStep, GenerateReportsEachRequestAsSoonAsItFinishes) {
    Model& model = step_model();
    const std::vector<GenerationRequest> reqs = {request({1, 2, 3}, 40, 0.0f, 0, 2),
                                                 request({5, 6}, 2, 1.0f, 9, 3),
                                                 request({7, 8, 9}, 20, 0.8f, 4, 1)};
    Engine engine(model);
    std::map<size_t, std::vector<GeneratedSequence>> seen;
    std::map<size_t, int64_t> step_seen;
    const auto out =
        engine.generate(reqs, {}, [&](size_t r, const std::vector<GeneratedSequence>& samples) {
            EXPECT_EQ(seen.count(r), 0u) << "request " << r << " reported twice";
            seen[r] = samples;
            step_seen[r] = engine.steps();
        });
    ASSERT_EQ(seen.size(), reqs.size());
    for (size_t r = 0; r < reqs.size(); r++) {
        ASSERT_EQ(seen[r].size(), out[r].size());
        for (size_t i = 0; i < out[r].size(); i++) {
            EXPECT_EQ(seen[r][i].tokens, out[r][i].tokens) << r << "/" << i;
            EXPECT_EQ(seen[r][i].finish_reason, out[r][i].finish_reason);
        }
    }
    // The 2-token request was reported long before the 40-token one finished decoding.
    EXPECT_LT(step_seen[1], step_seen[0]);
    EXPECT_LE(step_seen[1], 4);
    EXPECT_EQ(step_seen[0], engine.steps());
}

// Samples that share a prompt but carry their own seeds draw exactly what separate requests
// with those seeds draw: the eval harness groups an item's samples this way.
TEST(EngineStep, PerSampleSeedsMatchSeparateRequests) {
    Model& model = step_model();
    const std::vector<uint64_t> seeds = {17, 4242, 9};
    GenerationRequest shared = request({3, 1, 4, 1, 5, 9, 2, 6}, 12, 1.0f, 0, 3);
    shared.sample_seeds = seeds;
    std::vector<GenerationRequest> separate;
    for (uint64_t s : seeds) separate.push_back(request({3, 1, 4, 1, 5, 9, 2, 6}, 12, 1.0f, s, 1));
    const auto a = Engine(model).generate({shared});
    const auto b = Engine(model).generate(separate);
    ASSERT_EQ(a[0].size(), seeds.size());
    for (size_t i = 0; i < seeds.size(); i++) EXPECT_EQ(a[0][i].tokens, b[i][0].tokens) << i;
    EXPECT_NE(a[0][0].tokens, a[0][1].tokens);  // the seeds matter
    GenerationRequest bad = shared;
    bad.sample_seeds.pop_back();
    EXPECT_THROW(Engine(model).generate({bad}), Error);
}

}  // namespace
}  // namespace crucible
