#include "demo/demo.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <ostream>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/jsonl.h"
#include "core/svg_chart.h"
#include "eval/statistics.h"
#include "model/checkpoint.h"
#include "rl/evaluate.h"
#include "rl/presets.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "run/run_folder.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible::rl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Whether `dir` holds a run to continue (its config and at least one checkpoint).
bool can_resume(const fs::path& dir) {
    return fs::exists(dir / "config.yaml") && latest_checkpoint(dir / "checkpoints") >= 0;
}

struct Scored {
    eval::Estimate avg;        // avg@K with the item-clustered SE
    eval::Interval ci;         // 95% normal interval of avg@K
    eval::Estimate pass_k;     // pass@K
    double greedy = 0.0;       // greedy accuracy
    eval::Interval greedy_ci;  // Wilson 95%
    std::vector<double> per_item;
    eval::ScoreRows rows;
};

Scored score(Model& model, const TextTokenizer& tok, const Task& task, int problems, int samples,
             int max_new, uint64_t seed) {
    const std::vector<TaskItem> items(
        task.eval.begin(), task.eval.begin() + std::min<size_t>(problems, task.eval.size()));
    SamplingParams sampled;
    sampled.temperature = 1.0f;
    sampled.max_tokens = max_new;
    SamplingParams greedy = sampled;
    greedy.temperature = 0.0f;
    Scored s;
    s.rows = evaluate_task(model, tok, task, items, samples, sampled, seed).scores;
    s.avg = eval::mean_accuracy(s.rows);
    s.ci = eval::normal_interval(s.avg.mean, s.avg.se);
    s.pass_k = eval::pass_at_k(s.rows, samples);
    s.per_item = eval::item_means(s.rows);
    const TaskEvaluation g = evaluate_task(model, tok, task, items, 1, greedy, seed);
    double correct = 0;
    for (const auto& row : g.scores) correct += row[0];
    s.greedy = correct / static_cast<double>(g.scores.size());
    s.greedy_ci = eval::wilson_interval(correct, static_cast<double>(g.scores.size()));
    return s;
}

std::string pct(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v);
    return buf;
}

void write_report(const fs::path& out, const json& results, const fs::path& metrics_file,
                  const fs::path& sft_metrics_file, int during_samples) {
    // Two accuracy series, each named by its avg@K: the trainer's periodic held-out score
    // (train.eval_samples) and the demo's own before/after score (its --samples).
    const int K = results.value("samples", 0);
    ChartSeries reward{"train reward (mean)", {}, {}};
    ChartSeries acc{"held-out avg@" + std::to_string(during_samples) + " during RL", {}, {}};
    ChartSeries ends{"held-out avg@" + std::to_string(K) + " before / after RL", {}, {}};
    ChartSeries len{"response length (tokens)", {}, {}}, entropy{"entropy (nats)", {}, {}};
    ChartSeries clip_high{"clip fraction high", {}, {}}, clip_low{"clip fraction low", {}, {}};
    ChartSeries sft_loss{"SFT loss", {}, {}}, sft_grad{"SFT grad norm", {}, {}};
    ChartSeries rl_loss{"RL loss", {}, {}}, rl_grad{"RL grad norm", {}, {}};
    ChartSeries rl_lr{"RL learning rate", {}, {}}, rl_kl{"KL to the reference", {}, {}};
    // The point (step, m[key]) of a series; `present` skips lines that lack the key.
    const auto add = [](ChartSeries& c, double step, const json& m, const char* key,
                        bool present = false) {
        if (present && !m.contains(key)) return;
        c.x.push_back(step);
        c.y.push_back(m.value(key, NAN));
    };
    for_each_jsonl_log_record(sft_metrics_file.string(), [&](const JsonlLine&, const json& m) {
        if (!m.contains("step")) return;
        const double step = m.value("step", 0.0);
        add(sft_loss, step, m, "loss");
        add(sft_grad, step, m, "grad_norm");
    });
    for_each_jsonl_log_record(metrics_file.string(), [&](const JsonlLine&, const json& m) {
        const double step = m.value("step", 0.0);
        add(rl_loss, step, m, "loss");
        add(rl_grad, step, m, "grad_norm");
        add(rl_lr, step, m, "lr");
        add(rl_kl, step, m, "kl", true);
        add(reward, step, m, "reward_mean");
        add(len, step, m, "response_length_mean");
        add(entropy, step, m, "entropy");
        add(clip_high, step, m, "clip_frac_high");
        add(clip_low, step, m, "clip_frac_low");
        add(acc, step, m, "eval_accuracy", true);
    });
    if (results.contains("before")) {  // step 0: the SFT model; the last step: after RL
        ends.x = {0.0, static_cast<double>(results.value("rl_steps", 0))};
        ends.y = {results["before"].get<double>(), results["after"].get<double>()};
    }
    auto row = [](const std::string& name, const std::string& before, const std::string& after) {
        return "<tr><td>" + html_escape(name) + "</td><td>" + before + "</td><td>" + after +
               "</td></tr>\n";
    };
    auto ci = [](const json& j) {
        std::string text = "[";  // appended piecewise: GCC 12 warns on "[" + std::string
        text += pct(j[0].get<double>());
        text += ", ";
        text += pct(j[1].get<double>());
        return text + "]";
    };
    std::string html =
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Crucible demo</title>\n"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto}table{border-"
        "collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "</style></head><body>\n<h1>Crucible demo: SFT, then GRPO (DAPO preset)</h1>\n";
    html += "<p>" + html_escape(results.value("task", "")) + ": " +
            std::to_string(results.value("problems", 0)) + " held-out problems, " +
            std::to_string(results.value("samples", 0)) +
            " samples each at temperature 1; intervals are 95%, standard errors clustered by "
            "problem; the p-value is a paired t-test over problems.</p>\n<table>\n"
            "<tr><th></th><th>before RL</th><th>after RL</th></tr>\n";
    html += row("accuracy (avg@K)", pct(results["before"]), pct(results["after"]));
    html += row("95% interval", ci(results["ci_before"]), ci(results["ci_after"]));
    html += row("pass@K", pct(results["pass_at_k_before"]), pct(results["pass_at_k_after"]));
    html += row("greedy accuracy", pct(results["greedy_before"]), pct(results["greedy_after"]));
    html += "</table>\n<p>Difference " + pct(results["difference"]) +
            ", paired p = " + html_escape(std::to_string(results["p_value"].get<double>())) +
            "; sign-flip permutation p = " +
            html_escape(std::to_string(results["p_value_permutation"].get<double>())) +
            "; the smallest difference this setup detects (80% power, alpha 0.05): " +
            pct(results["minimum_detectable_effect"]) + ".</p>\n";
    html += svg_line_chart("Reward during RL", {reward}, "RL step", "reward");
    html += svg_line_chart("Held-out accuracy (fully correct samples)", {acc, ends}, "RL step",
                           "accuracy");
    html += svg_line_chart("Response length", {len}, "RL step", "tokens");
    html += svg_line_chart("Policy entropy", {entropy}, "RL step", "nats");
    html += svg_line_chart("Clipped tokens", {clip_low, clip_high}, "RL step", "fraction");
    html += svg_line_chart("SFT loss", {sft_loss}, "SFT step", "loss (nats per token)");
    html += svg_line_chart("SFT grad norm", {sft_grad}, "SFT step", "norm (before clipping)");
    html += svg_line_chart("RL loss", {rl_loss}, "RL step", "loss");
    html += svg_line_chart("RL grad norm", {rl_grad}, "RL step", "norm (before clipping)");
    html += svg_line_chart("RL learning rate", {rl_lr}, "RL step", "lr");
    if (!rl_kl.x.empty())
        html += svg_line_chart("KL to the reference model", {rl_kl}, "RL step", "nats per token");
    else
        html += "<p>KL: not computed (the DAPO preset has no KL term, algorithm.kl_beta 0).</p>\n";
    html += "<p>Every metric of both runs, overlaid: <code>crucible report " +
            html_escape((out.parent_path() / "sft").string()) + " " +
            html_escape((out.parent_path() / "rl").string()) + "</code>.</p>\n";
    html += "\n</body></html>\n";
    write_file_durable(out, html);
}

}  // namespace

json run_demo(const DemoOptions& o, std::ostream& log) {
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path out(o.out_dir);
    fs::create_directories(out);
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };

    // 1. SFT warm start.
    log << "== 1/4 SFT: the default model on the built-in Countdown task (" << o.sft_steps
        << " steps)\n";
    Config sft(kSftConfigDefaults);
    sft.set("run.dir=" + out.string());
    sft.set("run.name=sft");
    sft.set("seed=" + std::to_string(o.seed));
    sft.set("train.steps=" + std::to_string(o.sft_steps));
    sft.set("train.checkpoint_every=" + std::to_string(std::max<int64_t>(o.sft_steps / 4, 1)));
    sft.set("train.eval_every=0");
    sft.set("train.eval_generate=0");  // the demo scores the held-out problems itself
    sft.set("train.log_every=100");
    for (const std::string& s : o.sft_overrides) sft.set(s);
    fs::path sft_final;
    {
        SftTrainer trainer(sft, can_resume(out / "sft"), log);
        trainer.run();
        sft_final = trainer.checkpoint_dir(trainer.step());
    }
    const double t_sft = elapsed();

    // 2. The RL config (the DAPO preset, compiled in) and the held-out score before RL.
    Config rl(kRlConfigDefaults);
    rl.merge_text(rl_preset("dapo"), "preset dapo");
    rl.set("run.dir=" + out.string());
    rl.set("run.name=rl");
    rl.set("seed=" + std::to_string(o.seed));
    rl.set("model.path=" + sft_final.string());
    rl.set("train.steps=" + std::to_string(o.rl_steps));
    rl.set("train.eval_every=" + std::to_string(std::max<int64_t>(o.rl_steps / 6, 1)));
    rl.set("train.checkpoint_every=" + std::to_string(std::max<int64_t>(o.rl_steps / 4, 1)));
    for (const std::string& s : o.rl_overrides) rl.set(s);
    const int max_new = static_cast<int>(rl.get_int("rollout.max_new_tokens"));
    const uint64_t eval_seed = Rng::mix(o.seed, 0xDE30);

    log << "== 2/4 scoring " << o.eval_problems << " held-out problems x " << o.eval_samples
        << " samples before RL\n";
    const TextTokenizer tok = load_text_tokenizer(sft_final);
    Task task = load_task(rl, tok);
    limit_verdict_time(task, rl.get_double("rewards.verifier_timeout_s"),
                       "rewards.verifier_timeout_s");
    Scored before;
    {
        auto model = load_model(sft_final);
        before = score(*model, tok, task, o.eval_problems, o.eval_samples, max_new, eval_seed);
    }
    log << "   accuracy " << pct(before.avg.mean) << " [" << pct(before.ci.lo) << ", "
        << pct(before.ci.hi) << "], pass@" << o.eval_samples << " " << pct(before.pass_k.mean)
        << ", greedy " << pct(before.greedy) << "\n";
    const double t_before = elapsed();

    // 3. RL.
    log << "== 3/4 RL: GRPO with the DAPO preset (" << o.rl_steps << " steps)\n";
    Scored after;
    {
        RlTrainer trainer(rl, can_resume(out / "rl"), log);
        trainer.run();
        const double t_rl = elapsed();
        log << "== 4/4 scoring the same problems after RL\n";
        after =
            score(trainer.model(), tok, task, o.eval_problems, o.eval_samples, max_new, eval_seed);
        (void)t_rl;
    }
    log << "   accuracy " << pct(after.avg.mean) << " [" << pct(after.ci.lo) << ", "
        << pct(after.ci.hi) << "], pass@" << o.eval_samples << " " << pct(after.pass_k.mean)
        << ", greedy " << pct(after.greedy) << "\n";

    // 4. Paired comparison over problems and the power of this setup.
    const eval::PairedComparison cmp = eval::compare_paired(after.per_item, before.per_item);
    std::vector<double> diffs(after.per_item.size());
    for (size_t i = 0; i < diffs.size(); i++) diffs[i] = after.per_item[i] - before.per_item[i];
    const double p_perm = eval::sign_flip_p_value(diffs, 20000, Rng::mix(o.seed, 0x9E27));
    const eval::PowerInputs power = eval::estimate_power_inputs(after.rows, before.rows);
    const double mde = eval::minimum_detectable_effect(power, static_cast<double>(diffs.size()));
    const double seconds = elapsed();
    json results = {
        {"task", "countdown_lite"},
        {"problems", static_cast<int>(diffs.size())},
        {"samples", o.eval_samples},
        {"before", before.avg.mean},
        {"after", after.avg.mean},
        {"se_before", before.avg.se},
        {"se_after", after.avg.se},
        {"ci_before", {before.ci.lo, before.ci.hi}},
        {"ci_after", {after.ci.lo, after.ci.hi}},
        {"difference", cmp.diff},
        {"ci_difference", {cmp.interval.lo, cmp.interval.hi}},
        {"p_value", cmp.p_value_t},
        {"p_value_permutation", p_perm},
        {"minimum_detectable_effect", mde},
        {"pass_at_k_before", before.pass_k.mean},
        {"pass_at_k_after", after.pass_k.mean},
        {"greedy_before", before.greedy},
        {"greedy_after", after.greedy},
        {"greedy_ci_before", {before.greedy_ci.lo, before.greedy_ci.hi}},
        {"greedy_ci_after", {after.greedy_ci.lo, after.greedy_ci.hi}},
        {"sft_steps", o.sft_steps},
        {"rl_steps", o.rl_steps},
        {"seconds", seconds},
        {"seconds_sft", t_sft},
        {"seconds_eval_before", t_before - t_sft},
        {"seconds_rl_and_eval_after", seconds - t_before},
    };
    write_file_durable(out / "results.json", results.dump(2) + "\n");
    write_report(out / "report.html", results, out / "rl" / "metrics.jsonl",
                 out / "sft" / "metrics.jsonl", static_cast<int>(rl.get_int("train.eval_samples")));
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "\nheld-out accuracy (%d problems x %d samples): before RL %s [%s, %s] -> after "
                  "RL %s [%s, %s]\ndifference %+.1f points, paired t-test p = %.2g (sign-flip "
                  "permutation p = %.2g); detectable difference at this size: %.1f points\n",
                  static_cast<int>(diffs.size()), o.eval_samples, pct(before.avg.mean).c_str(),
                  pct(before.ci.lo).c_str(), pct(before.ci.hi).c_str(), pct(after.avg.mean).c_str(),
                  pct(after.ci.lo).c_str(), pct(after.ci.hi).c_str(), 100.0 * cmp.diff,
                  cmp.p_value_t, p_perm, 100.0 * mde);
    log << buf << "wrote " << (out / "results.json").string() << " and "
        << (out / "report.html").string() << " in " << format_duration(seconds) << "\n";
    return results;
}

}  // namespace crucible::rl
