#include "eval/results.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/json_fields.h"
#include "eval/rubric_metrics.h"
#include "eval/sample_store.h"
#include "reward/verify/math_answer.h"

namespace crucible::eval {

using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

json interval_json(const Interval& i) {
    return json::array({number_or_null(i.lo), number_or_null(i.hi)});
}
json estimate_json(const Estimate& e, double level) {
    return {{"mean", number_or_null(e.mean)},
            {"se", number_or_null(e.se)},
            {"ci", interval_json(normal_interval(e.mean, e.se, level))},
            {"n_items", e.n_items},
            {"n_excluded", e.n_excluded}};
}

// Answers the item's verifier finds equal get the first one's spelling (math only; the
// other kinds' extracted answers are already canonical strings).
void canonicalise(const std::string& verifier, std::vector<std::string>* answers) {
    if (verifier != "math") return;
    std::vector<std::string> reps;
    for (std::string& a : *answers) {
        if (a.empty()) continue;
        for (const std::string& r : reps) {
            if (r == a || math_answers_equal(r, a)) {
                a = r;
                break;
            }
        }
        if (std::find(reps.begin(), reps.end(), a) == reps.end()) reps.push_back(a);
    }
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

double or_nan(const json& j) {
    return j.is_number() ? j.get<double>() : kNaN;
}

// A stored rubric result, or nullopt when there is none (or it does not parse).
std::optional<reward::RubricResult> rubric_result(const std::string& text) {
    if (text.empty()) return std::nullopt;
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    try {
        return reward::RubricResult::from_json(j);
    } catch (const Error&) {
        return std::nullopt;
    }
}

json stats_setting(const std::map<std::string, std::string>& settings, const char* key) {
    const auto it = settings.find(key);
    if (it == settings.end()) return json::object();
    json j = json::parse(it->second, nullptr, false);
    return j.is_object() ? j : json::object();
}

// The "rubric" section of compute_results.
json rubric_section(const RunData& run, const ResultsOptions& options) {
    std::vector<reward::RubricItem> items;
    std::vector<std::vector<reward::RubricResult>> rows, rows_b;
    // Paired verdicts of the two judges: samples the run's judge scored and the second one too.
    std::vector<reward::RubricItem> pair_items;
    std::vector<reward::RubricResult> pair_a, pair_b;
    bool any_b = false;
    for (size_t i = 0; i < run.rubrics.size(); ++i) {
        if (!run.rubrics[i]) continue;
        items.push_back(*run.rubrics[i]);
        rows.emplace_back();
        rows_b.emplace_back();
        for (size_t j = 0; j < run.rubric_results[i].size(); ++j) {
            const auto& a = run.rubric_results[i][j];
            const auto& b = run.rubric_results_b[i][j];
            if (a) rows.back().push_back(*a);
            if (b) {
                any_b = true;
                rows_b.back().push_back(*b);
            }
            if (a && b && !a->failed) {
                pair_items.push_back(*run.rubrics[i]);
                pair_a.push_back(*a);
                pair_b.push_back(*b);
            }
        }
    }
    const reward::RubricReport report = reward::summarize_rubric_samples(
        items, rows, options.level, options.bootstrap, options.bootstrap_seed);
    json out = report.to_json();
    out["bootstrap_resamples"] = options.bootstrap;
    out["pass_at_k_counts"] = "samples with full credit (score 1)";
    out["judge"] = run.judge_stats;
    out["judge"]["endpoint"] = run.judge;
    if (any_b) {
        const reward::RubricReport report_b = reward::summarize_rubric_samples(
            items, rows_b, options.level, options.bootstrap, options.bootstrap_seed);
        out["judge_b"] = run.judge_b_stats;
        out["judge_b"]["endpoint"] = run.judge_b;
        out["judge_b_overall"] = report_b.overall.to_json();
        out["judge_b_n_failed_samples"] = report_b.n_failed_samples;
        out["agreement"] = reward::judge_agreement(pair_items, pair_a, pair_b).to_json();
        out["agreement"]["n_samples"] = pair_items.size();
    }
    return out;
}

}  // namespace

bool RunData::has_rubric() const {
    for (const auto& r : rubrics)
        if (r) return true;
    return false;
}

RunData load_run(const std::string& run_dir) {
    if (!std::filesystem::exists(std::filesystem::path(run_dir) / "samples.sqlite"))
        throw Error(run_dir + ": not an eval run (no samples.sqlite)");
    SampleStore store(run_dir);
    RunData run;
    run.dir = run_dir;
    const auto settings = store.settings();
    for (const auto& [key, value] : settings) {
        if (key != kJudgeStatsKey && key != kJudgeBStatsKey && key != "excluded")
            run.settings[key] = value;
    }
    if (auto it = settings.find("model"); it != settings.end()) run.model = it->second;
    if (auto it = settings.find("k"); it != settings.end()) run.k = std::stoi(it->second);
    if (auto it = settings.find("judge"); it != settings.end()) run.judge = it->second;
    if (auto it = settings.find("judge_b"); it != settings.end()) run.judge_b = it->second;
    run.judge_stats = stats_setting(settings, kJudgeStatsKey);
    run.judge_b_stats = stats_setting(settings, kJudgeBStatsKey);
    if (auto it = settings.find("excluded"); it != settings.end()) {
        const json j = json::parse(it->second, nullptr, false);
        if (j.is_array())
            for (const json& e : j) run.excluded.push_back(e.get<std::string>());
    }
    const std::vector<EvalItem> items = store.items();
    if (items.empty()) throw Error(store.path() + ": the run holds no items");
    std::map<std::string, size_t> row;
    for (const EvalItem& it : items) {
        row[it.id] = run.ids.size();
        run.ids.push_back(it.id);
        run.clusters.push_back(it.cluster);
        run.rubrics.push_back(it.rubric);
    }
    const size_t k = static_cast<size_t>(std::max(run.k, 1));
    run.scores.assign(items.size(), std::vector<double>(k, kNaN));
    run.answers.assign(items.size(), std::vector<std::string>(k));
    run.rubric_results.assign(items.size(), std::vector<std::optional<reward::RubricResult>>(k));
    run.rubric_results_b = run.rubric_results;
    for (const SampleRecord& s : store.samples()) {
        const auto it = row.find(s.item_id);
        if (it == row.end() || s.sample < 0 || static_cast<size_t>(s.sample) >= k) continue;
        if (run.rubrics[it->second]) {
            const auto j = static_cast<size_t>(s.sample);
            run.rubric_results[it->second][j] = rubric_result(s.rubric);
            if (s.error.empty())  // the second judge's verdict on a sample still stored
                run.rubric_results_b[it->second][j] = rubric_result(s.rubric_b);
        }
        if (!s.error.empty() || !s.score) {
            ++run.n_failed;
            if (run.failures.size() < 5)
                run.failures.push_back(s.item_id + "#" + std::to_string(s.sample) + ": " + s.error);
            continue;
        }
        run.scores[it->second][static_cast<size_t>(s.sample)] = *s.score;
        run.answers[it->second][static_cast<size_t>(s.sample)] = s.answer;
    }
    for (size_t i = 0; i < items.size(); ++i) canonicalise(items[i].verifier, &run.answers[i]);
    return run;
}

json compute_results(const RunData& run, const ResultsOptions& options) {
    const double level = options.level;
    const int k = std::max(run.k, 1);
    json out;
    out["run"] = run.dir;
    out["model"] = run.model;
    out["settings"] = run.settings;  // the mode (chat or raw, and why), sampling, data, env
    out["k"] = k;
    out["level"] = level;

    const std::vector<double> means = item_means(run.scores);
    const Estimate avg = mean_accuracy(run.scores);
    std::vector<double> flat;
    int64_t n_samples = 0;
    for (const auto& r : run.scores)
        for (double v : r)
            if (!std::isnan(v)) {
                flat.push_back(v);
                ++n_samples;
            }
    const Estimate clt = mean_with_se(flat);
    out["n_items"] = avg.n_items;
    out["n_items_without_samples"] = avg.n_excluded;
    out["n_samples"] = n_samples;
    out["n_failed_samples"] = run.n_failed;
    out["failures"] = run.failures;
    out["n_excluded_lines"] = run.excluded.size();
    out["excluded_lines"] = run.excluded;

    json a;
    a["mean"] = number_or_null(avg.mean);
    // The naive SE treats all n*K samples as independent; the item SE is the right one.
    a["se_clt_samples"] = number_or_null(clt.se);
    a["se_item"] = number_or_null(avg.se);
    a["ci_normal"] = interval_json(normal_interval(avg.mean, avg.se, level));
    // Small-n intervals on (sum of item means) successes out of n items.
    double successes = 0.0;
    for (double m : means)
        if (!std::isnan(m)) successes += m;
    const double n = avg.n_items;
    if (n > 0) {
        a["ci_wilson"] = interval_json(wilson_interval(successes, n, level));
        a["ci_beta_jeffreys"] = interval_json(jeffreys_interval(successes, n, level));
        // Clopper-Pearson is exact for a binomial count; rubric scores are not one.
        if (k == 1 && !run.has_rubric())
            a["ci_clopper_pearson"] = interval_json(clopper_pearson_interval(successes, n, level));
    }
    bool any_cluster = false;
    for (const auto& c : run.clusters) any_cluster = any_cluster || !c.empty();
    if (any_cluster) {
        std::vector<std::string> clusters = run.clusters;
        for (size_t i = 0; i < clusters.size(); ++i)
            if (clusters[i].empty()) clusters[i] = "\x01item:" + run.ids[i];  // its own cluster
        const Estimate c = mean_accuracy_clustered(run.scores, clusters, false);
        std::map<std::string, int> distinct;
        for (size_t i = 0; i < clusters.size(); ++i)
            if (!std::isnan(means[i])) distinct[clusters[i]]++;
        a["se_cluster"] = number_or_null(c.se);
        a["n_clusters"] = distinct.size();
        a["ci_cluster"] = interval_json(normal_interval(c.mean, c.se, level));
    }
    if (options.bootstrap > 0 && n > 0) {
        const BootstrapResult b =
            bootstrap_mean(means, options.bootstrap, options.bootstrap_seed, level);
        a["bootstrap"] = {{"resamples", options.bootstrap},
                          {"seed", options.bootstrap_seed},
                          {"se", number_or_null(b.se)},
                          {"ci", interval_json(b.interval)}};
    }
    json metrics;
    metrics["avg@" + std::to_string(k)] = a;
    // pass@k, pass^k, maj@K and the curve all stand on one item set: the items with all K
    // samples (K = the most any item has; failed samples make an item short). An item with
    // fewer would enter pass@1 and not pass@K, and the metrics would compare different items.
    const int kf = full_sample_count(run.scores);
    int n_short = 0;
    for (const auto& r : run.scores) {
        int present = 0;
        for (double v : r) present += std::isnan(v) ? 0 : 1;
        n_short += present > 0 && present < kf ? 1 : 0;
    }
    for (int kk = 1; kk <= kf; kk *= 2) {
        metrics["pass@" + std::to_string(kk)] =
            estimate_json(pass_at_k(run.scores, kk, 1.0, kf), level);
    }
    for (int kk = 1; kk <= kf; kk *= 2) {
        metrics["pass^" + std::to_string(kk)] =
            estimate_json(pass_hat_k(run.scores, kk, 1.0, kf), level);
    }
    if (!run.has_rubric()) {
        if (kf > 0)
            metrics["maj@" + std::to_string(kf)] =
                estimate_json(maj_at_k(run.answers, run.scores, kf), level);
    } else {
        out["metrics_omitted"] = {
            {"maj@" + std::to_string(k),
             "rubric samples have no extracted answer to vote on (an abstaining item would "
             "score 0)"}};
    }
    out["metrics"] = metrics;
    if (run.has_rubric()) out["rubric"] = rubric_section(run, options);

    // The whole pass@k curve (k = 1..K), for the report, on the same items.
    json curve = json::array();
    const std::vector<Estimate> points = pass_at_k_curve(run.scores);
    for (const Estimate& e : points) curve.push_back(number_or_null(e.mean));
    out["pass_at_k_curve"] = curve;
    out["pass_at_k_items"] = {
        {"k", kf}, {"n_items", points.empty() ? 0 : points.front().n_items}, {"n_short", n_short}};

    json items = json::array();
    for (size_t i = 0; i < run.ids.size(); ++i) {
        int present = 0, correct = 0;
        for (double v : run.scores[i]) {
            if (std::isnan(v)) continue;
            ++present;
            correct += v >= 1.0 ? 1 : 0;
        }
        items.push_back({{"id", run.ids[i]},
                         {"cluster", run.clusters[i]},
                         {"n", present},
                         {"correct", correct},
                         {"mean", number_or_null(means[i])}});
    }
    out["per_item"] = items;
    return out;
}

namespace {

// The rubric section of results_table.
std::string rubric_table(const json& rb, int pct_level) {
    auto pct = [](const json& v) {
        return v.is_number() ? fmt("%.2f", 100 * v.get<double>()) : "-";
    };
    auto iv = [&](const json& i) {
        if (!i.is_array() || i.size() != 2) return std::string("-");
        return "[" + pct(i[0]) + ", " + pct(i[1]) + "]";
    };
    char line[512];
    std::string s;
    std::snprintf(line, sizeof line,
                  "rubric: %d items (%d without a score), %d scored samples, %d failed\n",
                  rb.value("n_items", 0), rb.value("n_failed", 0), rb.value("n_samples", 0),
                  rb.value("n_failed_samples", 0));
    s += line;
    const auto row = [&](const std::string& name, const json& m, const std::string& note) {
        std::snprintf(line, sizeof line, "%-22s %8s %8s   %-22s %s\n", name.c_str(),
                      pct(m["mean"]).c_str(), pct(m["se"]).c_str(), iv(m["ci_normal"]).c_str(),
                      note.c_str());
        s += line;
    };
    std::snprintf(line, sizeof line, "%-22s %8s %8s   %-22s %s\n", "rubric score", "value", "SE",
                  (std::to_string(pct_level) + "% interval").c_str(), "note");
    s += line;
    row("mean", rb["overall"], "normal, SE clustered by item");
    if (rb["overall"]["ci_bootstrap"].is_array() && rb["overall"]["ci_bootstrap"][0].is_number()) {
        std::snprintf(line, sizeof line, "%-22s %8s %8s   %-22s %s\n", "", "", "",
                      iv(rb["overall"]["ci_bootstrap"]).c_str(), "bootstrap percentile");
        s += line;
    }
    std::snprintf(line, sizeof line, "%-22s %8s\n", "healthbench overall",
                  pct(rb["healthbench_overall"]).c_str());
    s += line;
    for (const auto& [tag, m] : rb["by_tag"].items())
        row("  " + tag, m, std::to_string(m.value("n", 0)) + " items");
    const auto judge_line = [&](const char* name, const json& j) {
        const std::string endpoint = j.value("endpoint", std::string());
        if (endpoint.empty()) {
            s += std::string(name) + ": none (programmatic criteria only)\n";
            return;
        }
        std::snprintf(line, sizeof line,
                      "%s %s: %lld requests, %lld cache hits, %lld failures, tokens %lld in / "
                      "%lld out, cost $%.4f\n",
                      name, endpoint.c_str(), (long long)j.value("judge_requests", int64_t{0}),
                      (long long)j.value("judge_cache_hits", int64_t{0}),
                      (long long)j.value("judge_failures", int64_t{0}),
                      (long long)j.value("judge_prompt_tokens", int64_t{0}),
                      (long long)j.value("judge_completion_tokens", int64_t{0}),
                      j.value("judge_cost_usd", 0.0));
        s += line;
    };
    judge_line("judge", rb["judge"]);
    if (rb.contains("judge_b")) {
        judge_line("judge B", rb["judge_b"]);
        row("judge B mean", rb["judge_b_overall"], "the same samples, second judge");
        const json& a = rb["agreement"];
        std::snprintf(
            line, sizeof line, "judge agreement: %s%% of %d criterion verdicts, Cohen's kappa %s\n",
            pct(a["percent_agreement"]).c_str(), a.value("n", 0),
            a["cohen_kappa"].is_number() ? fmt("%.3f", a["cohen_kappa"].get<double>()).c_str()
                                         : "-");
        s += line;
    }
    s += "pass@k / pass^k count rubric samples with full credit (score 1) as correct\n";
    return s;
}

}  // namespace

std::string results_table(const json& r) {
    const int pct_level = static_cast<int>(std::lround(r.value("level", 0.95) * 100));
    std::string s;
    s += "run " + r.value("run", std::string()) + "  (" + r.value("model", std::string()) + ")\n";
    s += "items " + std::to_string(r["n_items"].get<int>()) + ", K " +
         std::to_string(r["k"].get<int>()) + ", samples " +
         std::to_string(r["n_samples"].get<int64_t>()) + ", failed samples " +
         std::to_string(r["n_failed_samples"].get<int64_t>()) + ", excluded lines " +
         std::to_string(r["n_excluded_lines"].get<size_t>()) + "\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "metric", "value", "SE",
                  (std::to_string(pct_level) + "% interval").c_str(), "note");
    s += line;
    auto pct = [](const json& v) {
        return v.is_number() ? fmt("%.2f", 100 * v.get<double>()) : "-";
    };
    auto iv = [&](const json& i) {
        if (!i.is_array() || i.size() != 2) return std::string("-");
        return "[" + pct(i[0]) + ", " + pct(i[1]) + "]";
    };
    for (const auto& [name, m] : r["metrics"].items()) {
        if (name.rfind("avg@", 0) == 0) {
            std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", name.c_str(),
                          pct(m["mean"]).c_str(), pct(m["se_item"]).c_str(),
                          iv(m["ci_normal"]).c_str(), "normal, SE clustered by item");
            s += line;
            std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "", "",
                          pct(m["se_clt_samples"]).c_str(), "", "naive SE (samples iid)");
            s += line;
            if (m.contains("ci_wilson")) {
                std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "", "", "",
                              iv(m["ci_wilson"]).c_str(), "Wilson (items)");
                s += line;
                std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "", "", "",
                              iv(m["ci_beta_jeffreys"]).c_str(), "Beta posterior (Jeffreys)");
                s += line;
            }
            if (m.contains("se_cluster")) {
                std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "", "",
                              pct(m["se_cluster"]).c_str(), iv(m["ci_cluster"]).c_str(),
                              ("clustered by field (" + std::to_string(m["n_clusters"].get<int>()) +
                               " clusters)")
                                  .c_str());
                s += line;
            }
            if (m.contains("bootstrap")) {
                std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", "", "",
                              pct(m["bootstrap"]["se"]).c_str(), iv(m["bootstrap"]["ci"]).c_str(),
                              "bootstrap percentile");
                s += line;
            }
            continue;
        }
        std::snprintf(line, sizeof line, "%-12s %8s %8s   %-22s %s\n", name.c_str(),
                      pct(m["mean"]).c_str(), pct(m["se"]).c_str(), iv(m["ci"]).c_str(),
                      (std::to_string(m["n_items"].get<int>()) + " items").c_str());
        s += line;
    }
    if (r.contains("pass_at_k_items")) {
        const json& pk = r["pass_at_k_items"];
        const int n_short = pk.value("n_short", 0);
        s += "pass@k, pass^k, maj@" + std::to_string(pk.value("k", 0)) +
             " and the pass@k curve: " + std::to_string(pk.value("n_items", 0)) +
             " items with all " + std::to_string(pk.value("k", 0)) + " samples" +
             (n_short > 0 ? "; " + std::to_string(n_short) + " items with fewer left out" : "") +
             "\n";
    }
    if (r.contains("rubric")) s += rubric_table(r["rubric"], pct_level);
    s += "(values in %)\n";
    return s;
}

json compare_runs(const RunData& a, const RunData& b, const CompareOptions& options) {
    std::map<std::string, size_t> in_b;
    for (size_t i = 0; i < b.ids.size(); ++i) in_b[b.ids[i]] = i;
    ScoreRows ra, rb;
    std::vector<std::string> ids, clusters;
    bool any_cluster = false;
    for (size_t i = 0; i < a.ids.size(); ++i) {
        const auto it = in_b.find(a.ids[i]);
        if (it == in_b.end()) continue;
        ids.push_back(a.ids[i]);
        ra.push_back(a.scores[i]);
        rb.push_back(b.scores[it->second]);
        // The item's cluster as either run recorded it (a run evaluated without the cluster
        // field has none); two different ones mean the runs did not see the same dataset.
        const std::string& ca = i < a.clusters.size() ? a.clusters[i] : std::string();
        const std::string& cb =
            it->second < b.clusters.size() ? b.clusters[it->second] : std::string();
        if (!ca.empty() && !cb.empty() && ca != cb)
            throw Error("item '" + a.ids[i] + "' is in cluster '" + ca + "' in " + a.dir +
                        " but in '" + cb + "' in " + b.dir);
        clusters.push_back(ca.empty() ? cb : ca);
        any_cluster = any_cluster || !clusters.back().empty();
    }
    if (ids.empty()) throw Error(a.dir + " and " + b.dir + " share no item id");
    // A run with no scored sample on the shared items has no accuracy to compare.
    for (const auto& [run, rows] : {std::pair{&a, &ra}, std::pair{&b, &rb}}) {
        bool any = false;
        for (const auto& row : *rows)
            for (double v : row) any = any || !std::isnan(v);
        if (!any)
            throw Error(run->dir + ": no scored sample on the shared items (" +
                        std::to_string(run->n_failed) + " failed" +
                        (run->failures.empty() ? std::string() : "; first: " + run->failures[0]) +
                        "): nothing to compare");
    }
    // An item without a cluster is its own.
    for (size_t i = 0; i < clusters.size(); ++i)
        if (clusters[i].empty()) clusters[i] = "\x01item:" + ids[i];
    const std::vector<double> ma = item_means(ra), mb = item_means(rb);
    const PairedComparison pc = any_cluster
                                    ? compare_paired_clustered(ma, mb, clusters, options.level)
                                    : compare_paired(ma, mb, options.level);
    // The sign-flip test flips whole clusters: under H0 a cluster's summed difference is
    // symmetric about 0, but its items' differences are not independent of each other.
    std::vector<double> diffs;
    std::map<std::string, double> cluster_sum;
    int wins_a = 0, wins_b = 0, ties = 0;
    for (size_t i = 0; i < ma.size(); ++i) {
        if (std::isnan(ma[i]) || std::isnan(mb[i])) continue;
        const double d = ma[i] - mb[i];
        diffs.push_back(d);
        cluster_sum[clusters[i]] += d;
        (d > 0 ? wins_a : d < 0 ? wins_b : ties)++;
    }
    if (any_cluster) {
        diffs.clear();
        for (const auto& [c, d] : cluster_sum) diffs.push_back(d);
    }
    const double p_perm =
        diffs.empty() ? kNaN : sign_flip_p_value(diffs, options.permutations, options.seed);
    const PowerInputs pw = estimate_power_inputs(ra, rb);
    const double n = pc.n_items;
    // With clusters the power analysis sees n / deff effective items (Kish's design effect,
    // deff = (clustered SE / item SE)^2, at least 1), so its figures are not optimistic.
    double deff = 1.0;
    if (any_cluster && pc.se_items > 0.0 && std::isfinite(pc.se))
        deff = std::max(1.0, (pc.se / pc.se_items) * (pc.se / pc.se_items));
    const double n_eff = n / deff;
    json out;
    out["run_a"] = {
        {"dir", a.dir}, {"model", a.model}, {"k", a.k}, {"mean", number_or_null(pc.mean_a)}};
    out["run_b"] = {
        {"dir", b.dir}, {"model", b.model}, {"k", b.k}, {"mean", number_or_null(pc.mean_b)}};
    // Settings that differ between the runs: the difference below may be theirs.
    json differ = json::array();
    const auto setting = [](const RunData& r, const std::string& key) {
        const auto it = r.settings.find(key);
        return it == r.settings.end() ? std::string("(not recorded)") : it->second;
    };
    for (const char* key : kScoringSettings) {
        if (setting(a, key) != setting(b, key))
            differ.push_back({{"setting", key}, {"a", setting(a, key)}, {"b", setting(b, key)}});
    }
    for (const char* key : {"data", "data_hash"}) {  // the file, and what it held
        if (setting(a, key) != setting(b, key))
            differ.push_back({{"setting", key}, {"a", setting(a, key)}, {"b", setting(b, key)}});
    }
    out["settings_differ"] = differ;
    out["n_items"] = pc.n_items;
    out["n_only_in_a"] = a.ids.size() - ids.size();
    out["n_only_in_b"] = b.ids.size() - ids.size();
    out["level"] = options.level;
    out["diff"] = number_or_null(pc.diff);
    out["se"] = number_or_null(pc.se);
    // "items": sqrt(Var(d)/n); "clustered": clustered_se of d over n_clusters clusters.
    out["se_kind"] = any_cluster ? "clustered" : "items";
    if (any_cluster) {
        out["n_clusters"] = pc.n_clusters;
        out["se_items"] = number_or_null(pc.se_items);
    }
    out["unpaired_se"] = number_or_null(pc.unpaired_se);
    out["ci"] = interval_json(pc.interval);
    out["correlation"] = number_or_null(pc.correlation);
    out["t"] = number_or_null(pc.z);
    out["df"] = any_cluster ? pc.n_clusters - 1 : pc.n_items - 1;
    out["p_value_t"] = number_or_null(pc.p_value_t);
    out["p_value_z"] = number_or_null(pc.p_value);
    out["p_value_sign_flip"] = number_or_null(p_perm);
    out["sign_flip"] = {{"exact", diffs.size() <= 20},
                        {"resamples", diffs.size() <= 20 ? 0 : options.permutations},
                        {"seed", options.seed},
                        {"unit", any_cluster ? "cluster" : "item"}};
    out["wins_a"] = wins_a;
    out["wins_b"] = wins_b;
    out["ties"] = ties;
    out["power"] = {
        {"alpha", pw.alpha},
        {"power", pw.power},
        {"omega2", number_or_null(pw.omega2)},
        {"sigma2_a", number_or_null(pw.sigma2_a)},
        {"sigma2_b", number_or_null(pw.sigma2_b)},
        {"k_a", pw.k_a},
        {"k_b", pw.k_b},
        {"design_effect", deff},
        {"mde", n > 0 ? number_or_null(minimum_detectable_effect(pw, n_eff)) : json(nullptr)},
        {"delta", options.delta},
        {"items_needed", number_or_null(std::ceil(deff * items_needed(pw, options.delta)))},
        {"samples_needed",
         n > 0 ? number_or_null(std::max(1.0, std::ceil(samples_needed(pw, n_eff, options.delta))))
               : json(nullptr)}};
    return out;
}

std::string comparison_text(const json& c) {
    const int pct_level = static_cast<int>(std::lround(c.value("level", 0.95) * 100));
    auto pct = [](const json& v) {
        return v.is_number() ? fmt("%+.2f", 100 * v.get<double>()) : "-";
    };
    auto p = [](const json& v) { return v.is_number() ? fmt("%.4g", v.get<double>()) : "-"; };
    std::string s;
    std::string warning;
    if (c.contains("settings_differ") && !c["settings_differ"].empty()) {
        warning =
            "WARNING: the runs differ in settings that change what a score means, so the "
            "difference below may be theirs and not the models':\n";
        for (const json& d : c["settings_differ"])
            warning += "  " + d["setting"].get<std::string>() + ": A " + d["a"].get<std::string>() +
                       ", B " + d["b"].get<std::string>() + "\n";
    }
    s += warning;
    s += "A: " + c["run_a"]["dir"].get<std::string>() + "  avg " +
         fmt("%.2f%%", 100 * or_nan(c["run_a"]["mean"])) + "  (K " +
         std::to_string(c["run_a"]["k"].get<int>()) + ")\n";
    s += "B: " + c["run_b"]["dir"].get<std::string>() + "  avg " +
         fmt("%.2f%%", 100 * or_nan(c["run_b"]["mean"])) + "  (K " +
         std::to_string(c["run_b"]["k"].get<int>()) + ")\n";
    s += "paired items " + std::to_string(c["n_items"].get<int>()) + " (only in A " +
         std::to_string(c["n_only_in_a"].get<size_t>()) + ", only in B " +
         std::to_string(c["n_only_in_b"].get<size_t>()) + "); A better on " +
         std::to_string(c["wins_a"].get<int>()) + ", B better on " +
         std::to_string(c["wins_b"].get<int>()) + ", tied " + std::to_string(c["ties"].get<int>()) +
         "\n";
    const bool clustered = c.value("se_kind", std::string()) == "clustered";
    s += "A - B = " + pct(c["diff"]) + " pp, SE " + pct(c["se"]) +
         (clustered ? " clustered by field (" + std::to_string(c["n_clusters"].get<int>()) +
                          " clusters; over items " + pct(c["se_items"]) + ")"
                    : std::string()) +
         " (unpaired " + pct(c["unpaired_se"]) + "), " + std::to_string(pct_level) + "% CI [" +
         pct(c["ci"][0]) + ", " + pct(c["ci"][1]) + "], correlation " + p(c["correlation"]) + "\n";
    s += "p-values: paired t (df " + std::to_string(c["df"].get<int>()) + ") " + p(c["p_value_t"]) +
         ", normal " + p(c["p_value_z"]) + ", sign-flip permutation" +
         (clustered ? " of clusters " : " ") + p(c["p_value_sign_flip"]) +
         (c["sign_flip"]["exact"].get<bool>() ? " (exact)" : "") + "\n";
    const json& w = c["power"];
    s += "power (alpha " + p(w["alpha"]) + ", power " + p(w["power"]) + "): omega^2 " +
         p(w["omega2"]) + ", sigma^2 A " + p(w["sigma2_a"]) + " B " + p(w["sigma2_b"]) + "\n";
    if (w.value("design_effect", 1.0) > 1.0)
        s += "  clusters: design effect " + p(w["design_effect"]) +
             " (figures below use n / design effect items)\n";
    s += "  minimum detectable effect at n=" + std::to_string(c["n_items"].get<int>()) +
         ", K=" + std::to_string(w["k_a"].get<int>()) + "/" + std::to_string(w["k_b"].get<int>()) +
         ": " + fmt("%.2f", 100 * or_nan(w["mde"])) + " pp\n";
    s += "  to detect delta " + fmt("%.2f", 100 * or_nan(w["delta"])) +
         " pp: " + p(w["items_needed"]) + " items at this K, or " +
         (w["k_a"].get<int>() == 1 && w["k_b"].get<int>() == 1
              ? std::string("? samples per item at this n (with K = 1 the within-item variance "
                            "is unknown: run K >= 2)")
          : w["samples_needed"].is_number()
              ? p(w["samples_needed"]) + " samples per item at this n"
              : std::string("no K at this n (the between-item variance alone is too large)")) +
         "\n";
    if (!warning.empty()) s += "(see the WARNING above: the runs' settings differ)\n";
    return s;
}

}  // namespace crucible::eval
