// What ranks send each other under mpirun (a sharded eval's samples, an RL round's rollouts)
// arrives as it left: every byte of text, valid UTF-8 or not (a byte-level model writes any
// bytes), every double, NaN included.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>

#include "core/error.h"
#include "eval/sample_store.h"
#include "rl/rollout_wire.h"

using namespace crucible;

namespace {

const std::string kBadUtf8("ok \xff\xfe \xc3 end\0x", 13);

}  // namespace

TEST(RankMessages, ASampleRecordArrivesByteForByte) {
    eval::SampleRecord r;
    r.item_id = "q\xe9";
    r.sample = 7;
    r.seed = 0xfedcba9876543210ull;
    r.prompt = kBadUtf8;
    r.completion = kBadUtf8 + kBadUtf8;
    r.prompt_tokens = 12;
    r.completion_tokens = 1 << 30;
    r.finish_reason = "length";
    r.score = 0.1 + 0.2;  // not a short decimal
    r.answer = "\xff";
    r.latency_s = 1e-300;
    r.error = "";
    r.info = "{\"turns\": 2}";
    const eval::SampleRecord b = eval::record_from_message(eval::record_to_message(r));
    EXPECT_EQ(b.item_id, r.item_id);
    EXPECT_EQ(b.sample, 7);
    EXPECT_EQ(b.seed, r.seed);
    EXPECT_EQ(b.prompt, kBadUtf8);
    EXPECT_EQ(b.completion, r.completion);
    EXPECT_EQ(b.completion_tokens, r.completion_tokens);
    EXPECT_EQ(b.finish_reason, "length");
    ASSERT_TRUE(b.score.has_value());
    EXPECT_EQ(*b.score, 0.1 + 0.2);
    EXPECT_EQ(b.answer, "\xff");
    EXPECT_EQ(b.latency_s, 1e-300);
    EXPECT_EQ(b.info, r.info);
    // A rubric sample travels unjudged with the text its judge scores; others carry none.
    std::optional<std::string> to_judge = "stale";
    eval::record_from_message(eval::record_to_message(r), &to_judge);
    EXPECT_FALSE(to_judge.has_value());
    const std::string text = kBadUtf8 + "answer";
    eval::record_from_message(eval::record_to_message(r, &text), &to_judge);
    ASSERT_TRUE(to_judge.has_value());
    EXPECT_EQ(*to_judge, text);
    r.score.reset();  // a failed sample has none
    r.error = "scoring: boom";
    const eval::SampleRecord c = eval::record_from_message(eval::record_to_message(r));
    EXPECT_FALSE(c.score.has_value());
    EXPECT_EQ(c.error, "scoring: boom");
    EXPECT_THROW(eval::record_from_message("not a message"), Error);
}

TEST(RankMessages, RolloutsArriveByteForByteWithTheirNaNs) {
    rl::Rollout r;
    r.group = 3;
    r.item = 11;
    r.sample = 2;
    r.completion = {1, 255, 0, 70000};
    r.text = kBadUtf8;
    r.truncated = true;
    r.model_mask = {1, 0, 0, 1};
    r.spans = {{rl::EpisodeSpan::Kind::model, 0, 1}, {rl::EpisodeSpan::Kind::tool, 1, 3}};
    r.turns = 2;
    r.tool_calls = 1;
    r.end = "answer";
    r.python = NAN;
    r.python_error = "reward_timeout: \xff";
    r.components = {{"correct", 1.0}, {"python", NAN}, {"format", -0.0}};
    r.rubric = NAN;
    r.reward = 1.0 / 3.0;
    r.valid = false;
    r.error = "x";
    rl::Rollout s;  // no verdict: correct stays empty
    s.group = 4;
    s.correct = std::nullopt;
    r.correct = 0.5;
    const std::vector<rl::Rollout> back =
        rl::rollouts_from_message(rl::rollouts_to_message({r, s}));
    ASSERT_EQ(back.size(), 2u);
    const rl::Rollout& b = back[0];
    EXPECT_EQ(b.group, 3);
    EXPECT_EQ(b.item, 11u);
    EXPECT_EQ(b.completion, r.completion);
    EXPECT_EQ(b.text, kBadUtf8);
    EXPECT_TRUE(b.truncated);
    EXPECT_EQ(b.model_mask, r.model_mask);
    ASSERT_EQ(b.spans.size(), 2u);
    EXPECT_EQ(b.spans[1].kind, rl::EpisodeSpan::Kind::tool);
    EXPECT_EQ(b.spans[1].end, 3u);
    EXPECT_EQ(b.turns, 2);
    EXPECT_EQ(b.end, "answer");
    EXPECT_TRUE(std::isnan(b.python));
    EXPECT_EQ(b.python_error, r.python_error);
    ASSERT_EQ(b.components.size(), 3u);
    EXPECT_TRUE(std::isnan(b.components[1].second));
    EXPECT_TRUE(std::signbit(b.components[2].second));  // -0 stays -0
    EXPECT_TRUE(std::isnan(b.rubric));
    EXPECT_EQ(b.reward, 1.0 / 3.0);
    EXPECT_EQ(b.correct, 0.5);
    EXPECT_FALSE(b.valid);
    EXPECT_FALSE(back[1].correct.has_value());
    EXPECT_EQ(back[1].group, 4);
    EXPECT_THROW(rl::rollouts_from_message("\x01\x02"), Error);
}
