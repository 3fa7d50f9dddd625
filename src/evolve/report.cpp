#include "evolve/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/svg_chart.h"
#include "evolve/program_db.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Loaded {
    std::vector<Program> programs;
    int islands = 1;
    std::vector<std::vector<std::pair<std::string, int64_t>>> cells;
    std::vector<Migration> migrations;
    std::string stop_reason;
    json structure;
    double best_known = NAN;  // problem.yaml's, when given
};

Loaded load(const fs::path& run_dir) {
    const fs::path path = run_dir / "programs.sqlite";
    if (!fs::exists(path)) throw Error("evolve: no run database at " + path.string());
    EvolveOptions o;
    o.islands = 0;  // read only: do not create island rows
    ProgramDb db(path.string(), o);
    Loaded l;
    l.programs = db.all();
    l.structure = json::parse(db.meta("structure", "{}"));
    l.islands = l.structure.value("islands", 1);
    for (int i = 0; i < l.islands; i++) l.cells.push_back(db.cells(i));
    l.migrations = db.migrations();
    l.stop_reason = db.meta("stop_reason", "(running or interrupted)");
    const std::string known = db.meta("best_known");
    if (!known.empty()) l.best_known = std::stod(known);
    return l;
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
}

std::string num(double v) {
    return std::isfinite(v) ? fmt::format("{:.10g}", v) : "";
}

// Color from red (lo) to green (hi).
std::string color(double v, double lo, double hi) {
    const double t = hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) : 1.0;
    return fmt::format("hsl({:.0f},70%,{:.0f}%)", 120 * t, 75 - 25 * t);
}

}  // namespace

std::string render_report(const fs::path& run_dir) {
    const Loaded l = load(run_dir);
    std::vector<const Program*> ev;
    for (const auto& p : l.programs) {
        if (p.status == "evaluated") ev.push_back(&p);
    }
    double lo = 1e300, hi = -1e300;
    int64_t max_it = 1;
    for (const auto* p : ev) {
        lo = std::min(lo, p->score);
        hi = std::max(hi, p->score);
        max_it = std::max(max_it, p->iteration);
    }
    if (ev.empty()) lo = 0, hi = 1;
    if (std::isfinite(l.best_known)) {  // on the chart whatever the run reached
        lo = std::min(lo, l.best_known);
        hi = std::max(hi, l.best_known);
    }
    if (hi <= lo) hi = lo + 1;
    std::map<std::string, int> status_count;
    for (const auto& p : l.programs) status_count[p.status]++;
    const Program* best = nullptr;
    for (const auto* p : ev) {
        if (!best || p->score > best->score) best = p;
    }

    std::string h = R"(<!doctype html><html><head><meta charset="utf-8"><title>evolve report</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}pre{background:#f6f6f6;padding:8px;
overflow:auto;font-size:12px}.grid td{width:28px;height:22px;text-align:center}</style></head><body>)";
    h += "<h1>Evolve run: " + html_escape(run_dir.filename().string()) + "</h1>\n<p>";
    for (const auto& [s, n] : status_count) h += fmt::format("{}: {} &nbsp; ", html_escape(s), n);
    h += "stop reason: " + html_escape(l.stop_reason);
    if (best) h += "<br>best found: " + num(best->score);
    if (std::isfinite(l.best_known)) h += ", best known (problem.yaml): " + num(l.best_known);
    h += "<br>search: " + html_escape(l.structure.dump()) + "</p>\n";

    // Score over time: every evaluated program as a dot, best so far as a line.
    const int W = 900, H = 300, M = 40;
    const auto X = [&](double it) { return M + (W - 2 * M) * it / static_cast<double>(max_it); };
    const auto Y = [&](double s) { return H - M - (H - 2 * M) * (s - lo) / (hi - lo); };
    h += "<h2>Score over time</h2>\n";
    h += fmt::format("<svg width='{}' height='{}' style='border:1px solid #ddd'>", W, H);
    h += fmt::format(
        "<text x='4' y='{}' font-size='11'>{}</text><text x='4' y='{}' "
        "font-size='11'>{}</text><text x='{}' y='{}' font-size='11'>iteration {}</text>",
        Y(hi) + 4, num(hi), Y(lo), num(lo), W - 120, H - 8, max_it);
    // The axes' names and the legend.
    h += fmt::format(
        "<line x1='{0}' y1='{1}' x2='{2}' y2='{1}' stroke='#888'/><line x1='{0}' y1='{3}' "
        "x2='{0}' y2='{1}' stroke='#888'/><text x='{4}' y='{5}' font-size='12' "
        "text-anchor='middle'>iteration</text><text x='12' y='{6}' font-size='12' "
        "text-anchor='middle' transform='rotate(-90 12 {6})'>combined_score</text>",
        M, H - M, W - M, M, W / 2, H - 8, H / 2);
    h += fmt::format(
        "<g class='legend' font-size='11'><circle cx='{0}' cy='14' r='3' fill='#c84'/>"
        "<text x='{1}' y='18'>program (even island)</text><circle cx='{2}' cy='14' r='3' "
        "fill='#48c'/><text x='{3}' y='18'>program (odd island)</text><line x1='{4}' y1='14' "
        "x2='{5}' y2='14' stroke='#080' stroke-width='2'/><text x='{6}' y='18'>best so far"
        "</text></g>",
        M + 10, M + 18, M + 170, M + 178, M + 330, M + 350, M + 356);
    std::string line;
    double run_best = -1e300;
    for (const auto* p : ev) {
        h += fmt::format(
            "<circle cx='{:.1f}' cy='{:.1f}' r='2.5' fill='{}'><title>#{} it {} "
            "island {}: {}</title></circle>",
            X(p->iteration), Y(p->score), p->island % 2 ? "#48c" : "#c84", p->id, p->iteration,
            p->island, num(p->score));
        if (p->score > run_best) {
            if (!line.empty()) line += fmt::format(" L{:.1f},{:.1f}", X(p->iteration), Y(run_best));
            run_best = p->score;
            line += fmt::format("{}{:.1f},{:.1f}", line.empty() ? "M" : " L", X(p->iteration),
                                Y(run_best));
        }
    }
    if (!line.empty()) {
        line += fmt::format(" L{:.1f},{:.1f}", X(max_it), Y(run_best));
        h += "<path d='" + line + "' stroke='#080' fill='none' stroke-width='2'/>";
    }
    if (std::isfinite(l.best_known)) {
        h += fmt::format(
            "<line class='best-known' x1='{0}' y1='{1:.1f}' x2='{2}' y2='{1:.1f}' stroke='#a0a' "
            "stroke-dasharray='6 4'/><text x='{3}' y='{4:.1f}' font-size='11' fill='#a0a' "
            "text-anchor='end'>best known {5}</text>",
            M, Y(l.best_known), W - M, W - M - 4, Y(l.best_known) - 4, num(l.best_known));
    }
    h += "</svg>\n";

    // Lineage: parent -> child edges, x = iteration, y = score; the best program's ancestry
    // in bold.
    std::map<int64_t, const Program*> by_id;
    for (const auto* p : ev) by_id[p->id] = p;
    std::map<int64_t, bool> on_path;
    for (const Program* p = best; p;
         p = by_id.count(p->parent_id) ? by_id[p->parent_id] : nullptr) {
        on_path[p->id] = true;
    }
    h += "<h2>Lineage tree</h2><p>Each evaluated program at (iteration, score), joined to its "
         "parent; the best program's ancestry is drawn thick.</p>\n";
    h += fmt::format("<svg width='{}' height='{}' style='border:1px solid #ddd'>", W, H);
    h += fmt::format(
        "<line x1='{0}' y1='{1}' x2='{2}' y2='{1}' stroke='#888'/><line x1='{0}' y1='{3}' "
        "x2='{0}' y2='{1}' stroke='#888'/><text x='{4}' y='{5}' font-size='12' "
        "text-anchor='middle'>iteration (0 to {7})</text><text x='12' y='{6}' font-size='12' "
        "text-anchor='middle' transform='rotate(-90 12 {6})'>combined_score ({8} to {9})</text>",
        M, H - M, W - M, M, W / 2, H - 8, H / 2, max_it, num(lo), num(hi));
    for (const auto* p : ev) {
        if (!by_id.count(p->parent_id)) continue;
        const Program* q = by_id[p->parent_id];
        const bool bold = on_path.count(p->id) > 0;
        h += fmt::format(
            "<line x1='{:.1f}' y1='{:.1f}' x2='{:.1f}' y2='{:.1f}' stroke='{}' "
            "stroke-width='{}'/>",
            X(q->iteration), Y(q->score), X(p->iteration), Y(p->score), bold ? "#080" : "#bbb",
            bold ? 2.5 : 0.8);
    }
    for (const auto* p : ev) {
        h += fmt::format(
            "<circle cx='{:.1f}' cy='{:.1f}' r='3' fill='{}'><title>#{} parent {} "
            "{} {}</title></circle>",
            X(p->iteration), Y(p->score), color(p->score, lo, hi), p->id, p->parent_id,
            html_escape(p->operator_name), num(p->score));
    }
    h += "</svg>\n";

    // Island occupancy: the grid of each island (2 features: a table; else a cell list).
    h += "<h2>Islands and MAP-Elites grids</h2>\n";
    const json feats = l.structure.value("features", json::array());
    for (int i = 0; i < l.islands; i++) {
        h += fmt::format("<h3>Island {} ({} occupied cells)</h3>", i, l.cells[i].size());
        std::map<std::pair<int, int>, int64_t> grid;
        for (const auto& [cell, id] : l.cells[i]) {
            int a = 0, b = 0;
            if (std::sscanf(cell.c_str(), "%d,%d", &a, &b) >= 1) grid[{a, b}] = id;
        }
        if (feats.size() == 2) {
            const int na = feats[0][1], nb = feats[1][1];
            h += "<table class='grid'><tr><th>" + html_escape(feats[1][0].get<std::string>()) +
                 " &rarr;<br>" + html_escape(feats[0][0].get<std::string>()) + " &darr;</th>";
            for (int b = 0; b < nb; b++) h += fmt::format("<th>{}</th>", b);
            h += "</tr>";
            for (int a = 0; a < na; a++) {
                h += fmt::format("<tr><th>{}</th>", a);
                for (int b = 0; b < nb; b++) {
                    auto it = grid.find({a, b});
                    if (it == grid.end() || !by_id.count(it->second)) {
                        h += "<td></td>";
                        continue;
                    }
                    const Program* p = by_id[it->second];
                    h += fmt::format("<td style='background:{}' title='#{} score {}'>{}</td>",
                                     color(p->score, lo, hi), p->id, num(p->score), p->id);
                }
                h += "</tr>";
            }
            h += "</table>";
        } else {
            h += "<p>";
            for (const auto& [cell, id] : l.cells[i])
                h += fmt::format("[{}]=#{} ", html_escape(cell), id);
            h += "</p>";
        }
    }
    h += fmt::format("<p>Migrations: {} offers, {} placed.</p>\n", l.migrations.size(),
                     std::count_if(l.migrations.begin(), l.migrations.end(),
                                   [](const Migration& m) { return m.placed; }));

    // Best programs.
    std::vector<const Program*> top = ev;
    std::sort(top.begin(), top.end(), [](auto* a, auto* b) { return a->score > b->score; });
    if (top.size() > 15) top.resize(15);
    h += "<h2>Best programs</h2><table><tr><th>id</th><th>score</th><th>iteration</th>"
         "<th>island</th><th>generation</th><th>operator</th><th>model</th><th>parent</th>"
         "<th>change from the parent</th></tr>";
    for (const auto* p : top) {
        h += fmt::format(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            p->id, num(p->score), p->iteration, p->island, p->generation,
            html_escape(p->operator_name), html_escape(p->model), p->parent_id,
            p->diff.empty() ? std::string("&mdash;")
                            : "<details><summary>diff</summary><pre>" + html_escape(p->diff) +
                                  "</pre></details>");
    }
    h += "</table>";
    if (best) {
        h += fmt::format("<h2>Best program (#{}, score {})</h2><pre>{}</pre>", best->id,
                         num(best->score), html_escape(best->code));
    }
    h += "</body></html>\n";
    return h;
}

std::string export_csv(const fs::path& run_dir) {
    const Loaded l = load(run_dir);
    std::string out =
        "id,parent_id,second_parent_id,island,generation,iteration,status,operator,model,score,"
        "prompt_tokens,completion_tokens,cost_usd,llm_s,eval_s,cell,children,metrics,error\n";
    for (const auto& p : l.programs) {
        out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", p.id,
                           p.parent_id, p.second_parent_id, p.island, p.generation, p.iteration,
                           p.status, csv_field(p.operator_name), csv_field(p.model), num(p.score),
                           p.prompt_tokens, p.completion_tokens, p.cost_usd, p.llm_s, p.eval_s,
                           csv_field(p.cell), p.children, csv_field(p.metrics.dump()),
                           csv_field(p.error));
    }
    return out;
}

std::string export_json(const fs::path& run_dir) {
    const Loaded l = load(run_dir);
    json arr = json::array();
    for (const auto& p : l.programs) {
        arr.push_back({{"id", p.id},
                       {"parent_id", p.parent_id},
                       {"second_parent_id", p.second_parent_id},
                       {"island", p.island},
                       {"generation", p.generation},
                       {"iteration", p.iteration},
                       {"status", p.status},
                       {"operator", p.operator_name},
                       {"model", p.model},
                       {"score", number_or_null(p.score)},
                       {"metrics", p.metrics},
                       {"features", p.features},
                       {"cell", p.cell},
                       {"prompt_tokens", p.prompt_tokens},
                       {"completion_tokens", p.completion_tokens},
                       {"cost_usd", p.cost_usd},
                       {"llm_s", p.llm_s},
                       {"eval_s", p.eval_s},
                       {"children", p.children},
                       {"code", p.code},
                       {"diff", p.diff},
                       {"prompt", p.prompt},
                       {"artifacts", p.artifacts},
                       {"error", p.error}});
    }
    json out = {{"structure", l.structure}, {"stop_reason", l.stop_reason}, {"programs", arr}};
    return out.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace crucible::evolve
