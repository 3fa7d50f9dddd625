// Evolve's pure parts: problem.yaml parsing and its errors, EVOLVE-BLOCK markers, applying
// SEARCH/REPLACE and full-rewrite replies, the selection strategies against their formulas
// (and sampled frequencies, seeded), duplicate hashing and the offline operator.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/rng.h"
#include "evolve/diff.h"
#include "evolve/llm.h"
#include "evolve/operators.h"
#include "evolve/problem.h"
#include "evolve/selection.h"
#include "test_util.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;
using testutil::error_of;
using testutil::TempDir;

fs::path examples() {
    return fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path() / "examples" / "evolve";
}

const std::string kProgram =
    "import math\n"
    "def f(x):\n"
    "    # EVOLVE-BLOCK-START\n"
    "    a = 1.5\n"
    "    b = 2\n"
    "    return a * x + b\n"
    "    # EVOLVE-BLOCK-END\n"
    "print(f(3))\n";

TEST(EvolveProblem, BuiltInProblemsLoad) {
    for (const char* name : {"circle_packing", "bin_packing", "function_minimization"}) {
        const Problem p = load_problem(examples() / name);
        EXPECT_FALSE(p.stages.empty()) << name;
        EXPECT_FALSE(p.initial_code.empty()) << name;
        EXPECT_EQ(p.read_only.at(0), p.dir) << name;
    }
    const Problem bp = load_problem(examples() / "bin_packing");
    ASSERT_EQ(bp.stages.size(), 2u);
    EXPECT_TRUE(bp.stages[0].has_threshold);
    EXPECT_DOUBLE_EQ(bp.stages[0].threshold, -0.10);
    EXPECT_EQ(bp.program_file, "initial_program.cpp");
    EXPECT_TRUE(std::isnan(bp.best_known));  // none given
    EXPECT_EQ(load_problem(examples() / "circle_packing").best_known, 2.6358627564136983);
}

TEST(EvolveProblem, ErrorsNameFileLineAndKey) {
    TempDir dir;
    dir.write("p.py", kProgram);
    dir.write("problem.yaml",
              "initial_program: p.py\nevaluator:\n  command: [python3, x]\n  timeout: 3\n");
    std::string e = error_of([&] { load_problem(dir.path()); });
    EXPECT_NE(e.find("problem.yaml:4"), std::string::npos) << e;
    EXPECT_NE(e.find("evaluator.timeout"), std::string::npos) << e;

    dir.write("problem.yaml",
              "initial_program: p.py\nevaluator:\n  command: [python3, x]\nevolve:\n"
              "  islands: many\n");
    e = error_of([&] { load_problem(dir.path()); });
    EXPECT_NE(e.find("problem.yaml:5"), std::string::npos) << e;
    EXPECT_NE(e.find("evolve.islands"), std::string::npos) << e;

    dir.write("problem.yaml",
              "initial_program: p.py\nevaluator:\n  command: [python3, x]\nevolve:\n"
              "  selection: greedy\n");
    e = error_of([&] { load_problem(dir.path()); });
    EXPECT_NE(e.find("selection must be"), std::string::npos) << e;

    for (const char* bad : {"best_known: fast\n", "best_known: .inf\n"}) {
        dir.write(
            "problem.yaml",
            std::string("initial_program: p.py\nevaluator:\n  command: [python3, x]\n") + bad);
        e = error_of([&] { load_problem(dir.path()); });
        EXPECT_NE(e.find("best_known"), std::string::npos) << e;
    }

    dir.write("q.py", "print(1)\n");
    dir.write("problem.yaml", "initial_program: q.py\nevaluator:\n  command: [python3, x]\n");
    e = error_of([&] { load_problem(dir.path()); });
    EXPECT_NE(e.find("q.py"), std::string::npos) << e;
    EXPECT_NE(e.find("no EVOLVE-BLOCK"), std::string::npos) << e;
}

TEST(EvolveProblem, MarkersAndFixedParts) {
    std::string err;
    const auto blocks = evolve_blocks(kProgram, &err);
    ASSERT_EQ(blocks.size(), 1u) << err;
    EXPECT_EQ(kProgram.substr(blocks[0].first, blocks[0].second - blocks[0].first),
              "    a = 1.5\n    b = 2\n    return a * x + b\n");
    evolve_blocks("# EVOLVE-BLOCK-START\nx\n", &err);
    EXPECT_NE(err.find("without a matching"), std::string::npos);
    err.clear();
    evolve_blocks("# EVOLVE-BLOCK-END\n", &err);
    EXPECT_NE(err.find("without a start"), std::string::npos);

    std::string child = kProgram;
    child.replace(child.find("a = 1.5"), 7, "a = 9.0");
    EXPECT_EQ(check_fixed_parts(kProgram, child), "");
    std::string outside = child;
    outside.replace(outside.find("print(f(3))"), 11, "print(99)");
    EXPECT_NE(check_fixed_parts(kProgram, outside).find("outside"), std::string::npos);
}

// ---- diffs ----------------------------------------------------------------------------------

std::string block(const std::string& search, const std::string& replace) {
    return "<<<<<<< SEARCH\n" + search + "=======\n" + replace + ">>>>>>> REPLACE\n";
}

TEST(EvolveDiff, ExactMatchIsApplied) {
    const ApplyResult r = apply_reply(kProgram, "Here:\n" + block("    b = 2\n", "    b = 7\n"));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.fuzzy_matches, 0);
    EXPECT_NE(r.code.find("    b = 7\n"), std::string::npos);
    EXPECT_EQ(r.code.find("b = 2"), std::string::npos);
}

TEST(EvolveDiff, SeveralBlocksApplyInOrder) {
    const ApplyResult r = apply_reply(
        kProgram, block("    a = 1.5\n", "    a = 2.5\n") + block("    b = 2\n", "    b = 3\n"));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_NE(r.code.find("a = 2.5\n    b = 3\n"), std::string::npos);
}

TEST(EvolveDiff, WhitespaceTolerantMatchReindents) {
    // The model dropped the indentation and added trailing spaces and a blank line.
    const ApplyResult r =
        apply_reply(kProgram, block("a = 1.5   \n\nb = 2\n", "a = 0.5\nif a:\n    b = 4\n"));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.fuzzy_matches, 1);
    EXPECT_NE(r.code.find("    a = 0.5\n    if a:\n        b = 4\n    return"), std::string::npos)
        << r.code;
}

TEST(EvolveDiff, FailuresExplainThemselves) {
    ApplyResult r = apply_reply(kProgram, block("    c = 3\n", "    c = 4\n"));
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("does not match"), std::string::npos);
    // A SEARCH outside the evolve block is not allowed to match.
    r = apply_reply(kProgram, block("print(f(3))\n", "print(f(4))\n"));
    EXPECT_FALSE(r.ok);
    const std::string twice = "# EVOLVE-BLOCK-START\nx = 1\nx = 1\n# EVOLVE-BLOCK-END\n";
    r = apply_reply(twice, block("x = 1\n", "x = 2\n"));
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("matches 2 places"), std::string::npos) << r.error;
    r = apply_reply(kProgram, "I think you should increase a.");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("no SEARCH/REPLACE"), std::string::npos);
    r = apply_reply(kProgram, block("    b = 2\n", "    b = 2\n"));
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("identical"), std::string::npos);
}

TEST(EvolveDiff, FullRewriteFallback) {
    // Fenced block content only: replaces the single evolve block.
    ApplyResult r = apply_reply(kProgram, "```python\n    return 42\n```\n");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_TRUE(r.full_rewrite);
    EXPECT_NE(r.code.find("# EVOLVE-BLOCK-START\n    return 42\n    # EVOLVE-BLOCK-END"),
              std::string::npos);
    // A whole program with markers: accepted when the outside is unchanged...
    std::string whole = kProgram;
    whole.replace(whole.find("b = 2"), 5, "b = 5");
    r = apply_reply(kProgram, "```\n" + whole + "```\n");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.code, whole);
    // ...rejected when it changes the fixed code or keeps only one marker (SE PR #21).
    std::string bad = whole;
    bad.replace(bad.find("import math"), 11, "import os");
    r = apply_reply(kProgram, "```\n" + bad + "```\n");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("outside"), std::string::npos);
    r = apply_reply(kProgram, "```\n# EVOLVE-BLOCK-START\nreturn 1\n```\n");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("markers"), std::string::npos) << r.error;
}

// ---- selection ------------------------------------------------------------------------------

EvolveOptions with(const std::string& strategy) {
    EvolveOptions o;
    o.selection = strategy;
    return o;
}

TEST(EvolveSelection, ProbabilitiesMatchTheFormulas) {
    const std::vector<double> s = {1.0, 2.0, 4.0};
    const std::vector<int64_t> kids = {0, 1, 3};
    auto p = selection_probabilities(with("uniform"), s, kids);
    for (double x : p) EXPECT_DOUBLE_EQ(x, 1.0 / 3);

    // FunSearch: T = 0.1 * (1 - 3/30000); p ∝ exp(s/T).
    EvolveOptions fs_opt = with("funsearch");
    fs_opt.funsearch_t0 = 2.0;
    fs_opt.funsearch_period = 30000;
    p = selection_probabilities(fs_opt, s, kids);
    const double T = 2.0 * (1 - 3.0 / 30000);
    const double z = std::exp(1 / T) + std::exp(2 / T) + std::exp(4 / T);
    EXPECT_NEAR(p[0], std::exp(1 / T) / z, 1e-12);
    EXPECT_NEAR(p[2], std::exp(4 / T) / z, 1e-12);

    // Weighted (ShinkaEvolve): median 2, MAD = median(|1-2|, 0, |4-2|) = 1, λ = 1.
    EvolveOptions w = with("weighted");
    w.weighted_lambda = 1;
    p = selection_probabilities(w, s, kids);
    const auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
    const double w0 = sig(-1) / 1, w1 = sig(0) / 2, w2 = sig(2) / 4;
    EXPECT_NEAR(p[0], w0 / (w0 + w1 + w2), 1e-12);
    EXPECT_NEAR(p[1], w1 / (w0 + w1 + w2), 1e-12);
    EXPECT_NEAR(p[2], w2 / (w0 + w1 + w2), 1e-12);

    // Power law, α = 1: ranks 3, 2, 1 -> weights 1/3, 1/2, 1 over 11/6.
    p = selection_probabilities(with("power_law"), s, kids);
    EXPECT_NEAR(p[0], (1.0 / 3) / (11.0 / 6), 1e-12);
    EXPECT_NEAR(p[1], (1.0 / 2) / (11.0 / 6), 1e-12);
    EXPECT_NEAR(p[2], 1.0 / (11.0 / 6), 1e-12);
}

TEST(EvolveSelection, SampledFrequenciesFollowTheProbabilities) {
    const std::vector<double> s = {0.1, 0.5, 0.9, 0.95, 0.2};
    const std::vector<int64_t> kids = {0, 2, 1, 5, 0};
    for (const char* strategy : {"uniform", "funsearch", "weighted", "power_law"}) {
        EvolveOptions o = with(strategy);
        o.weighted_lambda = 2;
        const auto p = selection_probabilities(o, s, kids);
        Rng rng(7);
        const int n = 40000;
        std::vector<int> hits(s.size(), 0);
        for (int i = 0; i < n; i++) hits[sample_index(p, rng)]++;
        for (size_t k = 0; k < s.size(); k++) {
            const double sd = std::sqrt(n * p[k] * (1 - p[k]));
            EXPECT_NEAR(hits[k], n * p[k], 4 * sd + 1) << strategy << " candidate " << k;
        }
    }
}

TEST(EvolveSelection, HashAndSimilarity) {
    EXPECT_EQ(code_hash("x = 1\n\n  y=2  \n"), code_hash("x  =  1\n  y=2\n"));
    EXPECT_NE(code_hash("x = 1\n"), code_hash("x = 2\n"));
    EXPECT_DOUBLE_EQ(code_similarity("a b c d e", "a  b c d e"), 1.0);
    EXPECT_LT(code_similarity("for i in range(10): s += i", "while True: break"), 0.2);
}

// ---- offline operator -----------------------------------------------------------------------

TEST(EvolveOperators, LiteralsAreFoundOnlyInsideBlocks) {
    const std::string code =
        "n = 5\n# EVOLVE-BLOCK-START\nx1 = 0.25 + 3 * v2_3 - 1e-3\ny = .5\nz = 0x1F\n"
        "# EVOLVE-BLOCK-END\nm = 7\n";
    const auto lits = find_literals(code);
    ASSERT_EQ(lits.size(), 4u);
    EXPECT_DOUBLE_EQ(lits[0].value, 0.25);
    EXPECT_TRUE(lits[0].is_float);
    EXPECT_DOUBLE_EQ(lits[1].value, 3);
    EXPECT_FALSE(lits[1].is_float);
    EXPECT_DOUBLE_EQ(lits[2].value, 1e-3);
    EXPECT_DOUBLE_EQ(lits[3].value, 0.5);
}

TEST(EvolveOperators, MutationChangesOnlyLiteralsInsideTheBlock) {
    Rng rng(3);
    for (int trial = 0; trial < 20; trial++) {
        const OperatorResult r = offline_mutate(kProgram, {}, 0.2, 3, 0.0, rng);
        ASSERT_TRUE(r.ok) << r.description;
        EXPECT_EQ(check_fixed_parts(kProgram, r.code), "");
        const auto before = find_literals(kProgram), after = find_literals(r.code);
        ASSERT_EQ(after.size(), before.size());
        for (size_t i = 0; i < after.size(); i++) {
            EXPECT_EQ(after[i].is_float, before[i].is_float);
            EXPECT_GE(after[i].value, 0);
        }
    }
}

TEST(EvolveOperators, CrossoverTakesLiteralsFromBothParents) {
    std::string other = kProgram;
    other.replace(other.find("1.5"), 3, "8.5");
    other.replace(other.find("b = 2"), 5, "b = 9");
    Rng rng(11);
    std::map<std::string, int> seen;
    for (int trial = 0; trial < 40; trial++) {
        const OperatorResult r = offline_mutate(kProgram, {other}, 1e-9, 1, 1.0, rng);
        ASSERT_TRUE(r.crossover);
        const auto l = find_literals(r.code);
        seen[l[0].value > 5 ? "a_other" : "a_mine"]++;
        seen[l[1].value > 5 ? "b_other" : "b_mine"]++;
    }
    EXPECT_GT(seen["a_other"], 5);
    EXPECT_GT(seen["a_mine"], 5);
    EXPECT_GT(seen["b_other"], 5);
    EXPECT_GT(seen["b_mine"], 5);
}

// ---- LLM ensemble ---------------------------------------------------------------------------

TEST(EvolveLlm, PickerFollowsWeightsOrUcb) {
    ModelPicker weighted({0.8, 0.2}, false, 1.4);
    Rng rng(5);
    int first = 0;
    for (int i = 0; i < 10000; i++) first += weighted.pick(rng) == 0;
    EXPECT_NEAR(first, 8000, 4 * std::sqrt(10000 * 0.8 * 0.2));

    // UCB1: each arm once, then mean + c sqrt(ln t / n). Arm 1 always wins, arm 0 never.
    ModelPicker ucb({1, 1}, true, 0.5);
    EXPECT_EQ(ucb.pick(rng), 0u);
    ucb.reward(0, 0);
    EXPECT_EQ(ucb.pick(rng), 1u);
    ucb.reward(1, 1);
    // t = 2: arm 0 scores 0 + 0.5 sqrt(ln 2) = 0.416, arm 1 scores 1.416.
    for (int i = 0; i < 20; i++) {
        const size_t a = ucb.pick(rng);
        EXPECT_EQ(a, 1u);
        ucb.reward(a, 1);
    }
    EXPECT_EQ(ucb.pulls(0), 1);
}

TEST(EvolveLlm, PromptHoldsParentMetricsArtifactsInspirationsAndFailure) {
    Problem problem;
    problem.description = "maximise x";
    Program parent;
    parent.code = kProgram;
    parent.score = 2.5;
    parent.metrics = {{"combined_score", 2.5}, {"speed", 3}};
    parent.artifacts = "warning: slow";
    Program other;
    other.code = kProgram;
    other.score = 1.25;
    Rng rng(1);
    const auto m =
        build_prompt(problem, parent, {other}, "SEARCH block 1 does not match", false, rng);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0].role, "system");
    const std::string& u = m[1].content;
    for (const char* want : {"maximise x", "combined_score=2.5 speed=3", "warning: slow",
                             "combined_score=1.25", "previous attempt failed",
                             "SEARCH block 1 does not match", "<<<<<<< SEARCH", "print(f(3))"}) {
        EXPECT_NE(u.find(want), std::string::npos) << want;
    }
    problem.options.prompt_template = "P={parent_metrics} D={description}";
    const auto m2 = build_prompt(problem, parent, {}, "", true, rng);
    EXPECT_EQ(m2[1].content, "P=combined_score=2.5 speed=3 D=maximise x");
}

}  // namespace
}  // namespace crucible::evolve
