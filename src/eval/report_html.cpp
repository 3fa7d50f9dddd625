#include "eval/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/svg_chart.h"

namespace crucible::eval {

using nlohmann::json;

namespace {

std::string f(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

double val(const json& j, double fallback = std::nan("")) {
    return j.is_number() ? j.get<double>() : fallback;
}

// A fraction as a percentage with two decimals, "-" when absent.
std::string pct(const json& v) {
    return v.is_number() ? f("%.2f", 100 * v.get<double>()) : std::string("-");
}

// An interval [lo, hi] in percent, "-" when absent.
std::string iv(const json& v) {
    return v.is_array() && v.size() == 2 ? "[" + pct(v[0]) + ", " + pct(v[1]) + "]"
                                         : std::string("-");
}

// A colour per run (Okabe-Ito, readable by colour-blind readers).
const char* run_colour(size_t i) {
    static const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                     "#E69F00", "#56B4E9", "#F0E442", "#000000"};
    return kColours[i % 8];
}

// Red (0) to yellow to green (1).
std::string heat(double v) {
    if (std::isnan(v)) return "#dddddd";
    v = std::clamp(v, 0.0, 1.0);
    const int r = v < 0.5 ? 215 : static_cast<int>(215 - (v - 0.5) * 2 * (215 - 26));
    const int g = v < 0.5 ? static_cast<int>(48 + v * 2 * (190 - 48))
                          : static_cast<int>(190 - (v - 0.5) * 2 * (190 - 150));
    const int b = v < 0.5 ? 39 : static_cast<int>(39 + (v - 0.5) * 2 * (80 - 39));
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
    return buf;
}

const json& avg_metric(const json& r) {
    return r["metrics"]["avg@" + std::to_string(r["k"].get<int>())];
}

std::string accuracy_chart(const std::vector<json>& runs) {
    const int bar = 48, gap = 32, left = 50, top = 20, h = 220;
    const int w = left + static_cast<int>(runs.size()) * (bar + gap) + gap;
    auto y = [&](double v) { return top + h - v * h; };
    std::string s = "<svg class=\"accuracy\" width=\"" + std::to_string(w) + "\" height=\"" +
                    std::to_string(top + h + 40) + "\" role=\"img\">\n";
    for (int t = 0; t <= 10; t += 2) {
        const double v = t / 10.0;
        s += "<line x1=\"" + std::to_string(left) + "\" x2=\"" + std::to_string(w) + "\" y1=\"" +
             f("%.1f", y(v)) + "\" y2=\"" + f("%.1f", y(v)) + "\" stroke=\"#eee\"/>";
        s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + f("%.1f", y(v) + 4) +
             "\" text-anchor=\"end\" font-size=\"11\">" + std::to_string(t * 10) + "%</text>\n";
    }
    for (size_t i = 0; i < runs.size(); ++i) {
        const json& a = avg_metric(runs[i]);
        const double m = val(a["mean"], 0.0);
        const double lo = val(a["ci_normal"][0], m), hi = val(a["ci_normal"][1], m);
        const int x = left + gap + static_cast<int>(i) * (bar + gap);
        s += "<rect x=\"" + std::to_string(x) + "\" y=\"" + f("%.1f", y(m)) + "\" width=\"" +
             std::to_string(bar) + "\" height=\"" + f("%.1f", m * h) + "\" fill=\"" +
             run_colour(i) + "\"><title>" + html_escape(runs[i]["run"].get<std::string>()) + ": " +
             f("%.2f%%", 100 * m) + " [" + f("%.2f", 100 * lo) + ", " + f("%.2f", 100 * hi) +
             "]</title></rect>\n";
        const int cx = x + bar / 2;
        s += "<g class=\"errorbar\" stroke=\"#222\" stroke-width=\"1.5\"><line x1=\"" +
             std::to_string(cx) + "\" x2=\"" + std::to_string(cx) + "\" y1=\"" +
             f("%.1f", y(std::clamp(lo, 0.0, 1.0))) + "\" y2=\"" +
             f("%.1f", y(std::clamp(hi, 0.0, 1.0))) + "\"/><line x1=\"" + std::to_string(cx - 8) +
             "\" x2=\"" + std::to_string(cx + 8) + "\" y1=\"" +
             f("%.1f", y(std::clamp(lo, 0.0, 1.0))) + "\" y2=\"" +
             f("%.1f", y(std::clamp(lo, 0.0, 1.0))) + "\"/><line x1=\"" + std::to_string(cx - 8) +
             "\" x2=\"" + std::to_string(cx + 8) + "\" y1=\"" +
             f("%.1f", y(std::clamp(hi, 0.0, 1.0))) + "\" y2=\"" +
             f("%.1f", y(std::clamp(hi, 0.0, 1.0))) + "\"/></g>\n";
        s += "<text x=\"" + std::to_string(cx) + "\" y=\"" + std::to_string(top + h + 16) +
             "\" text-anchor=\"middle\" font-size=\"12\">" + std::to_string(i + 1) + "</text>\n";
    }
    return s + "</svg>\n";
}

std::string heatmap(const std::vector<json>& runs) {
    std::vector<std::string> ids;
    std::map<std::string, size_t> row;
    std::vector<std::map<std::string, double>> cell(runs.size());
    for (size_t r = 0; r < runs.size(); ++r) {
        for (const json& it : runs[r]["per_item"]) {
            const std::string id = it["id"].get<std::string>();
            if (!row.count(id)) {
                row[id] = ids.size();
                ids.push_back(id);
            }
            cell[r][id] = val(it["mean"]);
        }
    }
    const int ch = ids.size() > 200 ? 4 : ids.size() > 60 ? 8 : 14, cw = 40, left = 130;
    const int h = static_cast<int>(ids.size()) * ch + 30;
    const int w = left + static_cast<int>(runs.size()) * cw + 10;
    std::string s = "<svg class=\"heatmap\" width=\"" + std::to_string(w) + "\" height=\"" +
                    std::to_string(h) + "\" role=\"img\">\n";
    for (size_t r = 0; r < runs.size(); ++r)
        s += "<text x=\"" + std::to_string(left + static_cast<int>(r) * cw + cw / 2) +
             "\" y=\"14\" text-anchor=\"middle\" font-size=\"12\">" + std::to_string(r + 1) +
             "</text>\n";
    for (size_t i = 0; i < ids.size(); ++i) {
        const int y = 20 + static_cast<int>(i) * ch;
        if (ch >= 14)
            s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(y + ch - 3) +
                 "\" text-anchor=\"end\" font-size=\"11\">" + html_escape(ids[i].substr(0, 20)) +
                 "</text>";
        for (size_t r = 0; r < runs.size(); ++r) {
            const auto it = cell[r].find(ids[i]);
            const double v = it == cell[r].end() ? std::nan("") : it->second;
            s += "<rect x=\"" + std::to_string(left + static_cast<int>(r) * cw) + "\" y=\"" +
                 std::to_string(y) + "\" width=\"" + std::to_string(cw - 2) + "\" height=\"" +
                 std::to_string(ch - 1) + "\" fill=\"" + heat(v) + "\"><title>" +
                 html_escape(ids[i]) + " / run " + std::to_string(r + 1) + ": " +
                 (std::isnan(v) ? std::string("no samples") : f("%.3f", v)) + "</title></rect>";
        }
        s += "\n";
    }
    return s + "</svg>\n";
}

std::string pass_curves(const std::vector<json>& runs) {
    int kmax = 1;
    for (const json& r : runs) kmax = std::max(kmax, static_cast<int>(r["pass_at_k_curve"].size()));
    const int left = 50, top = 20, w = 420, h = 220;
    const double lmax = std::max(1.0, std::log2(static_cast<double>(kmax)));
    auto x = [&](int k) { return left + std::log2(static_cast<double>(k)) / lmax * w; };
    auto y = [&](double v) { return top + h - v * h; };
    std::string s = "<svg class=\"passk\" width=\"" + std::to_string(left + w + 30) +
                    "\" height=\"" + std::to_string(top + h + 40) + "\" role=\"img\">\n";
    for (int t = 0; t <= 10; t += 2) {
        s += "<line x1=\"" + std::to_string(left) + "\" x2=\"" + std::to_string(left + w) +
             "\" y1=\"" + f("%.1f", y(t / 10.0)) + "\" y2=\"" + f("%.1f", y(t / 10.0)) +
             "\" stroke=\"#eee\"/><text x=\"" + std::to_string(left - 6) + "\" y=\"" +
             f("%.1f", y(t / 10.0) + 4) + "\" text-anchor=\"end\" font-size=\"11\">" +
             std::to_string(t * 10) + "%</text>\n";
    }
    for (int k = 1; k <= kmax; k *= 2)
        s += "<text x=\"" + f("%.1f", x(k)) + "\" y=\"" + std::to_string(top + h + 16) +
             "\" text-anchor=\"middle\" font-size=\"11\">" + std::to_string(k) + "</text>\n";
    s += "<text x=\"" + std::to_string(left + w / 2) + "\" y=\"" + std::to_string(top + h + 34) +
         "\" text-anchor=\"middle\" font-size=\"12\">k (log scale)</text>\n";
    for (size_t r = 0; r < runs.size(); ++r) {
        std::string pts;
        const json& c = runs[r]["pass_at_k_curve"];
        for (size_t k = 1; k <= c.size(); ++k) {
            const double v = val(c[k - 1]);
            if (std::isnan(v)) continue;
            pts += f("%.1f", x(static_cast<int>(k))) + "," + f("%.1f", y(v)) + " ";
        }
        s += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + std::string(run_colour(r)) +
             "\" points=\"" + pts + "\"><title>run " + std::to_string(r + 1) +
             "</title></polyline>\n";
    }
    return s + "</svg>\n";
}

// The rubric scores of the runs that have rubric items (docs/EVALUATION.md): the mean score
// with its item-clustered SE and interval, HealthBench's overall, the judges' bills and
// agreement, then the score per tag, one column per run. Empty when no run has rubric items.
std::string rubric_panel(const std::vector<json>& runs) {
    auto count = [](const json& j, const char* key) {
        return std::to_string(j.value(key, int64_t{0}));
    };
    auto judge = [&](const json& j) {
        const std::string endpoint = j.value("endpoint", std::string());
        if (endpoint.empty()) return std::string("none (programmatic criteria only)");
        return html_escape(endpoint) + ": " + count(j, "judge_requests") + " requests, " +
               count(j, "judge_cache_hits") + " cache hits, " + count(j, "judge_failures") +
               " failures, $" + f("%.4f", j.value("judge_cost_usd", 0.0));
    };
    std::vector<size_t> with;
    std::map<std::string, bool> tags;
    for (size_t i = 0; i < runs.size(); ++i) {
        if (!runs[i].contains("rubric")) continue;
        with.push_back(i);
        for (const auto& [tag, m] : runs[i]["rubric"]["by_tag"].items()) tags[tag] = true;
    }
    if (with.empty()) return "";
    std::string s =
        "<h2>Rubric scores</h2>\n<p>Mean of the samples' rubric scores (each in [0, 1]), SE "
        "clustered by item. HealthBench overall: the items' mean unclipped ratio, clipped to "
        "[0, 1] once. Values in %.</p>\n<table class=\"rubric\">\n<tr><th>#</th><th>mean</th>"
        "<th>SE</th><th>95% CI</th><th>HealthBench overall</th><th>scored samples</th>"
        "<th>failed</th><th class=\"l\">judge</th></tr>\n";
    for (size_t i : with) {
        const json& rb = runs[i]["rubric"];
        s += "<tr><td>" + std::to_string(i + 1) + "</td><td>" + pct(rb["overall"]["mean"]) +
             "</td><td>" + pct(rb["overall"]["se"]) + "</td><td>" + iv(rb["overall"]["ci_normal"]) +
             "</td><td>" + pct(rb["healthbench_overall"]) + "</td><td>" + count(rb, "n_samples") +
             "</td><td>" + count(rb, "n_failed_samples") + "</td><td class=\"l\">" +
             judge(rb["judge"]);
        if (rb.contains("judge_b")) {
            const json& a = rb["agreement"];
            s += "<br>judge B " + judge(rb["judge_b"]) + "; its mean " +
                 pct(rb["judge_b_overall"]["mean"]) + "; agreement " + pct(a["percent_agreement"]) +
                 "% of " + count(a, "n") + " verdicts, Cohen's kappa " +
                 (a["cohen_kappa"].is_number() ? f("%.3f", a["cohen_kappa"].get<double>())
                                               : std::string("-"));
        }
        s += "</td></tr>\n";
    }
    s += "</table>\n";
    if (tags.empty()) return s;
    s += "<p>Per tag (criterion tags such as <code>axis:</code> and example tags such as "
         "<code>theme:</code>): mean &plusmn; SE over the items that carry the tag.</p>\n"
         "<table class=\"rubric-tags\">\n<tr><th class=\"l\">tag</th>";
    for (size_t i : with) s += "<th>run " + std::to_string(i + 1) + "</th>";
    s += "</tr>\n";
    for (const auto& [tag, unused] : tags) {
        s += "<tr><td class=\"l\">" + html_escape(tag) + "</td>";
        for (size_t i : with) {
            const json& by_tag = runs[i]["rubric"]["by_tag"];
            if (!by_tag.contains(tag)) {
                s += "<td>-</td>";
                continue;
            }
            const json& m = by_tag[tag];
            s += "<td>" + pct(m["mean"]) +
                 (m["se"].is_number() ? " &plusmn; " + pct(m["se"]) : std::string()) + " (" +
                 count(m, "n") + ")</td>";
        }
        s += "</tr>\n";
    }
    return s + "</table>\n";
}

}  // namespace

std::string report_html(const std::vector<json>& runs) {
    std::string s =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>crucible eval report</title>\n<style>\n"
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:right}td.l,th.l{text-align:left}"
        ".swatch{display:inline-block;width:12px;height:12px;margin-right:6px}\n"
        "</style>\n</head>\n<body>\n<h1>Eval report</h1>\n";
    s += "<h2>Runs</h2>\n<table class=\"runs\">\n<tr><th>#</th><th class=\"l\">run</th>"
         "<th class=\"l\">model</th><th>items</th><th>K</th><th>avg@K</th><th>95% CI "
         "(item SE)</th><th>Wilson</th><th>failed samples</th><th>excluded lines</th></tr>\n";
    for (size_t i = 0; i < runs.size(); ++i) {
        const json& r = runs[i];
        const json& a = avg_metric(r);
        s += "<tr><td><span class=\"swatch\" style=\"background:" + std::string(run_colour(i)) +
             "\"></span>" + std::to_string(i + 1) + "</td><td class=\"l\">" +
             html_escape(r["run"].get<std::string>()) + "</td><td class=\"l\">" +
             html_escape(r.value("model", std::string())) + "</td><td>" +
             std::to_string(r["n_items"].get<int>()) + "</td><td>" +
             std::to_string(r["k"].get<int>()) + "</td><td>" + pct(a["mean"]) + "%</td><td>" +
             iv(a["ci_normal"]) + "</td><td>" + iv(a.value("ci_wilson", json())) + "</td><td>" +
             std::to_string(r["n_failed_samples"].get<int64_t>()) + "</td><td>" +
             std::to_string(r["n_excluded_lines"].get<size_t>()) + "</td></tr>\n";
    }
    s += "</table>\n";
    s += "<h2>Accuracy (avg@K) with 95% intervals</h2>\n"
         "<p>Bars: avg@K; whiskers: mean &plusmn; 1.96 SE with the SE taken over items (the "
         "K samples of an item are clustered in it).</p>\n";
    s += accuracy_chart(runs);
    s += "<h2>Per-item accuracy</h2>\n<p>Rows: items; columns: runs; colour: the item's mean "
         "score over its samples (red 0, green 1, grey no sample).</p>\n";
    s += heatmap(runs);
    s += "<h2>pass@k</h2>\n<p>Unbiased estimator (Chen et al. 2021) for k = 1..K, each run's "
         "curve on one item set: its items with all K samples.";
    for (size_t r = 0; r < runs.size(); ++r) {
        if (!runs[r].contains("pass_at_k_items")) continue;
        const json& pk = runs[r]["pass_at_k_items"];
        s += " Run " + std::to_string(r + 1) + ": " + std::to_string(pk.value("n_items", 0)) +
             " items with " + std::to_string(pk.value("k", 0)) + " samples";
        const int n_short = pk.value("n_short", 0);
        if (n_short > 0) s += ", " + std::to_string(n_short) + " with fewer left out";
        s += ".";
    }
    s += "</p>\n";
    s += pass_curves(runs);
    s += rubric_panel(runs);
    s += "</body>\n</html>\n";
    return s;
}

}  // namespace crucible::eval
