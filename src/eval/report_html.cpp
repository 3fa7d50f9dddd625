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

// The runs' names: each folder's name, with its parent's when two runs share one.
std::vector<std::string> run_names(const std::vector<json>& runs) {
    std::vector<std::string> names;
    const auto last = [](const std::string& path, int parts) {
        std::string p = path;
        while (p.size() > 1 && p.back() == '/') p.pop_back();
        size_t at = p.size();
        for (int i = 0; i < parts && at != std::string::npos && at > 0; i++)
            at = p.rfind('/', at - 1);
        return at == std::string::npos ? p : p.substr(at + 1);
    };
    for (const json& r : runs) names.push_back(last(r.value("run", std::string("run")), 1));
    std::vector<std::string> out = names;
    for (size_t i = 0; i < runs.size(); i++)
        if (std::count(names.begin(), names.end(), names[i]) > 1)
            out[i] = last(runs[i].value("run", std::string("run")), 2);
    names = out;
    return names;
}

// A proportion's interval in percent, clipped to [0, 1] (a normal interval can pass the
// ends; a proportion cannot).
std::string iv01(const json& v) {
    if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
        return std::string("-");
    return "[" + pct(std::clamp(v[0].get<double>(), 0.0, 1.0)) + ", " +
           pct(std::clamp(v[1].get<double>(), 0.0, 1.0)) + "]";
}

const json& avg_metric(const json& r) {
    return r["metrics"]["avg@" + std::to_string(r["k"].get<int>())];
}

std::string accuracy_chart(const std::vector<json>& runs, const std::vector<std::string>& names) {
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
             "\" text-anchor=\"middle\" font-size=\"12\">" + html_escape(names[i].substr(0, 12)) +
             "</text>\n";
    }
    s += "<text x=\"14\" y=\"" + std::to_string(top + h / 2) +
         "\" font-size=\"12\" transform=\"rotate(-90 14 " + std::to_string(top + h / 2) +
         ")\" text-anchor=\"middle\">avg@K</text>\n";
    return s + "</svg>\n";
}

std::string heatmap(const std::vector<json>& runs, const std::vector<std::string>& names) {
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
    const int ch = ids.size() > 200 ? 4 : ids.size() > 60 ? 8 : 14, cw = 80, left = 130;
    // Tall enough for the items and for the colour scale beside them.
    const int h = std::max(static_cast<int>(ids.size()) * ch + 30, 180);
    const int w = left + static_cast<int>(runs.size()) * cw + 10 + 90;  // + the colour scale
    std::string s = "<svg class=\"heatmap\" width=\"" + std::to_string(w) + "\" height=\"" +
                    std::to_string(h) + "\" role=\"img\">\n";
    for (size_t r = 0; r < runs.size(); ++r)
        s += "<text x=\"" + std::to_string(left + static_cast<int>(r) * cw + cw / 2) +
             "\" y=\"14\" text-anchor=\"middle\" font-size=\"11\">" +
             html_escape(names[r].substr(0, 12)) + "</text>\n";
    // The colour scale: the item's mean score, 0 to 1, and grey for no sample.
    const int sx = left + static_cast<int>(runs.size()) * cw + 20;
    s += "<g class=\"scale\">";
    for (int k = 0; k <= 10; k++) {
        s += "<rect x=\"" + std::to_string(sx) + "\" y=\"" + std::to_string(20 + (10 - k) * 12) +
             "\" width=\"14\" height=\"12\" fill=\"" + heat(k / 10.0) + "\"/>";
    }
    for (int k = 0; k <= 10; k += 5)
        s += "<text x=\"" + std::to_string(sx + 18) + "\" y=\"" +
             std::to_string(20 + (10 - k) * 12 + 10) + "\" font-size=\"10\">" +
             f("%.1f", k / 10.0) + "</text>";
    s += "<rect x=\"" + std::to_string(sx) + "\" y=\"160\" width=\"14\" height=\"12\" fill=\"" +
         heat(std::nan("")) + "\"/><text x=\"" + std::to_string(sx + 18) +
         "\" y=\"170\" font-size=\"10\">none</text></g>\n";
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
                 html_escape(ids[i]) + " / " + html_escape(names[r]) + ": " +
                 (std::isnan(v) ? std::string("no samples") : f("%.3f", v)) + "</title></rect>";
        }
        s += "\n";
    }
    return s + "</svg>\n";
}

std::string pass_curves(const std::vector<json>& runs, const std::vector<std::string>& names) {
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
             "\" points=\"" + pts + "\"><title>" + html_escape(names[r]) + "</title></polyline>\n";
        // The legend, top left.
        const int ly = top + 14 + static_cast<int>(r) * 16;
        s += "<line x1=\"" + std::to_string(left + 10) + "\" x2=\"" + std::to_string(left + 30) +
             "\" y1=\"" + std::to_string(ly - 4) + "\" y2=\"" + std::to_string(ly - 4) +
             "\" stroke-width=\"2\" stroke=\"" + std::string(run_colour(r)) + "\"/><text x=\"" +
             std::to_string(left + 36) + "\" y=\"" + std::to_string(ly) +
             "\" font-size=\"11\" class=\"legend\">" + html_escape(names[r]) + "</text>\n";
    }
    s += "<text x=\"14\" y=\"" + std::to_string(top + h / 2) +
         "\" font-size=\"12\" transform=\"rotate(-90 14 " + std::to_string(top + h / 2) +
         ")\" text-anchor=\"middle\">pass@k</text>\n";
    return s + "</svg>\n";
}

// The rubric scores of the runs that have rubric items (docs/EVALUATION.md): the mean score
// with its item-clustered SE and interval, HealthBench's overall, the judges' bills and
// agreement, then the score per tag, one column per run. Empty when no run has rubric items.
std::string rubric_panel(const std::vector<json>& runs, const std::vector<std::string>& names) {
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
        "[0, 1] once. Values in %.</p>\n<table class=\"rubric\">\n<tr><th "
        "class=\"l\">run</th><th>mean</th>"
        "<th>SE</th><th>95% CI</th><th>HealthBench overall</th><th>scored samples</th>"
        "<th>failed</th><th class=\"l\">judge</th></tr>\n";
    for (size_t i : with) {
        const json& rb = runs[i]["rubric"];
        s += "<tr><td class=\"l\">" + html_escape(names[i]) + "</td><td>" +
             pct(rb["overall"]["mean"]) + "</td><td>" + pct(rb["overall"]["se"]) + "</td><td>" +
             iv01(rb["overall"]["ci_normal"]) + "</td><td>" + pct(rb["healthbench_overall"]) +
             "</td><td>" + count(rb, "n_samples") + "</td><td>" + count(rb, "n_failed_samples") +
             "</td><td class=\"l\">" + judge(rb["judge"]);
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
    for (size_t i : with) s += "<th>" + html_escape(names[i]) + "</th>";
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

std::string report_html(const std::vector<json>& runs, const std::vector<json>& comparisons) {
    const std::vector<std::string> names = run_names(runs);
    std::string s =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>crucible eval report</title>\n<style>\n"
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:right}td.l,th.l{text-align:left}"
        "pre{white-space:pre-wrap;max-width:60em;margin:0}"
        ".swatch{display:inline-block;width:12px;height:12px;margin-right:6px}\n"
        "</style>\n</head>\n<body>\n<h1>Eval report</h1>\n";
    s += "<h2>Runs</h2>\n<table class=\"runs\">\n<tr><th class=\"l\">run</th><th "
         "class=\"l\">folder</th><th class=\"l\">model</th><th>items</th><th>K</th><th>avg@K"
         "</th><th>95% CI (item SE, clipped to [0, 100])</th><th>Wilson</th><th>failed "
         "samples</th><th>excluded lines</th></tr>\n";
    for (size_t i = 0; i < runs.size(); ++i) {
        const json& r = runs[i];
        const json& a = avg_metric(r);
        s += "<tr><td class=\"l\"><span class=\"swatch\" style=\"background:" +
             std::string(run_colour(i)) + "\"></span>" + html_escape(names[i]) +
             "</td><td class=\"l\">" + html_escape(r["run"].get<std::string>()) +
             "</td><td class=\"l\">" + html_escape(r.value("model", std::string())) + "</td><td>" +
             std::to_string(r["n_items"].get<int>()) + "</td><td>" +
             std::to_string(r["k"].get<int>()) + "</td><td>" + pct(a["mean"]) + "%</td><td>" +
             iv01(a["ci_normal"]) + "</td><td>" + iv(a.value("ci_wilson", json())) + "</td><td>" +
             std::to_string(r["n_failed_samples"].get<int64_t>()) + "</td><td>" +
             std::to_string(r["n_excluded_lines"].get<size_t>()) + "</td></tr>\n";
    }
    s += "</table>\n";
    if (!comparisons.empty()) {
        s += "<h2>Comparison</h2>\n<p>Each run against " + html_escape(names[0]) +
             ", paired on the items both have (as <code>crucible compare</code>): the "
             "difference of avg@K in points with its 95% interval, the paired t and sign-flip "
             "p-values, and the smallest difference this setup detects (80% power, alpha "
             "0.05).</p>\n<table class=\"comparison\">\n<tr><th class=\"l\">run</th><th>paired "
             "items</th><th>difference</th><th>95% CI</th><th>p (paired t)</th><th>p "
             "(sign flip)</th><th>detectable</th><th class=\"l\">settings that differ</th>"
             "</tr>\n";
        const auto points = [](const json& v) {
            return v.is_number() ? f("%+.2f", 100 * v.get<double>()) : std::string("-");
        };
        const auto p = [](const json& v) {
            return v.is_number() ? f("%.3g", v.get<double>()) : std::string("-");
        };
        for (size_t i = 0; i < comparisons.size() && i + 1 < runs.size(); i++) {
            const json& c = comparisons[i];
            std::string differ;
            for (const json& d : c.value("settings_differ", json::array()))
                differ += (differ.empty() ? "" : "; ") + d.value("setting", std::string()) + ": " +
                          d.value("a", std::string()) + " vs " + d.value("b", std::string());
            const json ci = c.value("ci", json());
            s += "<tr><td class=\"l\">" + html_escape(names[i + 1]) + "</td><td>" +
                 std::to_string(c.value("n_items", 0)) + "</td><td>" +
                 points(c.value("diff", json())) + "</td><td>" +
                 (ci.is_array() && ci.size() == 2 ? "[" + points(ci[0]) + ", " + points(ci[1]) + "]"
                                                  : std::string("-")) +
                 "</td><td>" + p(c.value("p_value_t", json())) + "</td><td>" +
                 p(c.value("p_value_sign_flip", json())) + "</td><td>" +
                 [&] {
                     const json m = c.value("power", json::object()).value("mde", json());
                     return m.is_number() ? f("%.2f", 100 * m.get<double>()) : std::string("-");
                 }() +
                 "</td><td class=\"l\">" +
                 (differ.empty() ? std::string("none") : "<b>" + html_escape(differ) + "</b>") +
                 "</td></tr>\n";
        }
        s += "</table>\n";
    }
    s += "<h2>Accuracy (avg@K) with 95% intervals</h2>\n"
         "<p>Bars: avg@K; whiskers: mean &plusmn; 1.96 SE with the SE taken over items (the "
         "K samples of an item are clustered in it).</p>\n";
    s += accuracy_chart(runs, names);
    s += "<h2>Per-item accuracy</h2>\n<p>Rows: items; columns: runs; colour: the item's mean "
         "score over its samples (red 0, green 1, grey no sample).</p>\n";
    s += heatmap(runs, names);
    s += "<h2>pass@k</h2>\n<p>Unbiased estimator (Chen et al. 2021) for k = 1..K, each run's "
         "curve on one item set: its items with all K samples.";
    for (size_t r = 0; r < runs.size(); ++r) {
        if (!runs[r].contains("pass_at_k_items")) continue;
        const json& pk = runs[r]["pass_at_k_items"];
        s += " " + html_escape(names[r]) + ": " + std::to_string(pk.value("n_items", 0)) +
             " items with " + std::to_string(pk.value("k", 0)) + " samples";
        const int n_short = pk.value("n_short", 0);
        if (n_short > 0) s += ", " + std::to_string(n_short) + " with fewer left out";
        s += ".";
    }
    s += "</p>\n";
    s += pass_curves(runs, names);
    s += rubric_panel(runs, names);
    // Completions, one click away: the samples a run carries under "shown_samples".
    for (size_t r = 0; r < runs.size(); ++r) {
        const json shown = runs[r].value("shown_samples", json::array());
        if (shown.empty()) continue;
        s += "<h2>Completions of " + html_escape(names[r]) +
             "</h2>\n<table class=\"samples\">"
             "<tr><th class=\"l\">item</th><th>sample</th><th>score</th><th class=\"l\">"
             "completion</th></tr>\n";
        for (const json& x : shown) {
            const std::string completion = x.value("completion", std::string());
            const std::string error = x.value("error", std::string());
            std::string summary = completion.substr(0, 80);
            while (!summary.empty() && (static_cast<unsigned char>(summary.back()) & 0xC0) == 0x80)
                summary.pop_back();  // never cut inside a character
            s +=
                "<tr><td class=\"l\">" + html_escape(x.value("id", std::string())) + "</td><td>" +
                std::to_string(x.value("sample", 0)) + "</td><td>" +
                (x.contains("score") && x["score"].is_number() ? f("%.3g", x["score"].get<double>())
                                                               : std::string("-")) +
                "</td><td class=\"l\"><details><summary>" + html_escape(summary) +
                "</summary><pre>" + html_escape(x.value("prompt", std::string())) + "<hr>" +
                html_escape(completion) + (error.empty() ? "" : "<hr>" + html_escape(error)) +
                "</pre></details></td></tr>\n";
        }
        s += "</table>\n";
    }
    s += "</body>\n</html>\n";
    return s;
}

}  // namespace crucible::eval
