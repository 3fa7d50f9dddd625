// Multi-turn RL episodes: observation tokens are in the trained sequence but take no part in
// the loss. Checked three ways: the masked objective against central finite differences and
// against the plain objective on the model's tokens alone; the trainer's own loss weights on a
// real forward pass (exactly 0 at the observation rows, and a parameter gradient bit-identical
// when the observation rows' log-probabilities change); and the trainer end to end with a
// scripted policy using the calculator (requests, samples.jsonl spans, metrics, env config).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/deadline_call.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "rl/objective.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::rl {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- the masked objective -------------------------------------------------------------------

struct MaskedCase {
    std::vector<uint8_t> mask;
    std::vector<float> logp, old_model, ref_model;
};

MaskedCase masked_case(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-3.0f, -0.1f), d(-0.3f, 0.3f);
    MaskedCase c;
    // model 4, tool 3, model 2, tool 2, model 3
    for (int n : {4, -3, 2, -2, 3}) {
        for (int i = 0; i < std::abs(n); i++) c.mask.push_back(n > 0 ? 1 : 0);
    }
    for (uint8_t m : c.mask) {
        c.logp.push_back(u(rng));
        if (m) {
            c.old_model.push_back(c.logp.back() + d(rng));
            c.ref_model.push_back(c.logp.back() + d(rng));
        }
    }
    return c;
}

double masked_loss(const PolicyLossOptions& o, const MiniBatchSize& mb, double adv,
                   const MaskedCase& c, const std::vector<float>& logp,
                   std::vector<double>* dlogp = nullptr) {
    std::vector<double> d(logp.size(), 0.0);
    LossStats st;
    masked_sequence_loss(o, mb, adv, c.mask, logp, c.old_model, c.ref_model, d, &st);
    if (dlogp) *dlogp = d;
    return st.loss;
}

// Every ratio level, aggregation and KL setting: the loss does not move when an observation
// position's log-probability does (by a lot, either way), dL/dlogp there is exactly 0, the
// model positions' derivatives match central finite differences, and the whole equals
// sequence_loss over the model's positions alone (the tokens the loss counts).
TEST(MaskedSequenceLoss, ObservationPositionsHaveExactlyZeroGradient) {
    const MaskedCase c = masked_case(11);
    const MiniBatchSize mb{3, 31};
    for (RatioLevel ratio : {RatioLevel::token, RatioLevel::sequence}) {
        for (LossAggregation agg :
             {LossAggregation::seq_mean_token_mean, LossAggregation::token_mean,
              LossAggregation::seq_sum_norm, LossAggregation::seq_mean_token_sum}) {
            for (double beta : {0.0, 0.1}) {
                for (double adv : {0.7, -1.3}) {
                    PolicyLossOptions o;
                    o.ratio = ratio;
                    o.aggregation = agg;
                    o.kl_beta = beta;
                    o.clip_low = 0.1;
                    o.clip_high = 0.15;
                    o.max_completion_tokens = 20;
                    const std::string what = std::string(to_string(ratio)) + " " + to_string(agg) +
                                             " beta " + std::to_string(beta) + " adv " +
                                             std::to_string(adv);
                    std::vector<double> d;
                    const double loss = masked_loss(o, mb, adv, c, c.logp, &d);
                    // The plain objective on the model's positions alone.
                    std::vector<float> model_logp;
                    for (size_t t = 0; t < c.mask.size(); t++)
                        if (c.mask[t]) model_logp.push_back(c.logp[t]);
                    std::vector<double> dm(model_logp.size());
                    LossStats plain;
                    sequence_loss(o, mb, adv, model_logp, c.old_model, c.ref_model, dm, &plain);
                    EXPECT_EQ(loss, plain.loss) << what;
                    for (size_t t = 0, j = 0; t < c.mask.size(); t++) {
                        if (!c.mask[t]) {
                            EXPECT_EQ(d[t], 0.0) << what << " position " << t;
                            for (float delta : {-2.0f, 0.5f, 2.5f}) {
                                std::vector<float> moved = c.logp;
                                moved[t] += delta;
                                EXPECT_EQ(masked_loss(o, mb, adv, c, moved), loss)
                                    << what << " position " << t;
                            }
                            continue;
                        }
                        EXPECT_EQ(d[t], dm[j++]) << what;
                        const float h = 1e-3f;
                        std::vector<float> up = c.logp, down = c.logp;
                        up[t] += h;
                        down[t] -= h;
                        const double fd =
                            (masked_loss(o, mb, adv, c, up) - masked_loss(o, mb, adv, c, down)) /
                            (double(up[t]) - double(down[t]));
                        EXPECT_NEAR(d[t], fd, 2e-4 + 1e-2 * std::abs(fd))
                            << what << " position " << t;
                    }
                }
            }
        }
    }
}

TEST(MaskedSequenceLoss, AnEmptyMaskIsThePlainObjective) {
    const std::vector<float> logp = {-1.0f, -2.0f, -0.5f}, old = {-1.1f, -1.9f, -0.7f};
    PolicyLossOptions o;
    const MiniBatchSize mb{1, 3};
    std::vector<double> a(3), b(3);
    LossStats sa, sb;
    masked_sequence_loss(o, mb, 0.8, {}, logp, old, {}, a, &sa);
    sequence_loss(o, mb, 0.8, logp, old, {}, b, &sb);
    EXPECT_EQ(sa.loss, sb.loss);
    EXPECT_EQ(a, b);
    EXPECT_EQ(sa.tokens, 3);
}

// ---- the trainer's loss weights on a real forward pass ---------------------------------------

// prompt | turn 1 | observation | turn 2, on a tiny random model. add_sequence_gradient is the
// trainer's own step from a forward pass to loss weights.
TEST(MultiTurnGradient, ObservationRowsHaveZeroWeightAndDoNotMoveTheGradient) {
    ModelConfig cfg = testutil::tiny_gqa_config();
    Model model(cfg);
    model.init_random(9);
    const std::vector<int32_t> prompt = {10, 20, 30, 40};
    const std::vector<int32_t> turn1 = {50, 60, 70}, obs = {80, 90, 100, 110}, turn2 = {120, 130};
    Rollout r;
    r.completion = turn1;
    r.completion.insert(r.completion.end(), obs.begin(), obs.end());
    r.completion.insert(r.completion.end(), turn2.begin(), turn2.end());
    r.model_mask = {1, 1, 1, 0, 0, 0, 0, 1, 1};
    r.advantage = 0.9;
    const size_t p = prompt.size();
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), r.completion.begin(), r.completion.end());
    const std::vector<int32_t> inputs(seq.begin(), seq.end() - 1);
    const std::vector<int32_t> next(seq.begin() + 1, seq.end());
    PolicyLossOptions o;
    o.kl_beta = 0.05;  // the KL term must vanish at observations too
    const MiniBatchSize size{1, static_cast<int64_t>(r.model_tokens())};
    ASSERT_EQ(r.model_tokens(), 5u);

    // The gradient of the objective with the observation rows' targets `targets_at_obs`
    // (their log-probabilities change; nothing else does: same inputs, same model rows).
    const auto gradient = [&](const std::vector<int32_t>& targets_at_obs, Rollout& ro,
                              std::vector<float>* weights, double* loss) {
        std::vector<int32_t> nx = next;
        for (size_t k = 0; k < obs.size(); k++) nx[p - 1 + turn1.size() + k] = targets_at_obs[k];
        PackedBatch batch;
        batch.add_sequence(inputs, nx, std::vector<float>(inputs.size(), 0.0f));
        model.zero_grads();
        model.forward(batch);
        if (ro.ref_logp.empty()) {  // a reference at the model's rows: the policy, shifted
            for (size_t t = 0; t < ro.completion.size(); t++)
                if (ro.model_mask[t])
                    ro.ref_logp.push_back(-model.token_losses()[p - 1 + t] - 0.05f);
        }
        const ForwardRows rows{model.token_losses(), model.logits(), cfg.vocab_size,
                               batch.loss_weight.data()};
        SequenceScratch scratch;
        UpdateStats st;
        add_sequence_gradient(o, size, rows, static_cast<int>(p) - 1, true, ro, scratch, &st);
        *weights = batch.loss_weight;
        *loss = st.loss;
        model.backward();
        return std::vector<float>(model.grads(), model.grads() + model.num_params());
    };
    std::vector<float> w1, w2, w3;
    double l1 = 0, l2 = 0, l3 = 0;
    const std::vector<float> g1 = gradient(obs, r, &w1, &l1);
    const std::vector<float> old = r.old_logp;
    ASSERT_EQ(old.size(), 5u);  // pi_old at the model's ids only
    for (size_t t = 0; t < r.completion.size(); t++) {
        const float w = w1[p - 1 + t];
        if (r.model_mask[t]) {
            EXPECT_NE(w, 0.0f) << t;
        } else {
            EXPECT_EQ(w, 0.0f) << "observation row " << t;
        }
    }
    for (size_t row = 0; row + 1 < p; row++) EXPECT_EQ(w1[row], 0.0f);  // the prompt's rows
    // Other observation targets (other log-probabilities there): the same loss and gradient,
    // bit for bit.
    const std::vector<float> g2 = gradient({200, 3, 150, 7}, r, &w2, &l2);
    EXPECT_EQ(r.old_logp, old);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(w1, w2);
    EXPECT_EQ(g1, g2);
    // Control: a model row's target does move it.
    Rollout r3 = r;
    const std::vector<float> g3 = gradient(obs, r3, &w3, &l3);
    EXPECT_EQ(g3, g1);  // same inputs as g1: the check itself is deterministic
    Rollout r4 = r;
    r4.completion[1] = 61;  // a different model token in turn 1 (and its row's target)
    seq = prompt;
    seq.insert(seq.end(), r4.completion.begin(), r4.completion.end());
    PackedBatch batch;
    batch.add_sequence(std::vector<int32_t>(seq.begin(), seq.end() - 1),
                       std::vector<int32_t>(seq.begin() + 1, seq.end()),
                       std::vector<float>(seq.size() - 1, 0.0f));
    model.zero_grads();
    model.forward(batch);
    const ForwardRows rows{model.token_losses(), model.logits(), cfg.vocab_size,
                           batch.loss_weight.data()};
    SequenceScratch scratch;
    UpdateStats st;
    add_sequence_gradient(o, size, rows, static_cast<int>(p) - 1, true, r4, scratch, &st);
    EXPECT_NE(st.loss, l1);
}

// ---- the trainer end to end ---------------------------------------------------------------

fs::path model_folder(const fs::path& dir) {
    ModelConfig c = testutil::tiny_gqa_config();
    c.max_position_embeddings = 512;
    Model m(c);
    m.init_random(3);
    const fs::path out = dir / "model";
    fs::create_directories(out);
    save_model(m, out);
    ByteTokenizer::save_hf_files(out, c.max_position_embeddings);
    return out;
}

// Items "Q: a+b=": correct when the episode's last turn holds <answer>a+b</answer>.
Task sums_task(const TextTokenizer& tok) {
    Task t;
    t.name = "sums";
    for (int i = 0; i < 6; i++) {
        TaskItem item;
        item.id = std::to_string(i);
        item.id.insert(item.id.begin(), 's');
        item.prompt = "Q: ";
        item.prompt += std::to_string(i);
        item.prompt += "+3=\n";
        item.prompt_ids = tok.encode(item.prompt);
        item.answer = std::to_string(i + 3);
        item.index = i;
        (i < 4 ? t.train : t.eval).push_back(item);
    }
    t.score = [](const TaskItem& item, const std::string& text) {
        return TaskScore{
            text.find("<answer>" + item.answer + "</answer>") != std::string::npos ? 1.0 : 0.0,
            0.0};
    };
    return t;
}

Config multiturn_config(const fs::path& dir, const fs::path& model) {
    Config c(kRlConfigDefaults);
    c.set("run.dir=" + dir.string());
    c.set("run.name=mt");
    c.set("model.path=" + model.string());
    c.set("env.name=calculator");
    c.set("env.max_turns=3");
    c.set("rollout.prompts_per_step=2");
    c.set("rollout.samples_per_prompt=4");
    c.set("rollout.max_new_tokens=300");
    c.set("train.steps=2");
    c.set("train.lr=1e-2");
    c.set("train.warmup_steps=0");
    c.set("train.checkpoint_every=0");
    c.set("train.eval_every=0");
    c.set("train.eval_problems=2");
    c.set("train.eval_samples=2");
    c.set("train.log_every=100");
    return c;
}

using testutil::read_jsonl;

std::string call_text(const std::string& expression) {
    return "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"" + expression +
           "\"}}</tool_call>";
}

// The policy: on its first turn sample s asks the calculator for "A+3" (even s) or "A+4"
// (odd s), where A is the item's first operand; on its second turn it answers with the last
// tool response's value and ends with end-of-sequence. So even samples are right and odd ones
// wrong, and every group has both.
struct SumsPolicy {
    TextTokenizer tok = TextTokenizer(ByteTokenizer());
    std::vector<GenerationRequest> requests;

    std::vector<int32_t> turn(const std::vector<int32_t>& prompt_ids, int sample) const {
        const std::string prompt = tok.decode(prompt_ids);
        const size_t resp = prompt.rfind("<tool_response>\n");
        std::vector<int32_t> ids;
        if (resp == std::string::npos) {
            const std::string a = prompt.substr(3, prompt.find('+') - 3);
            ids = tok.encode(call_text(a + (sample % 2 == 0 ? "+3" : "+4")));
        } else {
            const size_t b = resp + 16;
            ids = tok.encode("<answer>" + prompt.substr(b, prompt.find('\n', b) - b) + "</answer>");
            ids.push_back(tok.eos);
        }
        return ids;
    }

    Generator generator() {
        return
            [this](
                const std::vector<GenerationRequest>& reqs,
                const std::function<void(size_t, const std::vector<GeneratedSequence>&)>& on_done) {
                std::vector<std::vector<GeneratedSequence>> out;
                for (size_t r = 0; r < reqs.size(); r++) {
                    requests.push_back(reqs[r]);
                    std::vector<GeneratedSequence> samples;
                    for (int s = 0; s < reqs[r].n; s++) {
                        GeneratedSequence g;
                        g.tokens = turn(reqs[r].prompt, s);
                        g.finish_reason = "stop";
                        EXPECT_LE((int)g.tokens.size(), reqs[r].params.max_tokens);
                        samples.push_back(std::move(g));
                    }
                    if (on_done) on_done(r, samples);
                    out.push_back(std::move(samples));
                }
                return out;
            };
    }
};

TEST(RlMultiTurn, TrainsOnCalculatorEpisodesWithMarkedSpans) {
    testutil::TempDir dir;
    const fs::path model = model_folder(dir.path());
    const TextTokenizer tok = TextTokenizer(ByteTokenizer());
    std::ostringstream log;
    RlTrainer trainer(multiturn_config(dir.path(), model), false, log, {}, sums_task(tok));
    SumsPolicy policy;
    policy.tok = trainer.tokenizer();
    trainer.set_generator(policy.generator());
    trainer.run();

    // Every later-turn request continues from prompt + its turn-1 ids + the observation's ids,
    // assembled here from the item, the policy's own turn and the hand-written tool response.
    int continued = 0;
    for (const GenerationRequest& r : policy.requests) {
        const std::string text = tok.decode(r.prompt);
        if (text.find("<tool_call>") == std::string::npos) continue;
        const std::string prompt = text.substr(0, text.find('\n') + 1);
        const std::string a = prompt.substr(3, prompt.find('+') - 3);
        const bool plus3 = text.find(a + "+3\"") != std::string::npos;
        const std::string value = std::to_string(std::stoi(a) + (plus3 ? 3 : 4));
        const std::string expected = prompt + call_text(a + (plus3 ? "+3" : "+4")) +
                                     "\n<tool_response>\n" + value + "\n</tool_response>\n";
        EXPECT_EQ(r.prompt, tok.encode(expected));
        EXPECT_EQ(r.n, 1);
        continued++;
    }
    // 2 steps x 2 groups x 4 samples, and the held-out episodes: 2 items x 2 samples
    EXPECT_EQ(continued, 2 * 2 * 4 + 2 * 2);

    const auto samples = read_jsonl(trainer.run_dir() / "samples.jsonl");
    ASSERT_EQ(samples.size(), 2u * 8u);
    for (const json& s : samples) {
        const int k = s["sample"].get<int>();
        ASSERT_TRUE(s.contains("spans")) << s.dump();
        const json& spans = s["spans"];
        ASSERT_EQ(spans.size(), 4u) << s.dump();
        EXPECT_EQ(spans[0]["kind"], "prompt");
        EXPECT_EQ(spans[1]["kind"], "model");
        EXPECT_EQ(spans[2]["kind"], "tool");
        EXPECT_EQ(spans[3]["kind"], "model");
        const std::string t1 = spans[1]["text"], obs = spans[2]["text"], t2 = spans[3]["text"];
        EXPECT_EQ(t1.rfind("<tool_call>", 0), 0u);
        EXPECT_EQ(obs.rfind("\n<tool_response>\n", 0), 0u);
        EXPECT_EQ(spans[1]["tokens"].get<size_t>(), t1.size());
        EXPECT_EQ(spans[2]["tokens"].get<size_t>(), obs.size());
        EXPECT_EQ(spans[3]["tokens"].get<size_t>(), t2.size() + 1);  // + end-of-sequence
        EXPECT_EQ(s["completion"].get<std::string>(), t1 + obs + t2);
        EXPECT_EQ(s["completion_tokens"].get<size_t>(), t1.size() + obs.size() + t2.size() + 1);
        EXPECT_EQ(s["turns"], 2);
        EXPECT_EQ(s["tool_calls"], 1);
        EXPECT_EQ(s["malformed_calls"], 0);
        EXPECT_EQ(s["end"], "eos");
        EXPECT_EQ(s["rewards"]["correct"].get<double>(), k % 2 == 0 ? 1.0 : 0.0) << s.dump();
        EXPECT_TRUE(s["in_loss"].get<bool>());
        EXPECT_NE(s["advantage"].get<double>(), 0.0);
    }
    const auto metrics = read_jsonl(trainer.run_dir() / "metrics.jsonl");
    ASSERT_EQ(metrics.size(), 2u);
    for (const json& m : metrics) {
        EXPECT_EQ(m["accuracy"].get<double>(), 0.5);
        EXPECT_EQ(m["env/turns_mean"].get<double>(), 2.0);
        EXPECT_EQ(m["env/tool_calls_mean"].get<double>(), 1.0);
        EXPECT_EQ(m["env/malformed_calls"].get<int>(), 0);
        EXPECT_TRUE(std::isfinite(m["loss"].get<double>()));
        EXPECT_GT(m["grad_norm"].get<double>(), 0.0);
        // The model's tokens and the observations' make up each episode's length.
        EXPECT_DOUBLE_EQ(m["env/model_tokens_mean"].get<double>() +
                             m["env/observation_tokens_mean"].get<double>(),
                         m["response_length_mean"].get<double>());
    }
    // The last step evaluates held-out items through the same episodes: half right.
    EXPECT_EQ(metrics.back()["eval_accuracy"].get<double>(), 0.5);
}

TEST(RlMultiTurn, EnvConfigKeysAreCheckedAndDefaultToOneTurn) {
    Config c(kRlConfigDefaults);
    c.set("model.path=m");
    const RlConfig r = read_rl_config(c);
    EXPECT_EQ(r.env.name, EnvKind::single_turn);
    EXPECT_EQ(r.env.max_tokens_per_turn, 0);
    c.set("env.name=nope");
    try {
        read_rl_config(c);
        FAIL() << "an unknown environment was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("env.name: unknown environment 'nope' (expected "
                                             "single_turn, calculator, search, python or server)"),
                  std::string::npos)
            << e.what();
    }
    Config d(kRlConfigDefaults);
    EXPECT_THROW(d.set("env.max_turns=0"), Error);
    EXPECT_THROW(d.set("env.tools=calculator"), Error);  // not a key
}

}  // namespace
}  // namespace crucible::rl

namespace crucible::rl {
namespace {

// A Python reward that hangs on the odd samples (those that asked for "+4"): the run finishes,
// those samples are marked reward_timeout and excluded (never scored 0), the others are paid.
TEST(RlPythonReward, AHangingRewardMarksItsSamplesAndTheRunFinishes) {
    testutil::TempDir dir;
    const fs::path model = model_folder(dir.path());
    const std::string file = dir.write("r.py",
                                       "import time\n"
                                       "def f(prompts, completions, **kw):\n"
                                       "    if any('+4' in c for c in completions):\n"
                                       "        time.sleep(60)\n"
                                       "    return [0.25] * len(completions)\n")
                                 .string();
    Config c = multiturn_config(dir.path(), model);
    c.set("rewards.python.file=" + file);
    c.set("rewards.python.function=f");
    c.set("rewards.python.timeout_s=0.3");
    c.set("rewards.python.workers=1");
    const TextTokenizer tok = TextTokenizer(ByteTokenizer());
    std::ostringstream log;
    RlTrainer trainer(c, false, log, {}, sums_task(tok));
    SumsPolicy policy;
    policy.tok = trainer.tokenizer();
    trainer.set_generator(policy.generator());
    trainer.run();
    EXPECT_NE(log.str().find("python reward: 4 of 8 samples failed and are excluded (4 timed "
                             "out); first: reward_timeout: no answer within 0.3 s"),
              std::string::npos)
        << log.str();
    const auto samples = read_jsonl(dir.path() / "mt" / "samples.jsonl");
    ASSERT_EQ(samples.size(), 16u);  // 2 steps x 2 groups x 4
    for (const json& s : samples) {
        const bool odd = s["sample"].get<int>() % 2 == 1;
        if (odd) {
            EXPECT_EQ(s["error"], "python: reward_timeout: no answer within 0.3 s") << s.dump();
        } else {
            EXPECT_FALSE(s.contains("error")) << s.dump();
            EXPECT_EQ(s["rewards"]["python"], 0.25);
            EXPECT_EQ(s["reward"], 1.25);  // correct (1) + python (0.25)
        }
    }
    const auto metrics = read_jsonl(dir.path() / "mt" / "metrics.jsonl");
    EXPECT_EQ(metrics.at(0)["invalid_samples"], 4);
}

// A built-in verdict that hangs on the wrong answers (the odd samples): the run finishes, those
// samples are marked reward_timeout and excluded, never scored 0; the right ones are paid.
TEST(RlVerifierTimeout, AHangingVerdictMarksItsSamplesAndTheRunFinishes) {
    testutil::TempDir dir;
    const fs::path model = model_folder(dir.path());
    Config c = multiturn_config(dir.path(), model);
    c.set("rewards.verifier_timeout_s=0.2");
    const TextTokenizer tok = TextTokenizer(ByteTokenizer());
    Task task = sums_task(tok);
    auto open = std::make_shared<std::atomic<bool>>(false);
    task.score = [open](const TaskItem& item, const std::string& text) {
        if (text.find("<answer>" + item.answer + "</answer>") != std::string::npos)
            return TaskScore{1.0, 0.0};
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!*open && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return TaskScore{0.0, 0.0};
    };
    std::ostringstream log;
    {
        RlTrainer trainer(c, false, log, {}, task);
        SumsPolicy policy;
        policy.tok = trainer.tokenizer();
        trainer.set_generator(policy.generator());
        trainer.run();
        *open = true;  // the abandoned calls end before the trainer (their task) goes
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (abandoned_calls().load() != 0 && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_NE(log.str().find("verifier: 4 of 8 samples got no verdict within 0.2 s and are "
                             "excluded (reward_timeout)"),
              std::string::npos)
        << log.str();
    const auto samples = read_jsonl(dir.path() / "mt" / "samples.jsonl");
    ASSERT_EQ(samples.size(), 16u);
    for (const json& s : samples) {
        if (s["sample"].get<int>() % 2 == 1) {
            EXPECT_EQ(s["error"],
                      "correct: reward_timeout: no verdict within 0.2 s "
                      "(rewards.verifier_timeout_s)")
                << s.dump();
            EXPECT_TRUE(s["reward"].is_null());
            EXPECT_FALSE(s["in_loss"]);
        } else {
            EXPECT_FALSE(s.contains("error")) << s.dump();
            EXPECT_EQ(s["rewards"]["correct"], 1.0);
        }
    }
    const auto metrics = read_jsonl(dir.path() / "mt" / "metrics.jsonl");
    EXPECT_EQ(metrics.at(0)["invalid_samples"], 4);
    // Held-out accuracy (the last step's) goes through the same limit: the odd samples of the
    // 2 problems are failures, not hangs and not zeros.
    EXPECT_EQ(metrics.at(1)["eval_failures"], 2) << metrics.at(1).dump();
    EXPECT_EQ(metrics.at(1)["eval_accuracy"], 1.0) << metrics.at(1).dump();
}

}  // namespace
}  // namespace crucible::rl

namespace crucible::rl {
namespace {

// The trainer's rollouts on one engine with KV kept across turns (its default) against the
// round-based path (the engine generator, one engine per round, every turn re-prefilled), on
// the same model, config and seeds: the same samples and the same losses, for a one-turn task
// and for calculator episodes.
TEST(RlEpisodesOnEngine, TheTrainerLearnsTheSameAsOnTheRoundPath) {
    for (const char* env_name : {"single_turn", "calculator"}) {
        testutil::TempDir dir;
        const fs::path model = model_folder(dir.path());
        const TextTokenizer tok = TextTokenizer(ByteTokenizer());
        const auto run = [&](const std::string& name, bool rounds) {
            Config c = multiturn_config(dir.path(), model);
            c.set("run.name=" + name);
            c.set(std::string("env.name=") + env_name);
            c.set("rollout.max_new_tokens=40");
            c.set("env.max_tokens_per_turn=16");
            std::ostringstream log;
            RlTrainer trainer(c, false, log, {}, sums_task(tok));
            if (rounds)
                trainer.set_generator(engine_generator(trainer.model(), trainer.tokenizer()));
            trainer.run();
            return std::pair{read_jsonl(dir.path() / name / "samples.jsonl"),
                             read_jsonl(dir.path() / name / "metrics.jsonl")};
        };
        const auto [held_samples, held_metrics] = run("held", false);
        const auto [round_samples, round_metrics] = run("round", true);
        ASSERT_EQ(held_samples.size(), round_samples.size()) << env_name;
        for (size_t i = 0; i < held_samples.size(); i++) {
            EXPECT_EQ(held_samples[i]["completion"], round_samples[i]["completion"]) << env_name;
            EXPECT_EQ(held_samples[i]["reward"], round_samples[i]["reward"]) << env_name;
        }
        ASSERT_EQ(held_metrics.size(), round_metrics.size());
        for (size_t i = 0; i < held_metrics.size(); i++) {
            for (const char* key : {"loss", "grad_norm", "reward_mean", "response_length_mean"})
                EXPECT_EQ(held_metrics[i][key], round_metrics[i][key]) << env_name << " " << key;
        }
    }
}

}  // namespace
}  // namespace crucible::rl
