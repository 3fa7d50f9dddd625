// RL on traces captured by the server (`crucible train rl --env server`, docs/SERVING.md "RL
// endpoints"): the join of a session's turns into one token-exact sequence (worked by hand),
// the session hub's answers to every bad input an agent can send, a paused server (requests in
// flight finish on the weights they started with, later ones wait and run on the new weights,
// each tagged with its policy version; outputs checked against the reference generator on
// each set of weights), the trainer end to end with an agent thread speaking HTTP (the trained
// sequences are the ids the agent saw, the rewards are the agent's, failed and non-joinable
// episodes are excluded with their reasons), and the example Python agent through the CLI.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "engine/reference_generate.h"
#include "env/countdown.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "rl/agent_server.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "serve/request_parse.h"
#include "serve/rl_sessions.h"
#include "serve/server.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::rl {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Polls `cond` (state changing on other threads) for up to 60 s.
template <typename F>
bool eventually(F cond) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return cond();
}

RlTurn turn(std::vector<int32_t> prompt, std::vector<int32_t> completion, int64_t version = 3,
            std::string finish = "stop") {
    RlTurn t;
    t.prompt = std::move(prompt);
    t.completion = std::move(completion);
    for (size_t i = 0; i < t.completion.size(); i++) t.logprobs.push_back(-0.5f - float(i));
    t.finish = std::move(finish);
    t.policy_version = version;
    return t;
}

// ---- joining a session's turns ----------------------------------------------------------------

TEST(SessionSequence, TurnsThatContinueTheSessionJoinWithTheAgentsIdsMasked) {
    // Prompt [1 2 3], the model [4 5], the agent appends [6 7], the model [8], the agent
    // appends nothing, the model [9 10] (cut at its limit).
    const SessionSequence q =
        session_sequence({turn({1, 2, 3}, {4, 5}), turn({1, 2, 3, 4, 5, 6, 7}, {8}),
                          turn({1, 2, 3, 4, 5, 6, 7, 8}, {9, 10}, 3, "length")},
                         3);
    ASSERT_EQ(q.error, "");
    EXPECT_EQ(q.prompt, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(q.completion, (std::vector<int32_t>{4, 5, 6, 7, 8, 9, 10}));
    ASSERT_EQ(q.spans.size(), 4u);
    const std::vector<std::tuple<EpisodeSpan::Kind, size_t, size_t>> want = {
        {EpisodeSpan::Kind::model, 0, 2},
        {EpisodeSpan::Kind::tool, 2, 4},
        {EpisodeSpan::Kind::model, 4, 5},
        {EpisodeSpan::Kind::model, 5, 7}};
    for (size_t i = 0; i < want.size(); i++) {
        EXPECT_EQ(q.spans[i].kind, std::get<0>(want[i])) << i;
        EXPECT_EQ(q.spans[i].begin, std::get<1>(want[i])) << i;
        EXPECT_EQ(q.spans[i].end, std::get<2>(want[i])) << i;
    }
    // The engine's logprobs at the model's five ids, in order.
    EXPECT_EQ(q.logprobs, (std::vector<float>{-0.5f, -1.5f, -0.5f, -0.5f, -1.5f}));
    EXPECT_TRUE(q.truncated);
    EXPECT_EQ(q.turns, 3);
}

TEST(SessionSequence, ATurnThatRewritesTheConversationOrComesFromOtherWeightsIsRefused) {
    // The agent re-tokenized: turn 2's prompt differs at position 4 (the model's 5 became 55).
    SessionSequence q =
        session_sequence({turn({1, 2, 3}, {4, 5}), turn({1, 2, 3, 4, 55, 6}, {7})}, 3);
    EXPECT_NE(q.error.find("turn 2 of 2's prompt does not continue the session token-exactly: "
                           "it differs at token 4 of the 5 so far"),
              std::string::npos)
        << q.error;
    EXPECT_TRUE(q.completion.empty());
    // A shorter prompt than the session so far (the agent dropped the last answer).
    q = session_sequence({turn({1, 2, 3}, {4, 5}), turn({1, 2, 3}, {7})}, 3);
    EXPECT_NE(q.error.find("differs at token 3 of the 5"), std::string::npos) << q.error;
    // Generated with the previous step's weights.
    q = session_sequence({turn({1, 2}, {4}), turn({1, 2, 4}, {5}, 2)}, 3);
    EXPECT_NE(q.error.find("turn 2 of 2 was generated with policy version 2, not the step's 3"),
              std::string::npos)
        << q.error;
    q = session_sequence({}, 3);
    EXPECT_EQ(q.error, "no completion was recorded in the session");
}

// ---- the session hub ---------------------------------------------------------------------------

int status_of(const RlAnswer& a) {
    return a.status;
}
json body_of(const RlAnswer& a) {
    return json::parse(a.body);
}

TEST(RlSessionHub, EveryBadInputGetsOneClearAnswerAndNothingIsScoredSilently) {
    RlSessionHub hub(/*require_correct=*/false, SamplingParams{});
    const auto ids =
        hub.offer({{{{"id", "a"}}, 0, 0}, {{{"id", "a"}}, 0, 1}, {{{"id", "b"}}, 1, 0}}, 5);
    ASSERT_EQ(ids.size(), 3u);
    // Taking gives the offers in order, with their item and policy version.
    json e = body_of(hub.take("{\"wait_s\": 0}"));
    EXPECT_EQ(e["session"], ids[0]);
    EXPECT_EQ(e["item"]["id"], "a");
    EXPECT_EQ(e["policy_version"], 5);
    EXPECT_EQ(e["done"], false);
    EXPECT_EQ(status_of(hub.take("{\"wait_s\": 61}")), 400);
    EXPECT_EQ(status_of(hub.take("[1]")), 400);
    // Completions: unknown session 404, n > 1 400.
    try {
        hub.check("rl-nope", 1, SamplingParams{});
        ADD_FAILURE() << "an unknown session was accepted";
    } catch (const ApiError& x) {
        EXPECT_EQ(x.status, 404);
        EXPECT_NE(x.message.find("Unknown RL session 'rl-nope'"), std::string::npos);
    }
    try {
        hub.check(ids[0], 2, SamplingParams{});
        ADD_FAILURE() << "n = 2 was accepted";
    } catch (const ApiError& x) {
        EXPECT_EQ(x.status, 400);
        EXPECT_EQ(x.param, "n");
    }
    // Sampling other than the run's (temperature 1, top_p 1, top_k 0, min_p 0): 400 naming it.
    for (const auto& [field, set] :
         std::vector<std::pair<std::string, std::function<void(SamplingParams&)>>>{
             {"temperature", [](SamplingParams& p) { p.temperature = 0.7f; }},
             {"top_p", [](SamplingParams& p) { p.top_p = 0.9f; }},
             {"top_k", [](SamplingParams& p) { p.top_k = 40; }},
             {"min_p", [](SamplingParams& p) { p.min_p = 0.05f; }}}) {
        SamplingParams p;
        set(p);
        try {
            hub.check(ids[0], 1, p);
            ADD_FAILURE() << field << " was accepted";
        } catch (const ApiError& x) {
            EXPECT_EQ(x.status, 400);
            EXPECT_EQ(x.param, field);
            EXPECT_NE(x.message.find("this run trains with"), std::string::npos) << x.message;
        }
    }
    // Using an offer without taking it takes it: the next take skips it.
    hub.check(ids[2], 1, SamplingParams{});
    hub.record(ids[0], turn({1}, {2}, 5));
    hub.record(ids[2], turn({1}, {3}, 5));
    EXPECT_EQ(body_of(hub.take("{\"wait_s\": 0}"))["session"], ids[1]);
    EXPECT_TRUE(body_of(hub.take("{\"wait_s\": 0}"))["session"].is_null());
    // Rewards: malformed ones are 400s naming the field, an unknown session 404.
    const std::string s0 = ids[0];
    for (const std::string& bad :
         {std::string("not json"), std::string("{\"reward\": 1}"), "{\"session\": \"" + s0 + "\"}",
          "{\"session\": \"" + s0 + "\", \"reward\": 1, \"error\": \"x\"}",
          "{\"session\": \"" + s0 + "\", \"reward\": \"1\"}",
          "{\"session\": \"" + s0 + "\", \"reward\": 1e999}",
          "{\"session\": \"" + s0 + "\", \"reward\": 1, \"correct\": 1}",
          "{\"session\": \"" + s0 + "\", \"error\": 7}"}) {
        EXPECT_EQ(status_of(hub.post_reward(bad)), 400) << bad;
    }
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"rl-nope\", \"reward\": 1}")), 404);
    // One reward per session: the second is a 409, and completions in it too.
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"" + s0 +
                                        "\", \"reward\": 0.75, "
                                        "\"correct\": true}")),
              200);
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"" + s0 + "\", \"reward\": 1}")), 409);
    try {
        hub.check(s0, 1, SamplingParams{});
        ADD_FAILURE() << "a completion in an ended session was accepted";
    } catch (const ApiError& x) {
        EXPECT_EQ(x.status, 409);
    }
    // The agent's error ends its episode with the reason.
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"" + ids[2] +
                                        "\", \"error\": \"search tool down\"}")),
              200);
    // The third episode never gets a reward: it times out.
    const std::vector<RlSessionOutcome> out = hub.collect(0.3, {});
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0].reward, 0.75);
    EXPECT_EQ(out[0].correct, true);
    EXPECT_EQ(out[0].turns.size(), 1u);
    EXPECT_FALSE(out[1].reward.has_value());
    EXPECT_EQ(out[1].error.rfind("session_timeout", 0), 0u) << out[1].error;
    EXPECT_FALSE(out[2].reward.has_value());
    EXPECT_EQ(out[2].error, "agent: search tool down");
    // After the round, its sessions are ended, not unknown.
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"" + ids[1] + "\", \"reward\": 1}")), 409);
    hub.close();
    EXPECT_EQ(body_of(hub.take(""))["done"], true);
}

TEST(RlSessionHub, ARewardWithoutACompletionOrWithoutCorrectWhenRequiredIsNotTrainedOn) {
    RlSessionHub hub(/*require_correct=*/true, SamplingParams{});
    const auto ids = hub.offer({{json::object(), 0, 0}}, 0);
    const RlAnswer a = hub.post_reward("{\"session\": \"" + ids[0] + "\", \"reward\": 1}");
    EXPECT_EQ(a.status, 400);
    EXPECT_NE(a.body.find("post 'correct'"), std::string::npos) << a.body;
    EXPECT_EQ(status_of(hub.post_reward("{\"session\": \"" + ids[0] +
                                        "\", \"reward\": 1, \"correct\": false}")),
              200);
    const auto out = hub.collect(5, {});
    EXPECT_FALSE(out[0].reward.has_value());
    EXPECT_EQ(out[0].error, "no completion was recorded in the session");
}

// ---- a paused server ---------------------------------------------------------------------------

TEST(AgentServerPause, RunningRequestsFinishOnTheirWeightsAndQueuedOnesRunOnTheNew) {
    testutil::TempDir tmp;
    const fs::path dir = tmp.path() / "m";
    std::unique_ptr<Model> served = testutil::write_byte_model(dir, 128, 5);
    auto hub = std::make_shared<RlSessionHub>(false, SamplingParams{});
    std::mutex gate_mu;
    std::condition_variable gate_cv;
    bool hold = true;
    ServerOptions o;
    o.port = 0;
    o.served_model_name = "policy";
    o.model = served.get();
    const TextTokenizer tok{ByteTokenizer()};
    o.tokenizer = &tok;
    o.rl_sessions = hub;
    o.after_step = [&](int64_t step) {  // holds the engine at step 2, mid-generation
        if (step != 2) return;
        std::unique_lock<std::mutex> lock(gate_mu);
        gate_cv.wait(lock, [&] { return !hold; });
    };
    Server server(o);
    std::thread runner([&] { server.run(); });
    auto complete = [&](const std::vector<int32_t>& prompt) {
        httplib::Client http("127.0.0.1", server.port());
        http.set_read_timeout(60, 0);
        const json body = {{"prompt", prompt},
                           {"max_tokens", 24},
                           {"temperature", 0.0},
                           {"ignore_eos", true},
                           {"return_token_ids", true}};
        auto res = http.Post("/v1/completions", body.dump(), "application/json");
        return res ? json::parse(res->body) : json();
    };
    const std::vector<int32_t> p1 = ByteTokenizer().encode("12 3>"),
                               p2 = ByteTokenizer().encode("9 9>");
    // The reference continuations on the old weights and on the new (every weight x 1.5).
    auto old_model = load_model(dir);
    auto new_model = load_model(dir);
    for (size_t i = 0; i < new_model->num_params(); i++) new_model->params()[i] *= 1.5f;
    const auto want1 = greedy_generate_reference(*old_model, {p1}, 24, -1)[0];
    const auto want2_old = greedy_generate_reference(*old_model, {p2}, 24, -1)[0];
    const auto want2 = greedy_generate_reference(*new_model, {p2}, 24, -1)[0];
    ASSERT_NE(want2, want2_old);  // the change is visible in the output

    std::thread first([&] {
        const json r = complete(p1);
        EXPECT_EQ(r["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want1);
        EXPECT_EQ(r["choices"][0]["prompt_token_ids"].get<std::vector<int32_t>>(), p1);
        EXPECT_EQ(r["policy_version"], 0);
    });
    // The engine is at step 2 of the first request: pause, then let it go on.
    ASSERT_TRUE(eventually([&] { return server.stats().steps >= 2; }));
    std::thread pauser([&] { server.pause(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    {
        std::lock_guard<std::mutex> lock(gate_mu);
        hold = false;
    }
    gate_cv.notify_all();
    pauser.join();  // returns once the first request has finished
    EXPECT_EQ(server.stats().running, 0);
    // A request while paused waits in the queue ...
    std::atomic<bool> second_done{false};
    std::thread second([&] {
        const json r = complete(p2);
        EXPECT_EQ(r["choices"][0]["token_ids"].get<std::vector<int32_t>>(), want2);
        EXPECT_EQ(r["policy_version"], 7);
        second_done = true;
    });
    ASSERT_TRUE(eventually([&] { return server.stats().waiting >= 1; }));
    // ... while the weights change in place ...
    for (size_t i = 0; i < served->num_params(); i++) served->params()[i] *= 1.5f;
    EXPECT_FALSE(second_done);
    // ... and runs on them, tagged with the new version, once resumed.
    server.resume(7);
    second.join();
    first.join();
    EXPECT_TRUE(second_done);
    server.stop();
    runner.join();
}

// ---- the trainer with an agent over HTTP -------------------------------------------------------

Task addition_task(const TextTokenizer& tok) {
    Task t;
    t.name = "toy";
    for (int i = 0; i < 8; i++) {
        TaskItem item;
        item.id = "toy-" + std::to_string(i);
        item.prompt = std::to_string(i) + "+3=";
        item.prompt_ids = tok.encode(item.prompt);
        item.answer = std::to_string(i + 3);
        item.has_gold = true;
        item.index = i;
        (i < 6 ? t.train : t.eval).push_back(item);
    }
    t.score = [](const TaskItem& item, const std::string& text) {
        return TaskScore{text.rfind(item.answer, 0) == 0 ? 1.0 : 0.0, 0.0};
    };
    return t;
}

using testutil::read_jsonl;

// What the test's agent did in one session.
struct AgentRecord {
    int64_t version = -1;
    int kind = 0;  // 0: posted an error; 1: broke the token chain; 2: two exact turns
    size_t prompt = 0, model1 = 0, observation = 0, model2 = 0;
    double reward = 0;
    bool correct = false;
};

TEST(RlAgentServer, TrainsOnTheIdsTheAgentSawWithTheAgentsRewards) {
    testutil::TempDir tmp;
    const fs::path model_dir = tmp.path() / "start";
    testutil::write_byte_model(model_dir, 128, 9);
    const TextTokenizer tok{ByteTokenizer()};
    Config c(kRlConfigDefaults);
    c.set("run.dir=" + tmp.path().string());
    c.set("run.name=agent");
    c.set("model.path=" + model_dir.string());
    c.set("env.name=server");
    c.set("env.server.session_timeout_s=120");
    c.set("rollout.prompts_per_step=2");
    c.set("rollout.samples_per_prompt=4");
    c.set("rollout.max_new_tokens=32");
    c.set("train.steps=2");
    c.set("train.lr=1e-2");
    c.set("train.warmup_steps=0");
    c.set("train.checkpoint_every=0");
    c.set("train.eval_every=0");
    c.set("train.eval_problems=2");
    c.set("train.eval_samples=2");
    const ByteTokenizer bt;
    std::mutex mu;
    std::map<std::string, AgentRecord> seen;
    std::atomic<int> http_failures{0};
    std::map<std::string, int> statuses;  // the answers to bad requests
    std::thread agent([&] {
        // The server's address comes from <run>/server.json.
        const fs::path info = tmp.path() / "agent" / "server.json";
        if (!eventually([&] { return fs::exists(info); })) {
            http_failures++;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const int port = json::parse(testutil::slurp(info))["port"];
        httplib::Client http("127.0.0.1", port);
        http.set_read_timeout(120, 0);
        auto post = [&](const std::string& path, const json& body, const std::string& session) {
            httplib::Headers h;
            if (!session.empty()) h.emplace("X-Session-Id", session);
            auto res = http.Post(path.c_str(), h, body.dump(), "application/json");
            if (!res) {
                http_failures++;
                return std::make_pair(-1, json());
            }
            return std::make_pair(res->status, json::parse(res->body, nullptr, false));
        };
        bool bad_inputs_tried = false;
        for (;;) {
            const auto [st, e] = post("/v1/rl/episodes", {{"wait_s", 1}}, "");
            if (st != 200) return;
            if (e["session"].is_null()) {
                if (e["done"]) return;
                continue;
            }
            const std::string session = e["session"];
            AgentRecord rec;
            rec.version = e["policy_version"];
            const int sample = e["sample"];
            rec.kind = sample == 0 ? 0 : sample == 1 ? 1 : 2;
            if (rec.kind == 0) {
                post("/v1/rl/reward", {{"session", session}, {"error", "tool crashed"}}, "");
            } else {
                const json ask = {{"prompt", e["item"]["prompt"]},
                                  {"max_tokens", 6},
                                  {"temperature", 1.0},
                                  {"return_token_ids", true},
                                  {"ignore_eos", true}};
                const auto [s1, r1] = post("/v1/completions", ask, session);
                if (s1 != 200 || r1["policy_version"] != rec.version) http_failures++;
                std::vector<int32_t> ids = r1["choices"][0]["prompt_token_ids"];
                const std::vector<int32_t> out1 = r1["choices"][0]["token_ids"];
                rec.prompt = ids.size();
                rec.model1 = out1.size();
                const std::vector<int32_t> obs =
                    bt.encode("\nobs " + std::to_string(sample) + "\n");
                rec.observation = obs.size();
                ids.insert(ids.end(), out1.begin(), out1.end());
                ids.insert(ids.end(), obs.begin(), obs.end());
                if (rec.kind == 1) ids[1] = ids[1] == 'x' ? 'y' : 'x';  // rewrites the past
                // The second turn through the other field that names a session: `user`.
                const json ask2 = {{"prompt", ids},      {"max_tokens", 5},
                                   {"temperature", 1.0}, {"return_token_ids", true},
                                   {"ignore_eos", true}, {"user", session}};
                const auto [s2, r2] = post("/v1/completions", ask2, "");
                if (s2 != 200) http_failures++;
                rec.model2 = r2["choices"][0]["token_ids"].size();
                // A reward the test can recompute: it depends on what the model wrote.
                rec.reward = double(out1[0] % 4);
                rec.correct = out1[0] % 2 == 0;
                post("/v1/rl/reward",
                     {{"session", session}, {"reward", rec.reward}, {"correct", rec.correct}}, "");
                if (!bad_inputs_tried) {  // the same session again, and one never seen
                    bad_inputs_tried = true;
                    std::lock_guard<std::mutex> lock(mu);
                    statuses["reward twice"] =
                        post("/v1/rl/reward", {{"session", session}, {"reward", 1.0}}, "").first;
                    statuses["completion after the reward"] =
                        post("/v1/completions", ask, session).first;
                    statuses["unknown session"] =
                        post("/v1/completions", ask, "rl-never-seen").first;
                    statuses["completion without a session"] =
                        post("/v1/completions", ask, "").first;
                }
            }
            std::lock_guard<std::mutex> lock(mu);
            seen[session] = rec;
        }
    });
    std::ostringstream log;
    {
        RlTrainer trainer(c, false, log, {}, addition_task(tok));
        trainer.run();
    }
    agent.join();
    ASSERT_EQ(http_failures.load(), 0) << log.str();
    EXPECT_EQ(statuses["reward twice"], 409);
    EXPECT_EQ(statuses["completion after the reward"], 409);
    EXPECT_EQ(statuses["unknown session"], 404);
    EXPECT_EQ(statuses["completion without a session"], 200);  // served, not recorded

    const std::vector<json> samples = read_jsonl(tmp.path() / "agent" / "samples.jsonl");
    ASSERT_EQ(samples.size(), 16u);
    ASSERT_EQ(seen.size(), 16u);
    std::map<int64_t, std::pair<double, int>> reward_by_step;  // valid sessions' sum, count
    std::map<int64_t, std::pair<int, int>> correct_by_step;
    for (const json& s : samples) {
        const int64_t step = s["step"];
        ASSERT_TRUE(s.contains("session")) << s.dump();
        const AgentRecord& rec = seen.at(s["session"]);
        EXPECT_EQ(rec.version, step - 1) << "episodes of step N run on the weights after N - 1";
        if (rec.kind == 0) {
            EXPECT_EQ(s["error"], "agent: tool crashed");
            EXPECT_TRUE(s["reward"].is_null());
            EXPECT_FALSE(s["in_loss"]);
            continue;
        }
        if (rec.kind == 1) {
            EXPECT_NE(s["error"].get<std::string>().find("does not continue the session "
                                                         "token-exactly: it differs at token 1"),
                      std::string::npos)
                << s.dump();
            EXPECT_FALSE(s["in_loss"]);
            continue;
        }
        ASSERT_FALSE(s.contains("error")) << s.dump();
        // The trained sequence is what the agent saw: its prompt, the first answer, its
        // observation, the second answer.
        const json& spans = s["spans"];
        ASSERT_EQ(spans.size(), 4u) << s.dump();
        EXPECT_EQ(spans[0]["kind"], "prompt");
        EXPECT_EQ(spans[0]["tokens"], rec.prompt);
        EXPECT_EQ(spans[1]["kind"], "model");
        EXPECT_EQ(spans[1]["tokens"], rec.model1);
        EXPECT_EQ(spans[2]["kind"], "tool");
        EXPECT_EQ(spans[2]["tokens"], rec.observation);
        EXPECT_EQ(spans[2]["text"], "\nobs " + std::to_string(int(s["sample"])) + "\n");
        EXPECT_EQ(spans[3]["kind"], "model");
        EXPECT_EQ(spans[3]["tokens"], rec.model2);
        EXPECT_EQ(s["rewards"]["agent"], rec.reward);
        EXPECT_EQ(s["reward"], rec.reward);
        reward_by_step[step].first += rec.reward;
        reward_by_step[step].second++;
        correct_by_step[step].first += rec.correct;
        correct_by_step[step].second++;
    }
    const std::vector<json> metrics = read_jsonl(tmp.path() / "agent" / "metrics.jsonl");
    ASSERT_EQ(metrics.size(), 2u);
    for (const json& m : metrics) {
        const int64_t step = m["step"];
        EXPECT_EQ(m["agent/failed_episodes"], 4);
        EXPECT_EQ(m["invalid_samples"], 4);
        EXPECT_NEAR(m["reward/agent"].get<double>(),
                    reward_by_step[step].first / reward_by_step[step].second, 1e-12);
        EXPECT_NEAR(m["accuracy"].get<double>(),
                    double(correct_by_step[step].first) / correct_by_step[step].second, 1e-12);
        // The engine's logprobs of the recorded ids are the trainer's on the joined sequence.
        EXPECT_LT(m["agent/logprob_diff_max"].get<double>(), 1e-4) << m.dump();
    }
    // The weights moved.
    EXPECT_NE(
        testutil::slurp(model_dir / "model.safetensors"),
        testutil::slurp(tmp.path() / "agent" / "checkpoints" / "step-2" / "model.safetensors"));
}

// The example agent scores Countdown-lite with its own Python; it must agree with the built-in
// verifier (env/countdown.h) on right answers and on the near misses a model writes.
TEST(RlAgentServer, TheExampleAgentsRewardIsTheBuiltInVerifiers) {
    std::vector<PromptCompletion> train, eval;
    countdown_split(150, 0, 7, &train, &eval);
    json cases = json::array();
    for (const PromptCompletion& pc : train) {
        std::string a = pc.completion;
        if (!a.empty() && a.back() == '\n') a.pop_back();
        std::string swapped = a, op = a, zero = a;
        swapped[0] = swapped[0] == '9' ? '1' : char(swapped[0] + 1);
        op[1] = op[1] == '+' ? '-' : '+';
        zero.insert(zero.begin(), '0');
        for (const std::string& c :
             {a, a + "\n", a + "\nmore", " " + a, a + " ", swapped, op, zero, a + "+0", a + "*1",
              a.substr(0, 3), a + "=", std::string("(") + a + ")", std::string(""), a + "x"}) {
            cases.push_back({pc.prompt, c});
        }
    }
    testutil::TempDir tmp;
    const fs::path file = tmp.write("cases.json", cases.dump());
    int status = 0;
    const std::string out = testutil::command_output(
        "python3 -c 'import json, sys; sys.path.insert(0, sys.argv[1]); import countdown_agent "
        "as a; print(json.dumps([a.countdown_reward(p, c) for p, c in "
        "json.load(open(sys.argv[2]))]))' " +
            std::string(CRUCIBLE_SOURCE_DIR) + "/examples/agents " + file.string(),
        &status);
    ASSERT_EQ(status, 0) << out;
    const json got = json::parse(out);
    ASSERT_EQ(got.size(), cases.size());
    int right = 0;
    for (size_t i = 0; i < cases.size(); i++) {
        const double want = countdown_reward(cases[i][0], cases[i][1]);
        right += want == 1.0;
        EXPECT_EQ(got[i].get<double>(), want) << cases[i].dump();
    }
    EXPECT_GE(right, 150);  // every gold answer and more: the check is not all zeros
}

// The example agent (examples/agents/countdown_agent.py, started by the trainer through
// env.server.agent) runs every episode of a short run and exits when training is over.
TEST(RlAgentServer, TheExampleAgentTrainsThroughTheCli) {
    testutil::TempDir tmp;
    testutil::write_byte_model(tmp.path() / "m", 128, 4);
    int status = 0;
    const std::string out = testutil::command_output(
        "cd " + std::string(CRUCIBLE_SOURCE_DIR) + " && " + CRUCIBLE_BINARY +
            " train rl --config examples/agents/rl_countdown_agent.yaml --set model.path=" +
            (tmp.path() / "m").string() + " --set run.dir=" + tmp.path().string() +
            " --set run.name=ex --set train.steps=2 --set rollout.prompts_per_step=4"
            " --set algorithm.minibatches=1 --set algorithm.dynamic_sampling=false"
            " --set train.eval_every=0 --set train.eval_problems=4 --set task.train_examples=200"
            " --set task.eval_examples=4 2>&1",
        &status);
    ASSERT_EQ(status, 0) << out;
    EXPECT_NE(out.find("rl: started the agent"), std::string::npos) << out;
    const std::vector<json> metrics = read_jsonl(tmp.path() / "ex" / "metrics.jsonl");
    ASSERT_EQ(metrics.size(), 2u);
    for (const json& m : metrics) {
        EXPECT_EQ(m["agent/failed_episodes"], 0) << m.dump();
        EXPECT_TRUE(m.contains("reward/agent")) << m.dump();
    }
    // The agent's own summary: every episode of each policy version, then a clean exit.
    const std::string agent_log = testutil::slurp(tmp.path() / "ex" / "agent.log");
    EXPECT_NE(agent_log.find("policy version 0: 32 episodes"), std::string::npos) << agent_log;
    EXPECT_NE(agent_log.find("policy version 1: 32 episodes"), std::string::npos) << agent_log;
}

TEST(RlAgentServer, ConfigRefusesRewardsTheAgentOwnsAndEvalRefusesTheEnvironment) {
    Config c(kRlConfigDefaults);
    c.set("model.path=m");
    c.set("env.name=server");
    c.set("rewards.soft_overlong=1");
    EXPECT_NE(testutil::error_of([&] { read_rl_config(c); })
                  .find("rewards.soft_overlong: with env.name server the agent posts each "
                        "episode's reward"),
              std::string::npos);
    c.set("rewards.soft_overlong=0");
    c.set("rewards.rubric=1");
    EXPECT_NE(testutil::error_of([&] { read_rl_config(c); }).find("rewards.rubric: with env.name"),
              std::string::npos);
    c.set("rewards.rubric=0");
    EXPECT_EQ(read_rl_config(c).env.name, EnvKind::server);
    EXPECT_EQ(read_rl_config(c).env.session_timeout_s, 600.0);
    testutil::TempDir tmp;
    const fs::path data =
        tmp.write("d.jsonl", "{\"id\": \"a\", \"prompt\": \"1+1=\", \"answer\": \"2\"}\n");
    testutil::write_byte_model(tmp.path() / "m", 64, 1);
    int status = 0;
    const std::string out = testutil::command_output(
        std::string(CRUCIBLE_BINARY) + " eval --model " + (tmp.path() / "m").string() + " --data " +
            data.string() + " --out " + (tmp.path() / "e").string() + " --env server 2>&1",
        &status);
    EXPECT_NE(status, 0);
    EXPECT_NE(out.find("--env server: an agent-driven environment trains only"), std::string::npos)
        << out;
}

}  // namespace
}  // namespace crucible::rl
