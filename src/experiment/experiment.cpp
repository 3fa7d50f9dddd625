#include "experiment/experiment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <streambuf>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/strings.h"
#include "core/svg_chart.h"
#include "core/yaml_reader.h"
#include "dist/world.h"
#include "eval/statistics.h"
#include "model/checkpoint.h"
#include "rl/evaluate.h"
#include "rl/presets.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "rl/task.h"
#include "run/run_folder.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::experiment {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kEvalFile = "experiment_eval.json";

json spec_to_json(const ExperimentSpec& s) {
    json arms = json::array();
    for (const ArmSpec& a : s.arms) {
        arms.push_back({{"name", a.name}, {"preset", a.preset}, {"set", a.set}});
    }
    return {{"base", s.base},
            {"preset", s.preset},
            {"set", s.set},
            {"arms", arms},
            {"seeds", s.seeds},
            {"eval",
             {{"items", s.eval_items},
              {"samples", s.eval_samples},
              {"temperature", s.eval_temperature},
              {"seed", s.eval_seed},
              {"every", s.eval_every}}},
            {"bootstrap", {{"resamples", s.resamples}, {"seed", s.bootstrap_seed}}}};
}

ExperimentSpec spec_from_json(const json& j) {
    ExperimentSpec s;
    s.base = j.at("base");
    s.preset = j.at("preset");
    s.set = j.at("set").get<std::vector<std::string>>();
    for (const json& a : j.at("arms")) {
        s.arms.push_back(
            {a.at("name"), a.value("preset", ""), a.at("set").get<std::vector<std::string>>()});
    }
    s.seeds = j.at("seeds").get<std::vector<int64_t>>();
    s.eval_items = j.at("eval").at("items");
    s.eval_samples = j.at("eval").at("samples");
    s.eval_temperature = j.at("eval").at("temperature");
    s.eval_seed = j.at("eval").at("seed");
    s.eval_every = j.at("eval").value("every", 0);
    s.resamples = j.at("bootstrap").at("resamples");
    s.bootstrap_seed = j.at("bootstrap").at("seed");
    return s;
}

fs::path run_dir(const fs::path& out, const std::string& arm, int64_t seed) {
    return out / "runs" / arm / ("seed-" + std::to_string(seed));
}

Config run_config(const ExperimentSpec& spec, const ArmSpec& arm, int64_t seed,
                  const fs::path& out) {
    Config c(kRlConfigDefaults);
    try {
        const std::string& preset = arm.preset.empty() ? spec.preset : arm.preset;
        if (!preset.empty()) c.merge_text(rl::rl_preset(preset), "preset " + preset);
        if (!spec.base.empty()) c.merge_file(spec.base);
        for (const std::string& s : spec.set) c.set(s);
        for (const std::string& s : arm.set) c.set(s);
    } catch (const Error& e) {
        throw Error("experiment: arm '" + arm.name + "': " + e.what());
    }
    c.set("seed=" + std::to_string(seed));
    c.set("run.dir=" + (out / "runs" / arm.name).string());
    c.set("run.name=seed-" + std::to_string(seed));
    return c;
}

json nan_to_null(const std::vector<std::vector<double>>& rows) {
    json out = json::array();
    for (const auto& row : rows) {
        json r = json::array();
        for (double v : row) r.push_back(std::isnan(v) ? json(nullptr) : json(v));
        out.push_back(r);
    }
    return out;
}

eval::ScoreRows rows_from_json(const json& j) {
    eval::ScoreRows rows;
    for (const json& row : j) {
        std::vector<double> r;
        for (const json& v : row) r.push_back(v.is_null() ? NAN : v.get<double>());
        rows.push_back(std::move(r));
    }
    return rows;
}

json read_json_file(const fs::path& p) {
    try {
        return json::parse(read_file(p));
    } catch (const json::exception& e) {
        throw Error(p.string() + ": not valid JSON: " + e.what());
    }
}

// The held-out items every run is evaluated on: the control's task read with the spec's eval
// seed, its first eval_items items with a gold answer.
struct HeldOut {
    TextTokenizer tokenizer{ByteTokenizer()};
    rl::Task task;
    std::vector<rl::TaskItem> items;
};

HeldOut held_out_items(const ExperimentSpec& spec, const Config& control) {
    HeldOut h;
    const fs::path model(control.get_string("model.path"));
    if (fs::exists(model / "tokenizer.json")) h.tokenizer = load_text_tokenizer(model);
    h.task = rl::load_task(rl::read_rl_task_config(control), spec.eval_seed, h.tokenizer);
    for (const rl::TaskItem& item : h.task.eval) {
        if ((int)h.items.size() == spec.eval_items) break;
        if (item.has_gold) h.items.push_back(item);
    }
    if (h.items.empty()) {
        throw Error("experiment: the control's task has no held-out items with a gold answer");
    }
    return h;
}

json interval_json(const eval::BootstrapResult& b) {
    return {{"estimate", b.estimate}, {"se", b.se}, {"ci95", {b.interval.lo, b.interval.hi}}};
}

// A run's curves from its metrics.jsonl: step and each metric the report draws.
const std::vector<std::string> kCurves = {"reward_mean", "accuracy", "response_length_mean",
                                          "entropy", "eval_accuracy"};

json read_curves(const fs::path& metrics) {
    json curves = json::object();
    curves["step"] = json::array();
    for (const std::string& k : kCurves) curves[k] = json::array();
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        json m;
        try {
            m = json::parse(line);
        } catch (const json::exception&) {
            continue;  // a line cut by a kill; the run resumed and wrote it again
        }
        if (!m.contains("step")) continue;
        curves["step"].push_back(m["step"]);
        for (const std::string& k : kCurves) {
            curves[k].push_back(m.contains(k) && m[k].is_number() ? m[k] : json(nullptr));
        }
    }
    return curves;
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string points(double v) {
    return std::isnan(v) ? "—" : fmt("%.1f", 100 * v);
}
// A number of results.json, NaN where it holds null (a statistic with too few runs or items).
double num(const json& v) {
    return v.is_number() ? v.get<double>() : NAN;
}

std::string report_html(const json& r) {
    std::ostringstream h;
    h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>experiment</title>"
         "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right}th{background:#f4f4f4}</style></head><body>";
    h << "<h1>Experiment</h1><p>" << html_escape(r["estimator"].get<std::string>()) << "</p>";
    h << "<p>" << r["items"].get<int>() << " held-out items &times; " << r["samples"].get<int>()
      << " samples per run; accuracy in points (percent of fully correct samples).</p>";
    h << "<h2>Arms</h2><table><tr><th>arm</th><th>runs</th><th>mean</th><th>95% interval</th>"
         "<th>seed-to-seed SD</th><th>runs' accuracy</th></tr>";
    for (const json& a : r["arms"]) {
        std::string runs;
        for (const json& run : a["runs"]) {
            runs += (runs.empty() ? "" : ", ") + points(num(run["accuracy"]));
        }
        if (!a.contains("mean")) {
            h << "<tr><td>" << html_escape(a["name"].get<std::string>())
              << "</td><td>0</td><td colspan=4>no finished run</td></tr>";
            continue;
        }
        h << "<tr><td>" << html_escape(a["name"].get<std::string>()) << "</td><td>"
          << a["runs"].size() << "</td><td>" << points(num(a["mean"]["estimate"])) << "</td><td>"
          << points(num(a["mean"]["ci95"][0])) << " – " << points(num(a["mean"]["ci95"][1]))
          << "</td><td>" << points(num(a["seed_sd"])) << "</td><td>" << runs << "</td></tr>";
    }
    h << "</table><h2>Against the control (" << html_escape(r["control"].get<std::string>())
      << ")</h2><table><tr><th>arm</th><th>difference</th><th>95% interval</th>"
         "<th>detectable (80% power)</th><th>verdict</th><th>pass@K difference [95%]</th>"
         "</tr>";
    for (const json& d : r["differences"]) {
        h << "<tr><td>" << html_escape(d["arm"].get<std::string>()) << "</td><td>"
          << points(num(d["difference"]["estimate"])) << "</td><td>"
          << points(num(d["difference"]["ci95"][0])) << " – "
          << points(num(d["difference"]["ci95"][1])) << "</td><td>&plusmn;"
          << points(num(d["minimum_detectable"])) << "</td><td>"
          << html_escape(d["verdict"].get<std::string>()) << "</td><td>";
        if (d.contains("pass_at_k_difference")) {
            const json& p = d["pass_at_k_difference"];
            h << "pass@" << p["k"].get<int>() << " " << points(num(p["estimate"])) << " ["
              << points(num(p["ci95"][0])) << ", " << points(num(p["ci95"][1])) << "]";
        }
        h << "</td></tr>";
    }
    h << "</table><h2>Curves (every run, seeds overlaid)</h2>";
    for (const std::string& k : kCurves) {
        std::vector<ChartSeries> series;
        int arm_index = 0;
        for (const json& a : r["arms"]) {
            for (const json& run : a["runs"]) {
                ChartSeries s;
                s.name = a["name"].get<std::string>() + " seed " +
                         std::to_string(run["seed"].get<int64_t>());
                s.colour = arm_index;
                const json& c = run["curves"];
                for (size_t i = 0; i < c["step"].size(); i++) {
                    s.x.push_back(c["step"][i].get<double>());
                    s.y.push_back(num(c[k][i]));
                }
                bool any = false;
                for (double y : s.y) any = any || !std::isnan(y);
                if (any) series.push_back(std::move(s));
            }
            arm_index++;
        }
        if (!series.empty()) h << svg_line_chart(k, series, "step", k);
    }
    std::vector<ChartSeries> along;
    int along_arm = 0;
    for (const json& a : r["arms"]) {
        for (const json& run : a["runs"]) {
            if (run["accuracy_by_step"].empty()) continue;
            ChartSeries s;
            s.name = a["name"].get<std::string>() + " seed " +
                     std::to_string(run["seed"].get<int64_t>());
            s.colour = along_arm;
            for (const json& p : run["accuracy_by_step"]) {
                s.x.push_back(p["step"].get<double>());
                s.y.push_back(num(p["accuracy"]));
            }
            along.push_back(std::move(s));
        }
        along_arm++;
    }
    if (!along.empty()) {
        h << svg_line_chart("held-out accuracy by step (eval.every)", along, "step", "accuracy");
    }
    std::vector<ChartSeries> pass;
    int arm_index = 0;
    for (const json& a : r["arms"]) {
        if (a.contains("pass_at_k")) {
            ChartSeries s;
            s.name = a["name"];
            s.colour = arm_index;
            for (size_t k = 0; k < a["pass_at_k"].size(); k++) {
                s.x.push_back(k + 1.0);
                s.y.push_back(num(a["pass_at_k"][k]));
            }
            pass.push_back(std::move(s));
        }
        arm_index++;
    }
    if (!pass.empty()) h << svg_line_chart("pass@k (mean over seeds)", pass, "k", "pass@k");
    h << "</body></html>\n";
    return h.str();
}

}  // namespace

ExperimentSpec load_spec(const fs::path& file) {
    const std::string where = file.string();
    const YAML::Node root = parse_yaml(read_file(file), where);
    YamlSection top(root, where, "");
    ExperimentSpec s;
    top.get("base", s.base);
    if (!s.base.empty() && fs::path(s.base).is_relative()) {
        s.base = (fs::absolute(file).parent_path() / s.base).lexically_normal().string();
    }
    top.get("preset", s.preset);
    s.set = top.strings("set");
    std::set<std::string> names;
    for (YamlSection& a : top.items("arms")) {
        ArmSpec arm;
        a.get("name", arm.name);
        a.get("preset", arm.preset);
        arm.set = a.strings("set");
        a.finish();
        const bool ok = !arm.name.empty() &&
                        std::all_of(arm.name.begin(), arm.name.end(),
                                    [](char c) {
                                        return std::isalnum(static_cast<unsigned char>(c)) ||
                                               c == '_' || c == '-' || c == '.';
                                    }) &&
                        arm.name[0] != '.';
        if (!ok) {
            a.fail(a.node(), "key '" + a.full("name") +
                                 "' must be a name of letters, digits, '_', '-' or '.' (a folder)");
        }
        if (!names.insert(arm.name).second) {
            a.fail(a.node(), "arm '" + arm.name + "' is named twice");
        }
        s.arms.push_back(std::move(arm));
    }
    if (s.arms.size() < 2) {
        throw Error(where + ": 'arms' must list at least two arms (the first is the control)");
    }
    for (const std::string& v : top.strings("seeds")) {
        try {
            size_t used = 0;
            const long long seed = std::stoll(v, &used);
            if (used != v.size() || seed < 0) throw std::invalid_argument(v);
            s.seeds.push_back(seed);
        } catch (const std::exception&) {
            throw Error(where + ": 'seeds' must be non-negative integers (got '" + v + "')");
        }
    }
    if (s.seeds.empty()) throw Error(where + ": 'seeds' must list at least one seed");
    if (std::set<int64_t>(s.seeds.begin(), s.seeds.end()).size() != s.seeds.size()) {
        throw Error(where + ": 'seeds' lists a seed twice");
    }
    {
        YamlSection e(top.raw("eval"), where, "eval");
        e.get("items", s.eval_items);
        e.get("samples", s.eval_samples);
        e.get("temperature", s.eval_temperature);
        e.get("seed", s.eval_seed);
        e.get("every", s.eval_every);
        e.finish();
        if (s.eval_every < 0) e.fail(e.node(), "key 'eval.every' must be 0 or more");
        if (s.eval_items < 1) e.fail(e.node(), "key 'eval.items' must be at least 1");
        if (s.eval_samples < 1) e.fail(e.node(), "key 'eval.samples' must be at least 1");
        if (!(s.eval_temperature >= 0 && s.eval_temperature <= 2)) {
            e.fail(e.node(), "key 'eval.temperature' must be in [0, 2]");
        }
    }
    {
        YamlSection b(top.raw("bootstrap"), where, "bootstrap");
        b.get("resamples", s.resamples);
        b.get("seed", s.bootstrap_seed);
        b.finish();
        if (s.resamples < 100 || s.resamples > 1000000) {
            b.fail(b.node(), "key 'bootstrap.resamples' must be in [100, 1000000]");
        }
    }
    top.finish();
    return s;
}

std::string run_config_yaml(const ExperimentSpec& spec, const ArmSpec& arm, int64_t seed,
                            const fs::path& out) {
    return run_config(spec, arm, seed, out).dump();
}

namespace {

// Writes through to `target` whole lines, each with `prefix` in front, in one write: runs side
// by side share a stream (stderr under mpirun), and a line written in pieces would interleave
// with theirs.
class LinePrefixBuf : public std::streambuf {
  public:
    LinePrefixBuf(std::streambuf* target, std::string prefix)
        : target_(target), prefix_(std::move(prefix)), line_(prefix_) {}
    ~LinePrefixBuf() override { flush_line(); }

  protected:
    int overflow(int c) override {
        if (c == traits_type::eof()) return traits_type::not_eof(c);
        line_ += static_cast<char>(c);
        if (c == '\n' && !flush_line()) return traits_type::eof();
        return c;
    }
    int sync() override { return flush_line() && target_->pubsync() == 0 ? 0 : -1; }

  private:
    bool flush_line() {
        if (line_.size() == prefix_.size()) return true;  // nothing but the prefix yet
        const bool ok = target_->sputn(line_.data(), (std::streamsize)line_.size()) ==
                        (std::streamsize)line_.size();
        line_ = prefix_;
        return ok;
    }
    std::streambuf* target_;
    std::string prefix_;
    std::string line_;  // the prefix and the line so far
};

// Rank 0's hold on an experiment folder while it runs: a second `experiment run` on the same
// folder (another terminal, another job) would remove and retrain the runs this one is training.
class FolderLock {
  public:
    explicit FolderLock(const fs::path& dir) {
        const fs::path file = dir / ".lock";
        fd_ = ::open(file.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        if (fd_ < 0) throw Error(file.string() + ": cannot open the experiment's lock file");
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd_);
            throw Error(dir.string() +
                        ": another `crucible experiment run` is working on this folder; wait for "
                        "it to end (or give another --out)");
        }
    }
    ~FolderLock() { ::close(fd_); }
    FolderLock(const FolderLock&) = delete;
    FolderLock& operator=(const FolderLock&) = delete;

  private:
    int fd_ = -1;
};

// Trains one arm x seed (resuming it when a checkpoint survives) and evaluates its final policy
// (and its checkpoints at multiples of eval.every) on the held-out items. Every rank of the
// current group calls it; the group's first rank evaluates and writes the evaluation file.
void train_and_evaluate(const ExperimentSpec& spec, const ArmSpec& arm, int64_t seed,
                        const fs::path& out, const HeldOut& held, std::ostream& log) {
    const fs::path dir = run_dir(out, arm.name, seed);
    const bool resume = latest_checkpoint(dir / "checkpoints") >= 0;
    // Killed before its first checkpoint: nothing to keep, start the run again. The group's
    // other ranks read the folder only after this (the trainer's first collective).
    if (!resume && fs::exists(dir) && dist::is_root()) fs::remove_all(dir);
    dist::wait_for_all();
    log << "experiment: " << arm.name << " seed " << seed << (resume ? " (resuming)" : "") << "\n";
    const Config config = run_config(spec, arm, seed, out);
    const auto t0 = std::chrono::steady_clock::now();
    rl::RlTrainer trainer(config, resume, log);
    trainer.run();
    const double train_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!dist::is_root()) return;
    SamplingParams params;
    params.temperature = static_cast<float>(spec.eval_temperature);
    params.max_tokens = static_cast<int>(config.get_int("rollout.max_new_tokens"));
    const rl::TaskEvaluation ev =
        rl::evaluate_task(trainer.model(), held.tokenizer, held.task, held.items, spec.eval_samples,
                          params, spec.eval_seed);
    // Held-out accuracy along the run: its checkpoints at multiples of eval.every (those that
    // train.checkpoint_every wrote), evaluated as the final policy is.
    json along = json::array();
    if (spec.eval_every > 0) {
        for (int64_t step = spec.eval_every; step < trainer.step(); step += spec.eval_every) {
            const fs::path ck = trainer.checkpoint_dir(step);
            if (!fs::exists(ck / "model.safetensors")) continue;
            std::unique_ptr<Model> m = load_model(ck);
            m->set_matmul_dtype(trainer.model().matmul_dtype());
            const rl::TaskEvaluation e =
                rl::evaluate_task(*m, held.tokenizer, held.task, held.items, spec.eval_samples,
                                  params, spec.eval_seed);
            along.push_back({{"step", step}, {"accuracy", e.mean}});
        }
        along.push_back({{"step", trainer.step()}, {"accuracy", ev.mean}});
    }
    json ids = json::array();
    for (const rl::TaskItem& item : held.items) ids.push_back(item.id);
    const json record = {{"arm", arm.name},
                         {"seed", seed},
                         {"steps", trainer.step()},
                         {"item_ids", ids},
                         {"scores", nan_to_null(ev.scores)},
                         {"accuracy", ev.mean},
                         {"accuracy_by_step", along},
                         {"failures", ev.failures},
                         {"mean_length", ev.mean_length},
                         {"train_seconds", train_s},
                         {"eval_seconds", ev.seconds},
                         {"ranks", dist::size()}};
    write_file_durable(dir / kEvalFile, record.dump() + "\n");
    log << "experiment: " << arm.name << " seed " << seed << ": held-out accuracy "
        << points(ev.mean) << " points (" << fmt("%.0f", train_s) << " s training)\n";
}

}  // namespace

void run_experiment(const ExperimentSpec& spec, const fs::path& out, std::ostream& log,
                    int ranks_per_run) {
    if (ranks_per_run < 1 || dist::size() % ranks_per_run != 0) {
        // One message: rank 0 reports and ends the job (main's abort_job); the others wait.
        if (dist::is_root()) {
            throw Error("experiment: --ranks-per-run " + std::to_string(ranks_per_run) +
                        " must divide the number of ranks (" + std::to_string(dist::size()) + ")");
        }
        dist::wait_for_all();
    }
    // The folder's experiment first: another spec's runs are never mixed with these.
    const fs::path spec_file = out / "spec.json";
    json spec_json = spec_to_json(spec);
    // The base file's content, not only its name: an edited base is another experiment.
    if (!spec.base.empty()) spec_json["base_content"] = fnv1a64_hex(read_file(spec.base));
    // Ranks that disagree on any of these would split or write differently (and wait forever).
    dist::check_same(spec_json.dump() + "\n" + fs::absolute(out).lexically_normal().string() +
                         "\n" + std::to_string(ranks_per_run),
                     "the experiment (its spec, --out or --ranks-per-run)");
    if (fs::exists(spec_file) && read_json_file(spec_file) != spec_json) {
        throw Error(out.string() + " holds an experiment with another spec (" + spec_file.string() +
                    "); give another --out or the same spec");
    }
    // Every run's config is built, then read (refused naming the arm and key), before any
    // training.
    std::vector<std::pair<std::string, Config>> configs;
    for (const ArmSpec& arm : spec.arms) {
        for (int64_t seed : spec.seeds) {
            configs.emplace_back("arm '" + arm.name + "' seed " + std::to_string(seed),
                                 run_config(spec, arm, seed, out));
        }
    }
    for (const auto& [name, config] : configs) {
        try {
            rl::validate_rl_config(config);
        } catch (const Error& e) {
            throw Error("experiment: " + name + ": " + e.what());
        }
    }
    const HeldOut held = held_out_items(spec, run_config(spec, spec.arms[0], spec.seeds[0], out));
    // Rank 0 holds the folder, writes spec.json, and decides which runs are left before any
    // rank starts one; then tells the others.
    std::optional<FolderLock> lock;
    if (dist::is_root()) {
        fs::create_directories(out);
        lock.emplace(out);
        if (!fs::exists(spec_file)) write_file_durable(spec_file, spec_json.dump(2) + "\n");
    }
    std::string left;
    const size_t total = spec.arms.size() * spec.seeds.size();
    if (dist::is_root()) {
        for (size_t a = 0; a < spec.arms.size(); a++) {
            for (size_t s = 0; s < spec.seeds.size(); s++) {
                if (!fs::exists(run_dir(out, spec.arms[a].name, spec.seeds[s]) / kEvalFile)) {
                    left += std::to_string(a) + " " + std::to_string(s) + "\n";
                }
            }
        }
    }
    dist::broadcast(left);
    std::vector<std::pair<size_t, size_t>> todo;  // (arm, seed) indices
    {
        std::istringstream in(left);
        size_t a = 0, s = 0;
        while (in >> a >> s) todo.emplace_back(a, s);
    }
    if (dist::is_root()) {
        log << "experiment: " << spec.arms.size() << " arms x " << spec.seeds.size() << " seeds, "
            << total - todo.size() << " of " << total
            << " runs done; held-out: " << held.items.size() << " items x " << spec.eval_samples
            << " samples\n";
        if (dist::size() > 1 && !todo.empty()) {
            log << "experiment: " << dist::size() / ranks_per_run << " runs at a time on "
                << ranks_per_run << " rank(s) each\n";
        }
    }
    {
        const dist::RankGroups groups(ranks_per_run);
        static std::ostream discard(nullptr);
        for (size_t i = (size_t)groups.group(); i < todo.size(); i += (size_t)groups.groups()) {
            const ArmSpec& arm = spec.arms[todo[i].first];
            const int64_t seed = spec.seeds[todo[i].second];
            // Runs side by side write one stream: each line says whose it is.
            LinePrefixBuf prefixed(log.rdbuf(),
                                   "[" + arm.name + " seed " + std::to_string(seed) + "] ");
            std::ostream run_log(&prefixed);
            std::ostream& group_log =
                !dist::is_root() ? discard : (groups.groups() > 1 ? run_log : log);
            try {
                train_and_evaluate(spec, arm, seed, out, held, group_log);
            } catch (const Error& e) {
                run_log.flush();
                throw Error("experiment: arm '" + arm.name + "' seed " + std::to_string(seed) +
                            ": " + e.what());
            }
            run_log.flush();
        }
    }
    dist::wait_for_all();  // every group's evaluation files are written
    if (!dist::is_root()) return;
    write_experiment_report(out);
    log << "experiment: wrote " << (out / "results.json").string() << " and "
        << (out / "report.html").string() << "\n";
}

json experiment_results(const fs::path& out) {
    const fs::path spec_file = out / "spec.json";
    if (!fs::exists(spec_file)) {
        throw Error(out.string() +
                    ": no experiment here (no spec.json; run `crucible experiment "
                    "run` first)");
    }
    ExperimentSpec spec;
    try {
        spec = spec_from_json(read_json_file(spec_file));
    } catch (const json::exception& e) {
        throw Error(spec_file.string() + ": malformed: " + e.what());
    }
    json r;
    r["control"] = spec.arms[0].name;
    r["estimator"] =
        "Each run's accuracy is the mean over the held-out items of the item's mean over its "
        "samples; an arm's estimate is the mean over its seeds. The 95% intervals are "
        "two-stage percentile bootstraps (" +
        std::to_string(spec.resamples) +
        " replicates): seeds drawn with replacement, then items drawn with replacement (one "
        "draw for every seed), so they carry both the seed-to-seed spread and the item "
        "sampling. Differences against the control draw the items once for both arms (paired "
        "on items) and each arm's seeds on their own.";
    r["items"] = spec.eval_items;
    r["samples"] = spec.eval_samples;
    r["arms"] = json::array();
    std::vector<eval::ScoreRows> arm_runs;  // [arm][run][item]: item means
    std::vector<eval::ScoreRows> arm_pass;  // [arm][run][item]: the item's pass@K
    const int K = spec.eval_samples;
    std::vector<std::string> item_ids;
    for (const ArmSpec& arm : spec.arms) {
        json a = {{"name", arm.name},
                  {"preset", arm.preset.empty() ? spec.preset : arm.preset},
                  {"set", arm.set},
                  {"runs", json::array()}};
        eval::ScoreRows runs, pass;
        std::vector<double> accuracies;
        std::vector<std::vector<double>> curves;  // pass@k per run
        for (int64_t seed : spec.seeds) {
            const fs::path dir = run_dir(out, arm.name, seed);
            if (!fs::exists(dir / kEvalFile)) continue;
            const json e = read_json_file(dir / kEvalFile);
            std::vector<std::string> ids;
            eval::ScoreRows scores;
            try {
                ids = e.at("item_ids").get<std::vector<std::string>>();
                scores = rows_from_json(e.at("scores"));
            } catch (const json::exception& ex) {
                throw Error((dir / kEvalFile).string() + ": malformed: " + ex.what());
            }
            // A hand-edited or cut file must not reach the statistics: one row per item, every
            // score a number in [0, 1] or null (a failed verdict).
            if (scores.size() != ids.size()) {
                throw Error((dir / kEvalFile).string() +
                            ": malformed: " + std::to_string(scores.size()) + " score rows for " +
                            std::to_string(ids.size()) + " items");
            }
            for (const std::vector<double>& row : scores) {
                for (double v : row) {
                    if (!std::isnan(v) && !(v >= 0.0 && v <= 1.0)) {
                        throw Error((dir / kEvalFile).string() +
                                    ": malformed: a score outside [0, 1]");
                    }
                }
            }
            if (item_ids.empty()) item_ids = ids;
            if (ids != item_ids) {
                throw Error((dir / kEvalFile).string() +
                            ": evaluated on other items than the experiment's other runs");
            }
            const eval::Estimate acc = eval::mean_accuracy(scores);
            json curve = json::array();
            std::vector<double> pk;
            for (const eval::Estimate& p : eval::pass_at_k_curve(scores)) {
                curve.push_back(std::isnan(p.mean) ? json(nullptr) : json(p.mean));
                pk.push_back(p.mean);
            }
            a["runs"].push_back({{"seed", seed},
                                 {"accuracy", acc.mean},
                                 {"item_se", acc.se},
                                 {"pass_at_k", curve},
                                 {"accuracy_by_step", e.value("accuracy_by_step", json::array())},
                                 {"train_seconds", e.value("train_seconds", 0.0)},
                                 {"eval_seconds", e.value("eval_seconds", 0.0)},
                                 {"curves", read_curves(dir / "metrics.jsonl")}});
            runs.push_back(eval::item_means(scores));
            // Each item's unbiased pass@K (all K samples present; NaN otherwise).
            std::vector<double> item_pass;
            for (const std::vector<double>& row : scores) {
                int n = 0, c = 0;
                for (double v : row) {
                    if (std::isnan(v)) continue;
                    n++;
                    c += v >= 1.0;
                }
                item_pass.push_back(n >= K ? eval::pass_at_k_item(n, c, K) : NAN);
            }
            pass.push_back(std::move(item_pass));
            accuracies.push_back(acc.mean);
            curves.push_back(pk);
        }
        if (!runs.empty()) {
            a["mean"] = interval_json(
                eval::seeds_and_items_bootstrap(runs, spec.resamples, spec.bootstrap_seed));
            const double sd = eval::sample_sd(accuracies);
            a["seed_sd"] = std::isnan(sd) ? json(nullptr) : json(sd);
            json pk = json::array();
            size_t K = curves[0].size();
            for (const auto& c : curves) K = std::min(K, c.size());
            for (size_t k = 0; k < K; k++) {
                double sum = 0;
                for (const auto& c : curves) sum += c[k];
                pk.push_back(sum / curves.size());
            }
            a["pass_at_k"] = pk;
        }
        r["arms"].push_back(a);
        arm_runs.push_back(std::move(runs));
        arm_pass.push_back(std::move(pass));
    }
    // What was evaluated (a task with fewer held-out items than eval.items gives them all).
    if (!item_ids.empty()) r["items"] = item_ids.size();
    r["differences"] = json::array();
    for (size_t i = 1; i < spec.arms.size(); i++) {
        if (arm_runs[0].empty() || arm_runs[i].empty()) continue;
        const eval::BootstrapResult d = eval::seeds_and_items_bootstrap_diff(
            arm_runs[0], arm_runs[i], spec.resamples, spec.bootstrap_seed);
        const double mde = eval::minimum_detectable_difference(d.se);
        std::string verdict;
        if (d.interval.lo > 0) {
            verdict = "higher than the control";
        } else if (d.interval.hi < 0) {
            verdict = "lower than the control";
        } else {
            verdict = "no detectable difference (the interval holds 0; a true difference of " +
                      points(mde) + " points would be detected with 80% power)";
        }
        json row = {{"arm", spec.arms[i].name},           {"runs", arm_runs[i].size()},
                    {"control_runs", arm_runs[0].size()}, {"difference", interval_json(d)},
                    {"minimum_detectable", mde},          {"verdict", verdict}};
        // The same for pass@K: does the arm solve what the control solves at all, within K?
        if (K > 1) {
            json pk = interval_json(eval::seeds_and_items_bootstrap_diff(
                arm_pass[0], arm_pass[i], spec.resamples, spec.bootstrap_seed));
            pk["k"] = K;
            row["pass_at_k_difference"] = pk;
        }
        r["differences"].push_back(row);
    }
    return r;
}

void write_experiment_report(const fs::path& out) {
    const json r = experiment_results(out);
    write_file_durable(out / "results.json", r.dump(2) + "\n");
    write_file_durable(out / "report.html", report_html(r));
}

}  // namespace crucible::experiment
