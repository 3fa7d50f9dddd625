// The HTML reports as a person sees them: each kind (an eval report with two runs, a training
// report with an SFT and an RL run, an evolve run's report) opened in headless Chromium
// (Debian's `chromium`, installed by scripts/setup as a test dependency). The page's DOM as
// the browser built it must hold the charts and tables, and a screenshot of it is written to
// the build tree (test_output/screenshots/) for a person to look at.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/file_io.h"
#include "eval/harness.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "evolve/controller.h"
#include "evolve/problem.h"
#include "evolve/report.h"
#include "run/run_report.h"
#include "table_generator.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

std::string chromium() {
    for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
        if (fs::exists(p)) return p;
    return "";
}

// Opens `html` in headless Chromium: returns the DOM it built, and writes a screenshot.
std::string render(const fs::path& html, const std::string& name) {
    const fs::path shots =
        fs::path(CRUCIBLE_TEST_CACHE_DIR).parent_path() / "test_output" / "screenshots";
    fs::create_directories(shots);
    const std::string flags =
        " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
        "--window-size=1200,1600 ";
    const fs::path png = shots / (name + ".png");
    fs::remove(png);
    testutil::command_output(chromium() + flags + "--screenshot=" + png.string() + " file://" +
                             html.string() + " 2>/dev/null");
    // A PNG of the window's size: the signature, then IHDR's width and height.
    std::ifstream in(png, std::ios::binary);
    std::string head(24, '\0');
    in.read(head.data(), 24);
    EXPECT_EQ(head.substr(1, 3), "PNG") << png;
    const auto be32 = [&](size_t at) {
        uint32_t v = 0;
        for (size_t i = 0; i < 4; i++) v = (v << 8) | static_cast<unsigned char>(head[at + i]);
        return v;
    };
    EXPECT_EQ(be32(16), 1200u) << png;
    EXPECT_EQ(be32(20), 1600u) << png;
    EXPECT_GT(fs::file_size(png), 20000u) << "a blank page? " << png;
    return testutil::command_output(chromium() + flags + "--dump-dom file://" + html.string() +
                                    " 2>/dev/null");
}

size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = 0; (at = s.find(what, at)) != std::string::npos; at += what.size()) n++;
    return n;
}

struct Browser : ::testing::Test {
    void SetUp() override {
        if (chromium().empty())
            FAIL() << "chromium is missing: run scripts/setup (it installs Debian's chromium for "
                      "the report tests)";
    }
};

TEST_F(Browser, TheEvalReportRendersItsChartsAndTables) {
    TempDir t;
    std::vector<eval::EvalItem> items(4);
    testutil::TableGenerator gen;
    for (size_t i = 0; i < items.size(); i++) {
        items[i].id = "q" + std::to_string(i);
        items[i].prompt = "p" + std::to_string(i);
        items[i].answer = std::to_string(i);
        items[i].verifier = "exact";
        gen.table[items[i].id] = {std::to_string(i), "x", std::to_string(i)};
    }
    std::vector<json> results;
    for (const char* name : {"a", "b"}) {
        eval::EvalOptions o;
        o.run_dir = (t.path() / name).string();
        o.k = 3;
        eval::run_eval(items, gen, o);
        results.push_back(eval::compute_results(eval::load_run(o.run_dir)));
    }
    const fs::path html = t.path() / "eval.html";
    write_file_durable(html, eval::report_html(results));
    const std::string dom = render(html, "eval_report");
    EXPECT_EQ(count(dom, "<svg"), 3u) << dom.substr(0, 2000);  // accuracy, heatmap, pass@k
    for (const char* part : {"Eval report", "class=\"runs\"", "class=\"heatmap\"",
                             "class=\"scale\"", "class=\"legend\"", "errorbar"})
        EXPECT_NE(dom.find(part), std::string::npos) << part;
}

TEST_F(Browser, TheTrainingReportRendersEveryMetricAndTheRollouts) {
    TempDir t;
    const auto write_run = [&](const std::string& name, bool rl) {
        const fs::path dir = t.path() / name;
        fs::create_directories(dir);
        std::string m, s;
        for (int step = 1; step <= 6; step++) {
            json line = {{"step", step}, {"loss", 3.0 / step}, {"lr", 1e-3}, {"grad_norm", 1.0}};
            if (rl) line["reward_mean"] = 0.1 * step;
            m += line.dump() + "\n";
            if (rl)
                s += json({{"step", step},
                           {"item", "q"},
                           {"prompt", "2+2?"},
                           {"completion", "4"},
                           {"reward", 1.0},
                           {"advantage", 0.5},
                           {"group", 0}})
                         .dump() +
                     "\n";
        }
        write_file_durable(dir / "metrics.jsonl", m);
        if (rl) write_file_durable(dir / "samples.jsonl", s);
        return load_training_run(dir);
    };
    std::vector<TrainingRun> runs = {write_run("sft", false), write_run("rl", true)};
    const fs::path html = t.path() / "training.html";
    write_file_durable(html, training_report_html(runs, 0.0));
    const std::string dom = render(html, "training_report");
    EXPECT_EQ(count(dom, "<svg"), 4u);  // loss, reward_mean, grad_norm, lr
    for (const char* part : {"Training report", "Rollouts of rl, step 6", "<details>"})
        EXPECT_NE(dom.find(part), std::string::npos) << part;
}

TEST_F(Browser, TheEvolveReportRendersItsChartsAndPrograms) {
    TempDir t;
    // The repository's examples: tests/fixtures is two levels below the source root.
    evolve::Problem p =
        evolve::load_problem(fs::path(CRUCIBLE_FIXTURE_DIR).parent_path().parent_path() /
                             "examples" / "evolve" / "circle_packing");
    p.options.mode = "offline";
    p.options.iterations = 6;
    p.options.seed = 1;
    evolve::run_evolution(p, t.path() / "run", nullptr, false);
    const fs::path html = t.path() / "evolve.html";
    write_file_durable(html, evolve::render_report(t.path() / "run"));
    const std::string dom = render(html, "evolve_report");
    EXPECT_GE(count(dom, "<svg"), 2u);  // score over time, lineage
    for (const char* part : {"Score over time", "Lineage tree", "Best programs", "best so far"})
        EXPECT_NE(dom.find(part), std::string::npos) << part;
}

}  // namespace
}  // namespace crucible
