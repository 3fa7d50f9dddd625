// The engine's per-step OpenMP team (engine/team_size.h), which keeps a step from waiting on a
// descheduled thread when another process shares the cores: the cap from a step's work, the
// choice from (synthetic) step times as a neighbour comes and goes, and that the team never
// changes what is generated. No test here reads a clock: times are given to the sizer.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "engine/engine.h"
#include "engine/team_size.h"
#include "model_util.h"
#include "serve/openai_client.h"
#include "serve/server.h"
#include "test_util.h"

namespace crucible {
namespace {

// Sets the calling thread's OpenMP default for a scope.
struct Threads {
    int saved = omp_get_max_threads();
    explicit Threads(int n) { omp_set_num_threads(n); }
    ~Threads() { omp_set_num_threads(saved); }
};

TEST(TeamSizer, CapGivesASecondThreadOnlyWhenARegionHasWorkForIt) {
    const double m = TeamSizer::kMinMacsPerThread;
    EXPECT_EQ(TeamSizer::team_cap(0, 8), 1);
    EXPECT_EQ(TeamSizer::team_cap(m - 1, 8), 1);
    EXPECT_EQ(TeamSizer::team_cap(2 * m, 8), 2);
    EXPECT_EQ(TeamSizer::team_cap(5.5 * m, 8), 5);
    EXPECT_EQ(TeamSizer::team_cap(1e12, 8), 8);
    EXPECT_EQ(TeamSizer::team_cap(1e12, 1), 1);
    EXPECT_EQ(TeamSizer::team_cap(1e12, 0), 1);
    // The serve bench's tiny shape (hidden 64, 2 layers, MLP 128): one token's matmul region
    // averages ~5k multiply-adds, far below a thread's worth.
    const double tiny_row = 64.0 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128;
    EXPECT_EQ(TeamSizer::team_cap(tiny_row / 7, 2), 1);
}

TEST(TeamSizer, SmallStepsRunOnOneThreadAndLargeBatchesOnTheCallersTeam) {
    TeamSizer s;
    EXPECT_EQ(s.choose(1, 100, 700, 4, 0.0), 1);
    s.record(1e-3, 0.001);
    EXPECT_EQ(s.choose(TeamSizer::kMaxRows + 1, 1e9, 1e10, 4, 0.01), 4);
    s.record(1.0, 1.0);  // not a chosen step: ignored
    EXPECT_EQ(s.choose(1, 100, 700, 4, 1.0), 1);
}

// Steps of one bucket: `slow` says how long each team size takes per step.
template <typename Slow>
int run_steps(TeamSizer& s, double& now, int steps, Slow slow, int* last = nullptr) {
    int used_one = 0;
    for (int i = 0; i < steps; i++) {
        const int t = s.choose(8, 1e9, 1e9, 4, now);
        if (t == 1) used_one++;
        now += slow(t);
        s.record(slow(t), now);
        if (last) *last = t;
    }
    return used_one;
}

TEST(TeamSizer, MeasuresEachSizeThenFollowsANeighbourThatComesAndGoes) {
    TeamSizer s;
    double now = 0;
    // Quiet: time falls with the team. Every size is tried once, the largest first.
    auto quiet = [](int t) { return 4e-3 / t; };
    EXPECT_EQ(s.choose(8, 1e9, 1e9, 4, now), 4);
    s.record(quiet(4), now += quiet(4));
    EXPECT_EQ(s.choose(8, 1e9, 1e9, 4, now), 2);
    s.record(quiet(2), now += quiet(2));
    EXPECT_EQ(s.choose(8, 1e9, 1e9, 4, now), 1);
    s.record(quiet(1), now += quiet(1));
    int last = 0;
    run_steps(s, now, 50, quiet, &last);
    EXPECT_EQ(last, 4);
    // A busy neighbour: any team above one waits at barriers for a descheduled thread.
    auto busy = [](int t) { return t == 1 ? 4e-3 : 40e-3; };
    int ones = run_steps(s, now, 400, busy, &last);
    EXPECT_EQ(last, 1);
    EXPECT_GT(ones, 360);  // a few steps re-try a larger team every kExploreEvery seconds
    // The neighbour leaves: the larger team is found again by the next tries.
    run_steps(s, now, 2000, quiet, &last);
    EXPECT_EQ(last, 4);
}

TEST(TeamSizer, BatchSizesAreMeasuredApart) {
    TeamSizer s;
    // One row measured (team 2 slow), then 64 rows: a fresh bucket starts with the full team.
    double now = 0;
    for (int i = 0; i < 3; i++) {
        const int t = s.choose(1, 1e9, 1e9, 2, now);
        s.record(t == 1 ? 1e-3 : 1e-2, now += 1e-3);
    }
    EXPECT_EQ(s.choose(1, 1e9, 1e9, 2, now), 1);
    s.record(1e-3, now += 1e-3);
    EXPECT_EQ(s.choose(64, 1e9, 1e9, 2, now), 2);
}

ModelConfig wide_config() {
    // Wide enough that a step of a few rows has work for two threads (team_cap >= 2).
    ModelConfig c = testutil::tiny_model_config(61, 128);
    c.hidden_size = 128;
    c.intermediate_size = 256;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    return c;
}

std::vector<GenerationRequest> requests() {
    std::vector<GenerationRequest> reqs;
    for (int r = 0; r < 12; r++) {
        GenerationRequest q;
        for (int j = 0; j <= (r * 7) % 23; j++) q.prompt.push_back((r * 13 + j * 5) % 61);
        q.params.max_tokens = 12 + r;
        q.params.temperature = r % 3 == 0 ? 0.0f : 0.9f;
        q.params.seed = 100 + r;
        q.n = r % 4 == 1 ? 3 : 1;
        reqs.push_back(q);
    }
    return reqs;
}

// Tokens and finish reasons of every sample of every request.
std::vector<std::vector<std::pair<std::vector<int32_t>, std::string>>> outputs(
    const std::vector<std::vector<GeneratedSequence>>& results) {
    std::vector<std::vector<std::pair<std::vector<int32_t>, std::string>>> out;
    for (const auto& r : results) {
        out.emplace_back();
        for (const GeneratedSequence& g : r) out.back().emplace_back(g.tokens, g.finish_reason);
    }
    return out;
}

TEST(EngineTeam, TheTeamNeverChangesWhatIsGenerated) {
    Model model(wide_config());
    model.init_random(5, 0.3f);
    auto run = [&](int threads, bool adaptive, int* most = nullptr) {
        Threads scope(threads);
        EngineOptions o;
        o.adaptive_threads = adaptive;
        Engine e(model, o);
        int seen = 0;
        auto out = e.generate(
            requests(), [&](int64_t, int64_t) { seen = std::max(seen, e.last_step_threads()); });
        if (most) *most = seen;
        EXPECT_EQ(omp_get_max_threads(), threads);  // the caller's default is put back
        return outputs(out);
    };
    const auto one = run(1, false);
    int most = 0;
    EXPECT_EQ(run(3, false), one);
    EXPECT_EQ(run(2, true, &most), one);
    EXPECT_EQ(most, 2);  // the sizer measures the full team first
    EXPECT_EQ(run(3, true), one);
}

TEST(EngineTeam, ATinyModelDecodesOnOneThread) {
    Model model(testutil::tiny_model_config(61, 64));
    model.init_random(5, 0.3f);
    Threads scope(2);
    Engine adaptive(model);
    GenerationRequest r;
    r.prompt = {1, 2, 3};
    r.params.temperature = 0;
    adaptive.generate({r});
    EXPECT_EQ(adaptive.last_step_threads(), 1);
    EngineOptions fixed;
    fixed.adaptive_threads = false;
    Engine caller(model, fixed);
    caller.generate({r});
    EXPECT_EQ(caller.last_step_threads(), 2);
}

TEST(ServeTeam, StatsReportTheStepTeam) {
    testutil::TempDir tmp;
    testutil::write_byte_model(tmp.path() / "tiny", 64);
    ServerOptions o;
    o.model_dir = tmp.path() / "tiny";
    o.port = 0;
    Server server(o);
    std::thread runner([&] { server.run(); });
    ClientOptions co;
    co.base_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1";
    co.api_key_env = "CRUCIBLE_TEST_NO_SUCH_KEY";
    co.max_retries = 0;
    OpenAIClient client(co);
    CompletionRequest req;
    req.prompt = "abc";
    req.max_tokens = 4;
    req.temperature = 0;
    EXPECT_EQ(client.complete(req).choices.size(), 1u);
    EXPECT_EQ(server.stats().step_threads, 1);
    server.stop();
    runner.join();
}

}  // namespace
}  // namespace crucible
