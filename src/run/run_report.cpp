#include "run/run_report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "core/error.h"
#include "core/jsonl.h"
#include "core/svg_chart.h"
#include "run/tfevents.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The metrics drawn first, in this order, when a run has them.
const std::vector<std::string> kPreferred = {"loss",
                                             "reward_mean",
                                             "accuracy",
                                             "eval_accuracy",
                                             "eval_loss",
                                             "kl",
                                             "entropy",
                                             "grad_norm",
                                             "lr",
                                             "clip_frac_low",
                                             "clip_frac_high",
                                             "ratio_mean",
                                             "response_length_mean",
                                             "truncation_rate",
                                             "time_generate_s",
                                             "time_reward_s",
                                             "time_train_s",
                                             "step_s",
                                             "tokens_per_s"};

double number(const json& j) {
    return j.is_number() ? j.get<double>() : std::nan("");
}

std::string cut(const std::string& s, size_t n) {
    if (s.size() <= n) return s;
    size_t end = n;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) end--;
    return s.substr(0, end) + "…";
}

// The last logged step's rollouts of an RL run (samples.jsonl), at most `limit`.
std::vector<json> last_rollouts(const fs::path& dir, size_t limit) {
    std::vector<json> last;
    int64_t step = -1;
    for_each_jsonl_log_record((dir / "samples.jsonl").string(),
                              [&](const JsonlLine&, const json& j) {
                                  const int64_t s = j.value("step", int64_t{-1});
                                  if (s > step) {
                                      step = s;
                                      last.clear();
                                  }
                                  if (s == step && last.size() < limit) last.push_back(j);
                              });
    return last;
}

}  // namespace

bool is_training_run(const fs::path& dir) {
    return fs::is_regular_file(dir / "metrics.jsonl");
}

TrainingRun load_training_run(const fs::path& dir) {
    TrainingRun run;
    run.dir = dir;
    fs::path p = fs::absolute(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    run.name = p.filename().string();
    const fs::path file = dir / "metrics.jsonl";
    if (!fs::is_regular_file(file))
        throw Error(dir.string() + ": not a training run (no metrics.jsonl)");
    bool rl = false;
    for_each_jsonl_log_record(file.string(), [&](const JsonlLine& line, const json& j) {
        if (!j.contains("step")) return;  // not a step's line
        if (!j["step"].is_number_integer())
            throw Error(line.where() + ": \"step\" must be an integer, not " + j["step"].dump());
        rl = rl || j.contains("reward_mean");
        run.metrics.push_back(j);
    });
    if (run.metrics.empty()) throw Error(file.string() + ": no step logged yet");
    run.kind = rl ? "rl" : "sft";
    return run;
}

void name_runs(std::vector<TrainingRun>& runs) {
    std::map<std::string, int> count;
    for (const TrainingRun& r : runs) count[r.name]++;
    for (TrainingRun& r : runs) {
        if (count[r.name] < 2) continue;
        fs::path p = fs::absolute(r.dir).lexically_normal();
        if (p.filename().empty()) p = p.parent_path();
        r.name = p.parent_path().filename().string() + "/" + r.name;
    }
}

std::vector<double> smooth_series(const std::vector<double>& values, double w) {
    std::vector<double> out;
    double last = 0.0;
    int n = 0;
    for (double v : values) {
        if (!std::isfinite(v)) {
            out.push_back(v);
            continue;
        }
        last = last * w + (1.0 - w) * v;
        n++;
        const double debias = w == 1.0 ? 1.0 : 1.0 - std::pow(w, n);
        out.push_back(last / debias);
    }
    return out;
}

std::string training_report_html(const std::vector<TrainingRun>& runs, double smoothing) {
    if (!(smoothing >= 0.0 && smoothing < 1.0))
        throw Error("--smooth must be in [0, 1) (TensorBoard's smoothing weight)");
    std::string s =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>crucible training report</title>\n<style>\n"
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:right;vertical-align:top}td.l,th.l{text-align:left}"
        "pre{white-space:pre-wrap;margin:0;max-width:60em}"
        ".charts{display:flex;flex-wrap:wrap;gap:12px}\n"
        "</style>\n</head>\n<body>\n<h1>Training report</h1>\n";
    s += "<h2>Runs</h2>\n<table class=\"runs\">\n<tr><th class=\"l\">run</th><th "
         "class=\"l\">kind</th><th>steps logged</th><th>last step</th><th class=\"l\">"
         "folder</th></tr>\n";
    for (const TrainingRun& r : runs) {
        s += "<tr><td class=\"l\">" + html_escape(r.name) + "</td><td class=\"l\">" +
             (r.kind == "rl" ? "RL" : "SFT") + "</td><td>" + std::to_string(r.metrics.size()) +
             "</td><td>" + std::to_string(r.metrics.back().value("step", int64_t{0})) +
             "</td><td class=\"l\">" + html_escape(r.dir.string()) + "</td></tr>\n";
    }
    s += "</table>\n";
    // Every numeric metric any run has, preferred ones first.
    std::set<std::string> keys;
    for (const TrainingRun& r : runs)
        for (const json& m : r.metrics)
            for (const auto& [k, v] : m.items())
                if (v.is_number() && k != "step") keys.insert(k);
    std::vector<std::string> order;
    for (const std::string& k : kPreferred)
        if (keys.count(k)) order.push_back(k);
    for (const std::string& k : keys)
        if (std::find(order.begin(), order.end(), k) == order.end()) order.push_back(k);
    s += "<h2>Metrics</h2>\n";
    if (smoothing > 0) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "<p>Smoothed as TensorBoard does, weight %g.</p>\n",
                      smoothing);
        s += buf;
    }
    s += "<div class=\"charts\">\n";
    for (const std::string& k : order) {
        std::vector<ChartSeries> series;
        for (size_t ri = 0; ri < runs.size(); ri++) {
            const TrainingRun& r = runs[ri];
            ChartSeries c{r.name, {}, {}, static_cast<int>(ri)};  // a run keeps its colour
            std::vector<double> y;
            for (const json& m : r.metrics) {
                if (!m.contains(k)) continue;
                c.x.push_back(number(m["step"]));
                y.push_back(number(m[k]));
            }
            if (c.x.empty()) continue;
            c.y = smoothing > 0 ? smooth_series(y, smoothing) : y;
            series.push_back(std::move(c));
        }
        s += "<div class=\"chart\" data-metric=\"" + html_escape(k) + "\">" +
             svg_line_chart(k, series, "step", k) + "</div>\n";
    }
    s += "</div>\n";
    for (const TrainingRun& r : runs) {
        if (r.kind != "rl") continue;
        const std::vector<json> rows = last_rollouts(r.dir, 32);
        if (rows.empty()) continue;
        s += "<h2>Rollouts of " + html_escape(r.name) + ", step " +
             std::to_string(rows[0].value("step", int64_t{0})) + "</h2>\n";
        s += "<table class=\"rollouts\">\n<tr><th class=\"l\">item</th><th>group</th>"
             "<th>reward</th><th>advantage</th><th class=\"l\">prompt / completion</th></tr>\n";
        for (const json& row : rows) {
            const auto shown = [](const json& v) {
                if (!v.is_number()) return std::string("—");
                char buf[32];
                std::snprintf(buf, sizeof buf, "%.3f", v.get<double>());
                return std::string(buf);
            };
            const std::string prompt = row.value("prompt", std::string());
            const std::string completion = row.value("completion", std::string());
            s += "<tr><td class=\"l\">" + html_escape(row.value("item", std::string())) +
                 "</td><td>" + std::to_string(row.value("group", 0)) + "</td><td>" +
                 shown(row.contains("reward") ? row["reward"] : json()) + "</td><td>" +
                 shown(row.contains("advantage") ? row["advantage"] : json()) +
                 "</td><td class=\"l\"><details><summary>" + html_escape(cut(completion, 80)) +
                 "</summary><pre>" +
                 (prompt.empty() ? std::string() : html_escape(prompt) + "<hr>") +
                 html_escape(completion) + "</pre></details></td></tr>\n";
        }
        s += "</table>\n";
    }
    s += "</body>\n</html>\n";
    return s;
}

std::vector<fs::path> write_tensorboard(const std::vector<TrainingRun>& runs, const fs::path& dir) {
    std::vector<fs::path> files;
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const TrainingRun& r : runs) {
        // Wall times: the steps' durations added up, ending now.
        double total = 0;
        for (const json& m : r.metrics) total += std::max(0.0, number(m.value("step_s", json())));
        if (!std::isfinite(total)) total = 0;
        double t = now - total;
        EventFileWriter w(dir / r.name, t);
        for (const json& m : r.metrics) {
            const double d = number(m.value("step_s", json()));
            if (std::isfinite(d) && d > 0) t += d;
            const int64_t step = m.value("step", int64_t{0});
            for (const auto& [k, v] : m.items()) {
                if (k == "step" || !v.is_number()) continue;
                w.add_scalar(k, step, static_cast<float>(v.get<double>()), t);
            }
        }
        w.close();
        files.push_back(w.path());
    }
    return files;
}

}  // namespace crucible
