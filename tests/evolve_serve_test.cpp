// Evolve end to end against `crucible serve` over real HTTP: a Server in-process on an
// ephemeral port with a tiny random model (byte tokenizer, ChatML). Its replies are noise, so
// every candidate must come back as a recorded failure (no diff found) with the server's
// token counts, and the loop must finish its iterations without hanging.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "evolve/controller.h"
#include "evolve/program_db.h"
#include "model/checkpoint.h"
#include "model_util.h"
#include "serve/server.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;

TEST(EvolveServe, LoopRunsAgainstCrucibleServe) {
    testutil::TempDir tmp;
    const fs::path model_dir = tmp.path() / "tiny";
    testutil::write_byte_model(model_dir, 4096, 5);

    ServerOptions so;
    so.model_dir = model_dir;
    so.port = 0;
    so.served_model_name = "tiny";
    Server server(so);
    std::thread runner([&] { server.run(); });

    const fs::path pdir = tmp.path() / "problem";
    fs::create_directories(pdir);
    const auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(pdir / name) << text;
    };
    write("program.py", "# EVOLVE-BLOCK-START\nx = 1.0\n# EVOLVE-BLOCK-END\nprint(x)\n");
    write("eval.py",
          "import json, subprocess, sys\n"
          "r = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True)\n"
          "x = float(r.stdout.split()[-1])\n"
          "print(json.dumps({'combined_score': x}))\n");
    write("problem.yaml",
          "initial_program: program.py\nevaluator:\n  command: [python3, '{problem}/eval.py', "
          "'{program}']\nevolve:\n  islands: 1\n  max_tokens: 24\n  temperature: 1.0\n");
    Problem p = load_problem(pdir);
    p.options.iterations = 2;
    p.options.llms.push_back(
        {"http://127.0.0.1:" + std::to_string(server.port()) + "/v1", "tiny", 1, 0, 0});
    OpenAIEnsemble llm(p.options);
    RunSummary s;
    try {
        s = run_evolution(p, tmp.path() / "run", &llm, false);
    } catch (...) {
        server.stop();
        runner.join();
        throw;
    }
    server.stop();
    runner.join();
    EXPECT_EQ(s.candidates, 2);
    EXPECT_EQ(s.failed, 2);
    EXPECT_GT(s.tokens, 2 * 500);  // the prompts alone are hundreds of byte tokens each
    EXPECT_EQ(s.best_score, 1.0);
    EvolveOptions o;
    o.islands = 0;
    ProgramDb db((tmp.path() / "run" / "programs.sqlite").string(), o);
    for (const Program& c2 : db.all("iteration > 0")) {
        EXPECT_EQ(c2.model, "tiny");
        EXPECT_LE(c2.completion_tokens, 24);
        EXPECT_NE(c2.error.find("no SEARCH/REPLACE"), std::string::npos) << c2.error;
    }
}

}  // namespace
}  // namespace crucible::evolve
