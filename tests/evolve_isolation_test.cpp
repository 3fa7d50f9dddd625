// A hostile candidate against the evolve evaluator: everything it can write (its scratch
// directory, its HOME, a login shell's profile, Python's user site, __pycache__, the working
// directory) must be invisible to the stages that score it. Each test is one attack that
// fooled the evaluator before the stages got scratch directories of their own, a HOME outside
// any scratch and isolated Python interpreters (issue 22, item 1). Also: the evaluator's
// folders live under the run folder, and what a killed run left there is removed at the next
// start (item 5).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "evolve/controller.h"
#include "evolve/evaluator.h"
#include "evolve/program_db.h"
#include "test_util.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;
using testutil::TempDir;

fs::path examples() {
    return fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path() / "examples" / "evolve";
}

// Python that, wherever it is imported or run, prints a perfect score and exits at once.
const char* const kFakeScore =
    "import os\\nos.write(1, b\\'{\"combined_score\": 1000000.0}\\\\n\\')\\nos._exit(0)\\n";

// A circle-packing candidate that prints zero circles after planting `file` (a Python
// expression for the path) holding `text` (a Python string literal's contents).
std::string planting_candidate(const std::string& file, const std::string& text) {
    return "import json, os, site\n"
           "path = " +
           file +
           "\n"
           "os.makedirs(os.path.dirname(path), exist_ok=True)\n"
           "with open(path, 'w') as f:\n"
           "    f.write('" +
           text +
           "')\n"
           "print(json.dumps({'circles': []}))\n";
}

// The built-in circle_packing problem must refuse zero circles, whatever was planted.
void expect_zero_circles_refused(const EvalOutcome& out) {
    EXPECT_FALSE(out.ok) << "stored with score " << out.score;
    EXPECT_NE(out.score, 1e6);
    EXPECT_NE(out.artifacts.find("expected 26 circles, got 0"), std::string::npos)
        << out.error << "\n"
        << out.artifacts;
}

// The exact attack of issue 22: HOME was the scratch directory, so the evaluator's python3
// imported the candidate's usercustomize.py from ~/.local.
TEST(EvolveIsolation, UsercustomizeInHomeDoesNotFoolCirclePacking) {
    const Problem problem = load_problem(examples() / "circle_packing");
    expect_zero_circles_refused(evaluate_program(
        problem, planting_candidate("os.path.join(site.getusersitepackages(), 'usercustomize.py')",
                                    kFakeScore)));
}

// A .pth file's `import` lines run at start-up.
TEST(EvolveIsolation, PthFileInUserSiteDoesNotFoolCirclePacking) {
    const Problem problem = load_problem(examples() / "circle_packing");
    expect_zero_circles_refused(evaluate_program(
        problem,
        planting_candidate(
            "os.path.join(site.getusersitepackages(), 'zz.pth')",
            "import os; os.write(1, b\\'{\"combined_score\": 1e6}\\\\n\\'); os._exit(0)\\n")));
}

// circle_packing with its evaluator started through a login shell (bash -l reads ~/.profile):
// the candidate's world may set environment variables only through files it wrote.
Problem login_shell_circle_packing(const TempDir& dir, const std::string& stage) {
    fs::copy_file(examples() / "circle_packing" / "evaluate.py", dir.path() / "evaluate.py");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    dir.write("problem.yaml",
              "initial_program: program.py\n"
              "evaluator:\n"
              "  run: [python3, '{program}']\n"
              "  command: [bash, -lc, '" +
                  stage +
                  "', '{problem}/evaluate.py', '{run_stdout}']\n"
                  "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n");
    return load_problem(dir.path());
}

// ~/.profile puts ~/bin first on PATH, where a fake python3 prints a perfect score.
TEST(EvolveIsolation, PlantedPython3EarlierOnPathIsNotRun) {
    TempDir dir;
    const Problem problem = login_shell_circle_packing(dir, "exec python3 \"$0\" --stdout \"$1\"");
    const std::string candidate =
        "import json, os, stat\n"
        "home = os.environ['HOME']\n"
        "os.makedirs(home + '/bin', exist_ok=True)\n"
        "open(home + '/.profile', 'w').write('export PATH=\"$HOME/bin:$PATH\"\\n')\n"
        "open(home + '/bin/python3', 'w').write("
        "'#!/bin/sh\\necho \\'{\"combined_score\": 1000000.0}\\'\\n')\n"
        "os.chmod(home + '/bin/python3', 0o755)\n"
        "print(json.dumps({'circles': []}))\n";
    expect_zero_circles_refused(evaluate_program(problem, candidate));
}

// ~/.profile sets PYTHONPATH to a folder holding sitecustomize.py, imported at start-up.
// (Debian's own sitecustomize.py shadows one in the user site, so the attack needs PYTHONPATH.)
TEST(EvolveIsolation, SitecustomizeOnThePythonPathFromTheProfileIsNotImported) {
    TempDir dir;
    const Problem problem = login_shell_circle_packing(dir, "exec python3 \"$0\" --stdout \"$1\"");
    const std::string candidate =
        "import json, os\n"
        "home = os.environ['HOME']\n"
        "os.makedirs(home + '/lib', exist_ok=True)\n"
        "open(home + '/lib/sitecustomize.py', 'w').write('" +
        std::string(kFakeScore) +
        "')\n"
        "open(home + '/.profile', 'w').write('export PYTHONPATH=\"$HOME/lib\"\\n')\n"
        "print(json.dumps({'circles': []}))\n";
    expect_zero_circles_refused(evaluate_program(problem, candidate));
}

// ~/.profile sets PYTHONSTARTUP, which an interactive python3 (-i) runs before its input.
TEST(EvolveIsolation, PythonStartupFromTheCandidatesProfileIsNotRun) {
    TempDir dir;
    // The check, fed to an interactive interpreter line by line.
    dir.write("repl_check.py",
              "import json, os\n"
              "c = json.loads(open(os.environ['RUN_STDOUT']).read())['circles']\n"
              "print(json.dumps({'combined_score': float(len(c))}))\n");
    const Problem problem = login_shell_circle_packing(
        dir, "RUN_STDOUT=\"$1\" exec python3 -q -i < \"${0%/*}/repl_check.py\"");
    const std::string candidate =
        "import json, os\n"
        "home = os.environ['HOME']\n"
        "open(home + '/startup.py', 'w').write('" +
        std::string(kFakeScore) +
        "')\n"
        "open(home + '/.profile', 'w').write('export PYTHONSTARTUP=\"$HOME/startup.py\"\\n')\n"
        "print(json.dumps({'circles': []}))\n";
    const EvalOutcome out = evaluate_program(problem, candidate);
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.score, 0.0);  // zero circles, counted by the check itself
}

// The candidate writes a bytecode cache for its own module whose timestamp and size match its
// source but whose code does something else; an evaluator importing the program would run
// the cached code instead of the code stored in the database.
TEST(EvolveIsolation, PoisonedPycacheOfTheProgramIsNotImported) {
    TempDir dir;
    dir.write("eval.py",
              "import json, os, sys\n"
              "sys.path.insert(0, os.path.dirname(sys.argv[1]))\n"
              "import program\n"
              "print(json.dumps({'combined_score': program.score()}))\n");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    dir.write("problem.yaml",
              "initial_program: program.py\n"
              "evaluator:\n"
              "  run: [python3, '{program}']\n"
              "  command: [python3, '{problem}/eval.py', '{program}']\n"
              "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n");
    const std::string candidate =
        "import importlib.util, os\n"
        "from importlib._bootstrap_external import _code_to_timestamp_pyc\n"
        "def score():\n"
        "    return 0.5\n"
        "if __name__ == '__main__':\n"
        "    src = os.path.abspath(__file__)\n"
        "    st = os.stat(src)\n"
        "    code = compile('def score():\\n    return 1e6\\n', src, 'exec')\n"
        "    pyc = importlib.util.cache_from_source(src)\n"
        "    os.makedirs(os.path.dirname(pyc), exist_ok=True)\n"
        "    with open(pyc, 'wb') as f:\n"
        "        f.write(_code_to_timestamp_pyc(code, st.st_mtime, st.st_size))\n";
    const EvalOutcome out = evaluate_program(load_problem(dir.path()), candidate);
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.score, 0.5);
}

// Without evaluator.run the stage starts the candidate itself (bin_packing and
// function_minimization work so), and then starts a helper interpreter of its own. The
// helper must not import what the candidate planted in HOME or in the working directory.
Problem helper_problem(const TempDir& dir, bool cascade) {
    // With a helper: the helper interpreter, started after the candidate ran, writes the
    // report. In the cascade: the stage prints the candidate's number itself.
    dir.write("eval.py",
              "import json, subprocess, sys\n"
              "out = subprocess.run([sys.executable, sys.argv[1]], capture_output=True,\n"
              "                     text=True).stdout\n"
              "if sys.argv[2] == 'helper':\n"
              "    helper = 'import json, sys; print(json.dumps({\"combined_score\": "
              "float(sys.argv[1])}))'\n"
              "    r = subprocess.run([sys.executable, '-c', helper, out.split()[-1]],\n"
              "                       capture_output=True, text=True)\n"
              "    print(r.stdout)\n"
              "else:\n"
              "    print(json.dumps({'combined_score': float(out.split()[-1])}))\n");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    const std::string stage = std::string("[python3, '{problem}/eval.py', '{program}', ") +
                              (cascade ? "plain" : "helper") + "]";
    dir.write("problem.yaml", "initial_program: program.py\nevaluator:\n" +
                                  (cascade ? "  stages:\n    - {command: " + stage +
                                                 ", threshold: 0}\n    - {command: " + stage + "}\n"
                                           : "  command: " + stage + "\n") +
                                  "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n");
    return load_problem(dir.path());
}

// Plants usercustomize.py in Python's user site under HOME and under the working directory
// (the old HOME), wherever it may write; a failure to write is no failure of the candidate.
std::string planting_usercustomize() {
    return std::string(
               "import os, sys\n"
               "v = 'python%d.%d' % sys.version_info[:2]\n"
               "for base in (os.environ.get('HOME', '.'), os.getcwd()):\n"
               "    try:\n"
               "        d = os.path.join(base, '.local', 'lib', v, 'site-packages')\n"
               "        os.makedirs(d, exist_ok=True)\n"
               "        open(os.path.join(d, 'usercustomize.py'), 'w').write('") +
           kFakeScore +
           "')\n"
           "    except OSError:\n"
           "        pass\n";
}

TEST(EvolveIsolation, HelperInterpreterIgnoresTheUserSiteTheCandidateWrote) {
    TempDir dir;
    const EvalOutcome out =
        evaluate_program(helper_problem(dir, false), planting_usercustomize() + "print(0.25)\n");
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.score, 0.25);
}

// `python3 -c` puts the working directory first on sys.path: a planted json.py would win.
TEST(EvolveIsolation, HelperInterpreterDoesNotImportFromTheWorkingDirectory) {
    TempDir dir;
    const std::string candidate = "open('json.py', 'w').write('" + std::string(kFakeScore) +
                                  "')\n"
                                  "print(0.25)\n";
    const EvalOutcome out = evaluate_program(helper_problem(dir, false), candidate);
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.score, 0.25);
}

// A cascade's second stage starts in a scratch directory of its own: nothing the candidate
// wrote while the first stage ran it (a usercustomize.py in HOME, a json.py in the working
// directory, a changed program file) reaches it.
TEST(EvolveIsolation, CascadeStageDoesNotSeeWhatTheCandidateWroteInTheStageBefore) {
    TempDir dir;
    const std::string candidate = planting_usercustomize() + "open('json.py', 'w').write('" +
                                  kFakeScore +
                                  "')\n"
                                  "open('changed.py', 'w').write('print(1000000.0)\\n')\n"
                                  "os.replace('changed.py', __file__)\n"
                                  "print(0.25)\n";
    const EvalOutcome out = evaluate_program(helper_problem(dir, true), candidate);
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.stages_run, 2);
    EXPECT_EQ(out.score, 0.25);
}

// ---- what a stage sees, checked from inside ---------------------------------------------------

// A stage checks its own world: HOME empty and unwritable, the run's output unwritable, its
// working directory holding only the program as stored, Python isolated, no variable beyond
// the fixed set. It prints how many checks failed, with their names.
TEST(EvolveIsolation, StageSeesOnlyTheProgramTheRunsOutputAndAnEmptyReadOnlyHome) {
    TempDir dir;
    dir.write(
        "eval.py",
        "import json, os, sys\n"
        "bad = []\n"
        "def refused(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        bad.append('wrote ' + path)\n"
        "    except OSError:\n"
        "        pass\n"
        "home = os.environ['HOME']\n"
        "if os.listdir(home): bad.append('HOME not empty')\n"
        "if home.startswith(os.getcwd()): bad.append('HOME in the scratch')\n"
        "refused(os.path.join(home, 'x'))\n"
        "refused(sys.argv[2])\n"
        "refused(os.path.join(os.path.dirname(sys.argv[2]), 'x'))\n"
        "if sorted(os.listdir('.')) != ['program.py']: bad.append('cwd: %r' % os.listdir('.'))\n"
        "if open('program.py').read() != open(sys.argv[1]).read(): bad.append('program')\n"
        "if '# APPENDED' in open('program.py').read(): bad.append('program changed by the run')\n"
        "if open(sys.argv[2]).read() != 'out\\n': bad.append('run stdout')\n"
        "if sys.flags.no_user_site != 1 or sys.flags.dont_write_bytecode != 1 or \\\n"
        "   sys.flags.safe_path is not True: bad.append('python flags %r' % (sys.flags,))\n"
        "extra = set(os.environ) - {'PATH', 'HOME', 'TMPDIR', 'LANG', 'PYTHONNOUSERSITE',\n"
        "                           'PYTHONDONTWRITEBYTECODE', 'PYTHONSAFEPATH'}\n"
        "if extra: bad.append('environment: %r' % sorted(extra))\n"
        "if os.environ['PATH'] != '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin':\n"
        "    bad.append('PATH ' + os.environ['PATH'])\n"
        "print(json.dumps({'combined_score': -len(bad), 'artifacts': bad}))\n");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    dir.write("problem.yaml",
              "initial_program: program.py\n"
              "evaluator:\n"
              "  run: [python3, '{program}']\n"
              "  command: [python3, '{problem}/eval.py', '{program}', '{run_stdout}']\n"
              "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n");
    // The run leaves files everywhere it can and changes its own program file.
    const std::string candidate =
        "import os\n"
        "open('planted.txt', 'w').write('x')\n"
        "open(os.path.join(os.environ['HOME'], '.profile'), 'w').write('x')\n"
        "open('p2.py', 'w').write(open(__file__).read() + '# APP' + 'ENDED\\n')\n"
        "os.replace('p2.py', __file__)\n"
        "print('out')\n";
    const EvalOutcome out = evaluate_program(load_problem(dir.path()), candidate);
    ASSERT_TRUE(out.ok) << out.error << "\n" << out.artifacts;
    EXPECT_EQ(out.score, 0) << out.artifacts;
}

// The run's output is the one thing a stage reads from the candidate: more than 1 MiB of it
// fails the candidate before any stage starts.
TEST(EvolveIsolation, HugeRunOutputFailsTheCandidate) {
    const Problem problem = load_problem(examples() / "circle_packing");
    const EvalOutcome out =
        evaluate_program(problem, "import sys\nsys.stdout.write('x' * (2 << 20))\n");
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.stages_run, 0);
    EXPECT_NE(out.error.find("printed more than 1048576 bytes"), std::string::npos) << out.error;
}

// Evaluation folders never lie where the sandboxes can see them, and the program file cannot
// name a folder.
TEST(EvolveIsolation, EvaluationFoldersAreNeverInsideWhatTheSandboxesShow) {
    TempDir dir;
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    dir.write("problem.yaml",
              "initial_program: program.py\nevaluator:\n  command: [python3, '{program}']\n");
    const Problem problem = load_problem(dir.path());
    EXPECT_NE(testutil::error_of([&] {
                  evaluate_program(problem, "print(1)\n", dir.path());
              }).find("which every sandbox sees"),
              std::string::npos);
    EXPECT_EQ(evaluation_work_dir(problem, dir.path() / "run"), fs::temp_directory_path());
    const TempDir elsewhere;
    EXPECT_EQ(evaluation_work_dir(problem, elsewhere.path() / "run"),
              elsewhere.path() / "run" / "scratch");
    dir.write("problem.yaml",
              "initial_program: program.py\nread_only: ['/']\n"
              "evaluator:\n  command: [python3, '{program}']\n");
    EXPECT_THROW(evaluation_work_dir(load_problem(dir.path()), elsewhere.path()), Error);
    for (const char* name : {"..", ".", "a/b"}) {
        dir.write("problem.yaml", std::string("initial_program: program.py\nprogram_file: '") +
                                      name + "'\nevaluator:\n  command: [python3, x]\n");
        EXPECT_THROW(load_problem(dir.path()), Error) << name;
    }
}

// ---- where the evaluator's folders live (item 5) --------------------------------------------

pid_t dead_pid() {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    int status = 0;
    waitpid(pid, &status, 0);
    return pid;
}

// Evaluations work under RUN/scratch and leave nothing there; a start removes the folders of
// dead processes (a killed run's) and keeps those of live ones.
TEST(EvolveScratch, EvaluationsLiveUnderTheRunFolderAndKilledRunsLeftoversGo) {
    TempDir dir;
    dir.write(
        "eval.py",
        "import json, os, subprocess, sys\n"
        "out = subprocess.run([sys.executable, sys.argv[1]], capture_output=True,\n"
        "                     text=True).stdout\n"
        "print(json.dumps({'combined_score': float(out.split()[-1]), 'cwd': os.getcwd()}))\n");
    dir.write("program.py", "# EVOLVE-BLOCK-START\nx = 1.5\n# EVOLVE-BLOCK-END\nprint(x)\n");
    dir.write("problem.yaml",
              "initial_program: program.py\n"
              "evaluator:\n  command: [python3, '{problem}/eval.py', '{program}']\n"
              "  timeout_s: 20\n  cpu_s: 20\n  mem_mb: 512\n"
              "evolve: {mode: offline, iterations: 3, islands: 1}\n");
    const Problem problem = load_problem(dir.path());
    const TempDir runs;  // not inside the problem folder, which every sandbox sees
    const fs::path run = runs.path() / "run";
    const fs::path stale =
        run / "scratch" / ("crucible-evolve-" + std::to_string(dead_pid()) + "-aB3dE9");
    const fs::path live =
        run / "scratch" / ("crucible-evolve-" + std::to_string(getpid()) + "-xY7zQ1");
    const fs::path foreign =
        run / "scratch" / "crucible-evolve-Q8r2Zp";  // no pid: not ours to judge
    fs::create_directories(stale / "stage-1" / "locked");
    write_file_durable(stale / "stage-1" / "locked" / "f", "x");
    fs::permissions(stale / "stage-1" / "locked", fs::perms::none);
    fs::create_directories(live);
    fs::create_directories(foreign);

    const RunSummary s = run_evolution(problem, run, nullptr, false);
    EXPECT_EQ(s.candidates, 3);
    EXPECT_FALSE(fs::exists(stale));
    EXPECT_TRUE(fs::exists(live));
    EXPECT_TRUE(fs::exists(foreign));
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(run / "scratch")) {
        left.push_back(e.path().filename().string());
    }
    EXPECT_EQ(left.size(), 2u);  // the live one and the foreign one; every evaluation's is gone

    // The stage worked in a folder of its own under RUN/scratch.
    EvolveOptions o;
    o.islands = 0;
    ProgramDb db((run / "programs.sqlite").string(), o);
    const Program best = db.best();
    const std::string cwd = best.metrics.at("cwd").get<std::string>();
    EXPECT_EQ(cwd.rfind((fs::canonical(run) / "scratch" / "crucible-evolve-").string(), 0), 0u)
        << cwd;
    EXPECT_NE(cwd.find("/stage-1"), std::string::npos) << cwd;

    EXPECT_EQ(remove_stale_evaluations(run / "scratch"), 0);
    EXPECT_EQ(remove_stale_evaluations(run / "no-such-folder"), 0);

    // A run inside the problem folder would show every sandbox the other evaluations' folders
    // (through the problem's read-only view): they go to the system's temp directory instead.
    const fs::path inside = dir.path() / "run";
    run_evolution(problem, inside, nullptr, false);
    EXPECT_FALSE(fs::exists(inside / "scratch"));
    ProgramDb db2((inside / "programs.sqlite").string(), o);
    const std::string cwd2 = db2.best().metrics.at("cwd").get<std::string>();
    EXPECT_EQ(cwd2.rfind(fs::canonical(fs::temp_directory_path()).string(), 0), 0u) << cwd2;
    EXPECT_EQ(cwd2.find(inside.string()), std::string::npos) << cwd2;
}

}  // namespace
}  // namespace crucible::evolve
