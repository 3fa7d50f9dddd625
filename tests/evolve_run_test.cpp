// The evolve database and loop end to end, with a scripted LLM double (and once over real
// HTTP): MAP-Elites replacement, ring migration, children on their parent's island, failures
// fed back, budgets, evaluator timeouts and crashes, resume after a crash, the built-in
// problems' reference values and the offline operator's progress on circle packing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/file_io.h"
#include "evolve/controller.h"
#include "evolve/evaluator.h"
#include "evolve/program_db.h"
#include "evolve/report.h"
#include "http_test_server.h"
#include "test_util.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

fs::path examples() {
    return fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path() / "examples" / "evolve";
}

// ---- database -------------------------------------------------------------------------------

Program evaluated_child(ProgramDb& db, int island, int64_t iteration, double score,
                        const std::string& cell) {
    Program p;
    p.iteration = iteration;
    p.island = island;
    p.parent_id = 1;
    p.status = "pending";
    p.code = "x = " + std::to_string(iteration) + "\n";
    db.insert(p);
    p.status = "evaluated";
    p.score = score;
    p.cell = cell;
    db.finish(p);
    return p;
}

ProgramDb seeded_db(const std::string& path, int islands, int interval) {
    EvolveOptions o;
    o.islands = islands;
    o.migration_interval = interval;
    o.migration_rate = 0;  // max(1, floor(0 * size)) = 1 program per island
    ProgramDb db(path, o);
    Program init;
    init.status = "evaluated";
    init.code = "x = 0\n";
    init.score = 1;
    init.cell = "init";
    db.insert(init);
    db.seed_islands(init);
    return db;
}

TEST(EvolveDb, MapElitesReplacementRule) {
    TempDir dir;
    ProgramDb db = seeded_db((dir.path() / "db.sqlite").string(), 1, 0);
    const Program a = evaluated_child(db, 0, 1, 5.0, "c");
    EXPECT_EQ(db.cells(0),
              (std::vector<std::pair<std::string, int64_t>>{{"c", a.id}, {"init", 1}}));
    evaluated_child(db, 0, 2, 5.0, "c");  // a tie keeps the incumbent
    evaluated_child(db, 0, 3, 4.0, "c");  // worse: stays out
    EXPECT_EQ(db.members(0), (std::vector<int64_t>{a.id, 1}));
    const Program b = evaluated_child(db, 0, 4, 6.0, "c");  // strictly better: replaces
    EXPECT_EQ(db.members(0), (std::vector<int64_t>{b.id, 1}));
    EXPECT_EQ(db.get(a.id).status, "evaluated");            // the displaced program's row stays
    const Program c = evaluated_child(db, 0, 5, 0.5, "d");  // empty cell: taken even if poor
    EXPECT_EQ(db.members(0), (std::vector<int64_t>{b.id, 1, c.id}));
    EXPECT_EQ(db.get(1).children, 5);
    EXPECT_EQ(db.island_generation(0), 5);
}

TEST(EvolveDb, MigrationReachesRingNeighboursOnly) {
    TempDir dir;
    ProgramDb db = seeded_db((dir.path() / "db.sqlite").string(), 4, 4);
    std::vector<int64_t> child(4);
    for (int i = 0; i < 4; i++) {
        child[i] =
            evaluated_child(db, i, i + 1, 5.0 + i, std::string(1, static_cast<char>('a' + i))).id;
    }
    // After the 4th evaluated child each island's best went to (i+1)%4 and (i-1)%4.
    std::set<std::pair<int, int>> pairs;
    for (const Migration& m : db.migrations()) {
        EXPECT_EQ(m.after_children, 4);
        EXPECT_EQ(m.program_id, child[m.from_island]);
        EXPECT_TRUE(m.placed);
        pairs.insert({m.from_island, m.to_island});
    }
    EXPECT_EQ(pairs, (std::set<std::pair<int, int>>{
                         {0, 1}, {0, 3}, {1, 2}, {1, 0}, {2, 3}, {2, 1}, {3, 0}, {3, 2}}));
    for (int i = 0; i < 4; i++) {
        const auto m = db.members(i);
        const std::set<int64_t> got(m.begin(), m.end());
        EXPECT_EQ(got, (std::set<int64_t>{1, child[i], child[(i + 1) % 4], child[(i + 3) % 4]}))
            << "island " << i;
    }
}

TEST(EvolveDb, DuplicatesAreRejectedBeforeEvaluation) {
    TempDir dir;
    ProgramDb db = seeded_db((dir.path() / "db.sqlite").string(), 1, 0);
    EXPECT_NE(db.duplicate_reason("x  =  0\n\n", 0).find("duplicate of program 1"),
              std::string::npos);
    EXPECT_EQ(db.duplicate_reason("x = 1\n", 0), "");
}

// ---- a tiny problem and a scripted LLM ------------------------------------------------------

// Problem: the program prints x; combined_score = x.
void write_problem(const TempDir& dir, int islands, const std::string& extra_yaml = "") {
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1.0\n# EVOLVE-BLOCK-END\nprint(x)\n");
    dir.write("eval.py",
              "import json, subprocess, sys\n"
              "r = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True)\n"
              "if r.returncode:\n"
              "    print(f'program exited with status {r.returncode}: {r.stderr[-300:]}', "
              "file=sys.stderr)\n"
              "    sys.exit(1)\n"
              "x = float(r.stdout.split()[-1])\n"
              "print(json.dumps({'combined_score': x, 'x': x}))\n");
    dir.write("problem.yaml",
              "initial_program: program.py\n"
              "evaluator:\n"
              "  command: [python3, '{problem}/eval.py', '{program}']\n"
              "  timeout_s: 2\n  cpu_s: 2\n  mem_mb: 512\n"
              "evolve:\n  islands: " +
                  std::to_string(islands) +
                  "\n  migration_interval: 4\n  selection: weighted\n"
                  "  features:\n    - {name: score, bins: 40, min: 0, max: 40}\n" +
                  extra_yaml);
}

// Replies with a SEARCH/REPLACE raising the parent's x by 1 + (seed mod 1000)/1000, or with
// whatever `script` returns for this call when it returns something.
class ScriptedLlm : public LlmBackend {
  public:
    std::function<std::string(int call)> script;
    int64_t prompt_tokens = 0, completion_tokens = 0;
    double cost = 0;
    std::mutex mutex;
    std::vector<std::string> prompts;

    size_t arms() const override { return 1; }
    std::string arm_name(size_t) const override { return "scripted"; }
    LlmReply generate(size_t, const std::vector<ChatMessage>& messages, uint64_t seed) override {
        int call;
        {
            std::lock_guard<std::mutex> lock(mutex);
            call = static_cast<int>(prompts.size());
            prompts.push_back(messages.at(1).content);
        }
        LlmReply r;
        r.model = "scripted";
        r.prompt_tokens = prompt_tokens;
        r.completion_tokens = completion_tokens;
        r.cost_usd = cost;
        if (script) r.text = script(call);
        if (r.text.empty()) {
            const std::string& prompt = messages[1].content;
            const size_t at = prompt.find("# Current program (parent)");
            // The parent's "x = VALUE" line, after the parent heading.
            const size_t line = prompt.find("\nx = ", at);
            EXPECT_NE(line, std::string::npos);
            const std::string value =
                prompt.substr(line + 5, prompt.find('\n', line + 5) - (line + 5));
            const double x = std::stod(value);
            r.text = "<<<<<<< SEARCH\nx = " + value + "\n=======\nx = " +
                     std::to_string(x + 1 + static_cast<double>(seed % 1000) / 1000) +
                     "\n>>>>>>> REPLACE\n";
        }
        return r;
    }
};

std::string replace_x(const std::string& with) {
    return "```\n" + with + "\n```\n";  // full rewrite of the block
}

TEST(EvolveRun, ScriptedLlmKeepsChildrenOnTheirParentsIsland) {
    TempDir dir;
    write_problem(dir, 3);
    const Problem problem = load_problem(dir.path());
    Problem p = problem;
    p.options.iterations = 12;
    ScriptedLlm llm;
    const RunSummary s = run_evolution(p, dir.path() / "run", &llm, false);
    EXPECT_EQ(s.candidates, 12);
    EXPECT_EQ(s.evaluated, 12);
    EXPECT_EQ(s.initial_score, 1.0);
    EXPECT_GT(s.best_score, 3.0);
    EXPECT_EQ(s.stop_reason, "iterations");
    ProgramDb db((dir.path() / "run" / "programs.sqlite").string(), p.options);
    const auto migrations = db.migrations();
    EXPECT_FALSE(migrations.empty());
    for (const Migration& m : migrations) {
        EXPECT_TRUE(m.to_island == (m.from_island + 1) % 3 ||
                    m.to_island == (m.from_island + 2) % 3);
    }
    for (const Program& c : db.all("iteration > 0")) {
        EXPECT_EQ(c.island, (c.iteration - 1) % 3);  // round robin: every island advances
        const Program parent = db.get(c.parent_id);
        bool reached = parent.iteration == 0 || parent.island == c.island;
        for (const Migration& m : migrations) {
            reached = reached || (m.program_id == parent.id && m.to_island == c.island && m.placed);
        }
        EXPECT_TRUE(reached) << "child " << c.id << " on island " << c.island << ", parent "
                             << parent.id << " never on it";
        EXPECT_EQ(c.generation, parent.generation + 1);
        EXPECT_NE(c.prompt.find("combined_score="), std::string::npos);
        EXPECT_EQ(c.model, "scripted");
    }
    for (int i = 0; i < 3; i++) EXPECT_EQ(db.island_generation(i), 4);
    const json saved = json::parse(read_file(dir.path() / "run" / "options.json"));
    EXPECT_EQ(saved["islands"], 3);
    EXPECT_EQ(saved["iterations"], 12);
    const json info = json::parse(read_file(dir.path() / "run" / "best" / "info.json"));
    EXPECT_EQ(info["score"].get<double>(), s.best_score);
    EXPECT_EQ(read_file(dir.path() / "run" / "best" / "program.py"), db.best().code);
    // Running again into the same folder without --resume is refused.
    EXPECT_NE(testutil::error_of([&] {
                  run_evolution(p, dir.path() / "run", &llm, false);
              }).find("--resume"),
              std::string::npos);
}

TEST(EvolveRun, ConcurrentWorkersLoseNothing) {
    TempDir dir;
    write_problem(dir, 2);
    Problem p = load_problem(dir.path());
    p.options.iterations = 8;
    p.options.workers = 4;
    ScriptedLlm llm;
    const RunSummary s = run_evolution(p, dir.path() / "run", &llm, false);
    EXPECT_EQ(s.candidates, 8);
    EXPECT_EQ(s.evaluated + s.failed + s.rejected, 8);
    ProgramDb db((dir.path() / "run" / "programs.sqlite").string(), p.options);
    EXPECT_EQ(db.count("status = 'pending'"), 0);
    EXPECT_EQ(db.max_iteration(), 8);
}

TEST(EvolveRun, FailuresAreFedBackToTheNextPrompt) {
    TempDir dir;
    write_problem(dir, 2);
    Problem p = load_problem(dir.path());
    p.options.iterations = 3;
    ScriptedLlm llm;
    llm.script = [](int call) {
        return call == 0 ? std::string("<<<<<<< SEARCH\ny = 2\n=======\ny = 3\n>>>>>>> REPLACE\n")
                         : std::string();
    };
    const RunSummary s = run_evolution(p, dir.path() / "run", &llm, false);
    EXPECT_EQ(s.failed, 1);
    ASSERT_EQ(llm.prompts.size(), 3u);
    // Iteration 1 (island 0) failed; iteration 3 is island 0's next prompt.
    EXPECT_EQ(llm.prompts[1].find("previous attempt failed"), std::string::npos);
    EXPECT_NE(llm.prompts[2].find("previous attempt failed"), std::string::npos);
    EXPECT_NE(llm.prompts[2].find("does not match"), std::string::npos);
}

TEST(EvolveRun, TokenAndCostBudgetsStopCleanly) {
    TempDir dir;
    write_problem(dir, 1);
    Problem p = load_problem(dir.path());
    p.options.iterations = 100;
    p.options.max_total_tokens = 350;
    ScriptedLlm llm;
    llm.prompt_tokens = 60;
    llm.completion_tokens = 40;
    RunSummary s = run_evolution(p, dir.path() / "run", &llm, false);
    EXPECT_EQ(s.stop_reason, "token budget");
    EXPECT_EQ(s.candidates, 4);  // 300 < 350 allows a 4th call; 400 >= 350 stops
    EXPECT_EQ(s.tokens, 400);

    p.options.max_total_tokens = 0;
    p.options.max_cost_usd = 0.025;
    ScriptedLlm paid;
    paid.cost = 0.01;
    s = run_evolution(p, dir.path() / "run2", &paid, false);
    EXPECT_EQ(s.stop_reason, "cost budget");
    EXPECT_EQ(s.candidates, 3);
}

TEST(EvolveRun, TimeoutsCrashesAndNanFailWithoutScores) {
    TempDir dir;
    write_problem(dir, 1);
    Problem p = load_problem(dir.path());
    p.options.iterations = 4;
    ScriptedLlm llm;
    llm.script = [](int call) -> std::string {
        switch (call) {
            case 0:
                return replace_x("import time\ntime.sleep(60)\nx = 1");
            case 1:
                return replace_x("raise SystemExit(3)");
            case 2:
                return replace_x("x = float('nan')");
            default:
                return replace_x("x = 5.0");
        }
    };
    std::vector<std::string> lines;
    ControllerHooks hooks;
    hooks.log = [&](const std::string& line) { lines.push_back(line); };
    const RunSummary s = run_evolution(p, dir.path() / "run", &llm, false, hooks);
    EXPECT_EQ(s.candidates, 4);
    EXPECT_EQ(s.failed, 3);
    // The progress line of the failed evaluation says why, not only "exited with status 1".
    bool said = false;
    for (const std::string& l : lines)
        said = said || (l.find("exited with status 1: ") != std::string::npos &&
                        l.find("status 3") != std::string::npos);
    EXPECT_TRUE(said) << ::testing::PrintToString(lines);
    EXPECT_EQ(s.best_score, 5.0);
    ProgramDb db((dir.path() / "run" / "programs.sqlite").string(), p.options);
    const auto rows = db.all("iteration > 0");
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_NE(rows[0].error.find("wall-clock limit"), std::string::npos) << rows[0].error;
    EXPECT_NE(rows[1].error.find("exited with status 1"), std::string::npos) << rows[1].error;
    EXPECT_NE(rows[1].artifacts.find("status 3"), std::string::npos) << rows[1].artifacts;
    EXPECT_NE(rows[2].error.find("not JSON"), std::string::npos) << rows[2].error;
    for (int i = 0; i < 3; i++) EXPECT_TRUE(std::isnan(rows[i].score));
    EXPECT_EQ(rows[3].status, "evaluated");
}

struct Row {
    int64_t iteration;
    std::string status, code;
    double score;
    bool operator==(const Row&) const = default;
};

std::vector<Row> rows_of(const fs::path& run, const EvolveOptions& o) {
    ProgramDb db((run / "programs.sqlite").string(), o);
    std::vector<Row> out;
    for (const Program& p : db.all()) {
        out.push_back({p.iteration, p.status, p.code, std::isfinite(p.score) ? p.score : -1});
    }
    return out;
}

TEST(EvolveRun, ResumeAfterACrashEvaluatesPendingOnceAndMatchesTheUninterruptedRun) {
    TempDir dir;
    write_problem(dir, 2);
    Problem p = load_problem(dir.path());
    p.options.iterations = 7;
    {
        ScriptedLlm llm;
        run_evolution(p, dir.path() / "straight", &llm, false);
    }
    ScriptedLlm first;
    ControllerHooks crash;
    crash.on_event = [](const std::string& point, int64_t it) {
        if (point == "pending" && it == 4) throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(run_evolution(p, dir.path() / "resumed", &first, false, crash),
                 std::runtime_error);
    {
        ProgramDb db((dir.path() / "resumed" / "programs.sqlite").string(), p.options);
        EXPECT_EQ(db.count("status = 'pending'"), 1);
        EXPECT_EQ(db.count("status = 'evaluated'"), 4);  // the initial program + 3
    }
    ScriptedLlm second;
    std::vector<int64_t> evaluated_now;
    ControllerHooks watch;
    watch.on_event = [&](const std::string& point, int64_t it) {
        if (point == "evaluated") evaluated_now.push_back(it);
    };
    const RunSummary s = run_evolution(p, dir.path() / "resumed", &second, true, watch);
    EXPECT_EQ(s.candidates, 7);
    EXPECT_EQ(evaluated_now, (std::vector<int64_t>{4, 5, 6, 7}));  // 1-3 not evaluated again
    EXPECT_EQ(second.prompts.size(), 3u);  // the pending child needed no new LLM call
    EXPECT_EQ(rows_of(dir.path() / "resumed", p.options),
              rows_of(dir.path() / "straight", p.options));

    // A resume must keep the search's structure.
    Problem other = p;
    other.options.islands = 3;
    EXPECT_NE(testutil::error_of([&] {
                  run_evolution(other, dir.path() / "resumed", &second, true);
              }).find("other search options"),
              std::string::npos);
}

// ---- the built-in problems ------------------------------------------------------------------

TEST(EvolveReference, CirclePackingScoresAlphaEvolvesPackingExactly) {
    const Problem problem = load_problem(examples() / "circle_packing");
    const json ae = json::parse(read_file(examples() / "circle_packing" / "alphaevolve_n26.json"));
    const std::string circles = ae["circles_xyr"].dump();
    const auto program = [](const std::string& c) {
        return "import json\nprint(json.dumps({'circles': " + c + "}))\n";
    };
    EvalOutcome out = evaluate_program(problem, program(circles));
    ASSERT_TRUE(out.ok) << out.error << out.artifacts;
    EXPECT_EQ(out.score, 2.6358627564136983);

    json bad = ae["circles_xyr"];
    bad[0][0] = "nan";
    out = evaluate_program(
        problem,
        program(bad.dump()).replace(program(bad.dump()).find("\"nan\""), 5, "float('nan')"));
    EXPECT_FALSE(out.ok);
    EXPECT_NE(out.artifacts.find("not a finite number"), std::string::npos) << out.artifacts;
    bad = ae["circles_xyr"];
    bad[1] = bad[0];  // two equal circles overlap
    out = evaluate_program(problem, program(bad.dump()));
    EXPECT_FALSE(out.ok);
    EXPECT_NE(out.artifacts.find("overlap"), std::string::npos) << out.artifacts;
    bad = ae["circles_xyr"];
    bad[2][2] = bad[2][2].get<double>() + 1e-7;  // grown a hair: outside or overlapping
    out = evaluate_program(problem, program(bad.dump()));
    EXPECT_FALSE(out.ok);
    bad = ae["circles_xyr"];
    bad.erase(bad.size() - 1);
    out = evaluate_program(problem, program(bad.dump()));
    EXPECT_FALSE(out.ok);
    EXPECT_NE(out.artifacts.find("expected 26 circles"), std::string::npos) << out.artifacts;
}

// A candidate leaves a process behind (double fork, new session, its output closed) that keeps
// writing a file into the shared scratch directory. When the evaluator runs the candidate
// itself (one sandbox) that process is still alive while the evaluator works; with
// `evaluator.run` the candidate's sandbox, and everything it started, is gone before the
// evaluator starts.
TEST(EvolveEvaluator, RunSandboxEndsTheCandidateBeforeTheEvaluatorStarts) {
    TempDir dir;
    const std::string lingering =
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        null = os.open('/dev/null', os.O_RDWR)\n"
        "        for fd in (0, 1, 2):\n"
        "            os.dup2(null, fd)  # so that whoever reads the program's output sees EOF\n"
        "        time.sleep(0.3)\n"
        "        for _ in range(100):\n"
        "            open('lingering.txt', 'a').write('still here\\n')\n"
        "            time.sleep(0.05)\n"
        "        os._exit(0)\n"
        "    os._exit(0)\n"
        "print(1.5)\n";
    // Reads the program's output (from {run_stdout}, or by running it), waits a second, and
    // reports whether anything wrote lingering.txt in its working directory (the scratch).
    dir.write("eval.py",
              "import json, os, subprocess, sys, time\n"
              "if sys.argv[1] == '--stdout':\n"
              "    out = open(sys.argv[2]).read()\n"
              "else:\n"
              "    out = subprocess.run([sys.executable, sys.argv[1]], capture_output=True,\n"
              "                         text=True).stdout\n"
              "time.sleep(1)\n"
              "print(json.dumps({'combined_score': float(out.split()[-1]),\n"
              "                  'lingering': int(os.path.exists('lingering.txt'))}))\n");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    const std::string limits = "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n";
    dir.write("problem.yaml",
              "initial_program: program.py\nevaluator:\n"
              "  command: [python3, '{problem}/eval.py', '{program}']\n" +
                  limits);
    const EvalOutcome shared = evaluate_program(load_problem(dir.path()), lingering);
    ASSERT_TRUE(shared.ok) << shared.error << shared.artifacts;
    EXPECT_EQ(shared.score, 1.5);
    EXPECT_EQ(shared.metrics["lingering"], 1);  // alive beside the evaluator

    dir.write("problem.yaml",
              "initial_program: program.py\nevaluator:\n"
              "  run: [python3, '{program}']\n"
              "  command: [python3, '{problem}/eval.py', --stdout, '{run_stdout}']\n" +
                  limits);
    const EvalOutcome separate = evaluate_program(load_problem(dir.path()), lingering);
    ASSERT_TRUE(separate.ok) << separate.error << separate.artifacts;
    EXPECT_EQ(separate.score, 1.5);
    EXPECT_EQ(separate.metrics["lingering"], 0);  // killed with the run's sandbox

    // The run's failures are the candidate's, named as the run's.
    const EvalOutcome crashed = evaluate_program(load_problem(dir.path()), "raise SystemExit(3)\n");
    EXPECT_FALSE(crashed.ok);
    EXPECT_EQ(crashed.error, "run: the program exited with status 3");
    EXPECT_EQ(crashed.stages_run, 0);

    // {run_stdout} without a run is a problem.yaml error.
    dir.write("problem.yaml",
              "initial_program: program.py\nevaluator:\n"
              "  command: [python3, '{problem}/eval.py', --stdout, '{run_stdout}']\n");
    EXPECT_THROW(load_problem(dir.path()), Error);
}

TEST(EvolveReference, BinPackingBestFitReproducesFunSearch) {
    const Problem problem = load_problem(examples() / "bin_packing");
    EvalOutcome out = evaluate_program(problem, problem.initial_code);
    ASSERT_TRUE(out.ok) << out.error << out.artifacts;
    EXPECT_EQ(out.metrics["or3_mean_bins"].get<double>(), 212.0);
    EXPECT_EQ(out.metrics["or3_l1_bound"].get<double>(), 201.2);
    EXPECT_EQ(out.metrics["weibull_5k_mean_bins"].get<double>(), 2067.0);
    EXPECT_EQ(out.metrics["weibull_5k_l1_bound"].get<double>(), 1987.8);
    EXPECT_NEAR(out.metrics["weibull_5k_excess_percent"].get<double>(), 3.98, 0.005);
    EXPECT_EQ(out.stages_run, 2);

    // A heuristic that always opens a new bin fails stage 1's threshold: stage 2 never runs.
    std::string always_new = problem.initial_code;
    always_new.replace(always_new.find("return -(remaining - item);"), 27, "return remaining;");
    out = evaluate_program(problem, always_new);
    ASSERT_TRUE(out.ok) << out.error;
    EXPECT_EQ(out.metrics["cascade_stopped_at_stage"], 1);
    EXPECT_EQ(out.metrics["or3_mean_bins"].get<double>(), 500.0);
    EXPECT_FALSE(out.metrics.contains("weibull_5k_mean_bins"));
}

TEST(EvolveReference, OfflineOperatorImprovesCirclePacking) {
    TempDir dir;
    Problem p = load_problem(examples() / "circle_packing");
    p.options.mode = "offline";
    p.options.iterations = 24;
    p.options.seed = 1;
    const RunSummary s = run_evolution(p, dir.path() / "run", nullptr, false);
    EXPECT_NEAR(s.initial_score, 0.9797642169952269, 1e-12);
    EXPECT_GT(s.best_score, s.initial_score + 0.05);
    EXPECT_GT(s.evaluated, 12);
    const std::string html = render_report(dir.path() / "run");
    EXPECT_NE(html.find("Lineage tree"), std::string::npos);
    EXPECT_NE(html.find("Island 1"), std::string::npos);
    // Axes named, a legend, and the best programs' changes from their parents.
    for (const char* part :
         {">iteration</text>", ">combined_score</text>", "class='legend'", "best so far",
          "<summary>diff</summary>", ">iteration (0 to 24)</text>", "class='best-known'",
          "best known 2.635862756", "best known (problem.yaml): 2.635862756"})
        EXPECT_NE(html.find(part), std::string::npos) << part;
    const std::string csv = export_csv(dir.path() / "run");
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 25);
    const json j = json::parse(export_json(dir.path() / "run"));
    EXPECT_EQ(j["programs"].size(), 25u);
}

// ---- over HTTP ------------------------------------------------------------------------------

TEST(EvolveHttp, OpenAIEndpointDrivesTheLoop) {
    std::mutex mutex;
    std::vector<json> bodies;
    testutil::TestServer server;
    server.http().Post(
        "/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
            const json body = json::parse(req.body);
            std::lock_guard<std::mutex> lock(mutex);
            bodies.push_back(body);
            const std::string text =
                "Rewrite:\n```python\nx = " + std::to_string(2 + bodies.size()) + ".0\n```\n";
            const json reply = {{"id", "c"},
                                {"model", body["model"]},
                                {"choices",
                                 {{{"index", 0},
                                   {"message", {{"role", "assistant"}, {"content", text}}},
                                   {"finish_reason", "stop"}}}},
                                {"usage", {{"prompt_tokens", 100}, {"completion_tokens", 20}}}};
            res.set_content(reply.dump(), "application/json");
        });
    TempDir dir;
    write_problem(dir, 1);
    Problem p = load_problem(dir.path());
    p.options.iterations = 2;
    p.options.archive_ratio = 0;
    p.options.llms.push_back({server.base_url(), "m1", 1, 1.0, 2.0});
    OpenAIEnsemble llm(p.options);
    const RunSummary s = run_evolution(p, dir.path() / "run", &llm, false);
    EXPECT_EQ(s.evaluated, 2);
    EXPECT_EQ(s.tokens, 240);
    EXPECT_NEAR(s.cost_usd, 2 * (100 * 1.0 + 20 * 2.0) / 1e6, 1e-15);
    ASSERT_EQ(bodies.size(), 2u);
    EXPECT_EQ(bodies[0]["model"], "m1");
    EXPECT_EQ(bodies[0]["messages"][0]["role"], "system");
    EXPECT_NE(bodies[0]["messages"][1]["content"].get<std::string>().find("x = 1.0"),
              std::string::npos);
}

// ---- the command line, killed and resumed ---------------------------------------------------

TEST(EvolveCli, KilledRunResumesWithoutLosingOrRepeatingPrograms) {
    TempDir dir;
    write_problem(dir, 2);
    const std::string run = (dir.path() / "run").string();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl(CRUCIBLE_BINARY, CRUCIBLE_BINARY, "evolve", "run", "--problem", dir.path().c_str(),
              "--out", run.c_str(), "--offline", "--iterations", "200", "--quiet",
              static_cast<char*>(nullptr));
        _exit(127);
    }
    // Kill it once a few programs are in (whenever that is; every outcome must resume).
    for (int i = 0; i < 100; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (fs::exists(run + "/programs.sqlite")) {
            try {
                EvolveOptions o;
                o.islands = 0;
                ProgramDb db(run + "/programs.sqlite", o);
                if (db.count("1") >= 4) break;
            } catch (const std::exception&) {
            }
        }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    // The run folder is inside the problem folder (which every sandbox sees), so its
    // evaluations work in the temp directory; the killed one's folders are removed at the next
    // start, as the killed process is gone.
    const std::string leftovers = "crucible-evolve-" + std::to_string(pid) + "-";
    const auto left_behind = [&] {
        int n = 0;
        for (const auto& e : fs::directory_iterator(fs::temp_directory_path())) {
            n += e.path().filename().string().rfind(leftovers, 0) == 0;
        }
        return n;
    };
    const std::string cmd = std::string(CRUCIBLE_BINARY) + " evolve run --problem " +
                            dir.path().string() + " --out " + run +
                            " --offline --iterations 10 --resume --quiet > " + run + ".json";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    EXPECT_EQ(left_behind(), 0);
    EvolveOptions o;
    o.islands = 0;
    ProgramDb db(run + "/programs.sqlite", o);
    EXPECT_EQ(db.count("status = 'pending'"), 0);
    EXPECT_GE(db.count("iteration > 0"), 10);
    std::set<int64_t> its;
    for (const Program& p : db.all()) EXPECT_TRUE(its.insert(p.iteration).second);
    const std::string html = (dir.path() / "r.html").string();
    ASSERT_EQ(std::system((std::string(CRUCIBLE_BINARY) + " evolve report " + run + " --out " +
                           html + " > /dev/null")
                              .c_str()),
              0);
    EXPECT_NE(read_file(html).find("<svg"), std::string::npos);
}

}  // namespace
}  // namespace crucible::evolve
