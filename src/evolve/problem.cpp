#include "evolve/problem.h"

#include <cmath>

#include "core/error.h"
#include "core/file_io.h"
#include "core/yaml_reader.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;

void parse_options(YamlSection& s, EvolveOptions& o) {
    s.get("iterations", o.iterations);
    s.get("workers", o.workers);
    s.get("seed", o.seed);
    s.get("islands", o.islands);
    s.get("migration_interval", o.migration_interval);
    s.get("migration_rate", o.migration_rate);
    s.get("selection", o.selection);
    s.get("weighted_lambda", o.weighted_lambda);
    s.get("funsearch_t0", o.funsearch_t0);
    s.get("funsearch_period", o.funsearch_period);
    s.get("power_law_alpha", o.power_law_alpha);
    s.get("archive_size", o.archive_size);
    s.get("archive_ratio", o.archive_ratio);
    s.get("num_top_inspirations", o.num_top_inspirations);
    s.get("num_diverse_inspirations", o.num_diverse_inspirations);
    s.get("similarity_threshold", o.similarity_threshold);
    s.get("mode", o.mode);
    s.get("offline_crossover_rate", o.offline_crossover_rate);
    s.get("offline_sigma", o.offline_sigma);
    s.get("offline_max_mutations", o.offline_max_mutations);
    s.get("diff_mode", o.diff_mode);
    s.get("full_rewrite_rate", o.full_rewrite_rate);
    s.get("ucb", o.ucb);
    s.get("ucb_c", o.ucb_c);
    s.get("temperature", o.temperature);
    s.get("max_tokens", o.max_tokens);
    s.get("llm_timeout_s", o.llm_timeout_s);
    s.get("system_prompt", o.system_prompt);
    s.get("prompt_template", o.prompt_template);
    s.get("max_total_tokens", o.max_total_tokens);
    s.get("max_cost_usd", o.max_cost_usd);
    for (YamlSection& f : s.items("features")) {
        FeatureDim d;
        f.get("name", d.name);
        f.get("bins", d.bins);
        f.get("min", d.min);
        f.get("max", d.max);
        f.finish();
        if (d.name.empty()) f.fail(f.node(), "feature needs a 'name'");
        if (d.bins < 1 || !(d.max > d.min)) {
            f.fail(f.node(), "feature '" + d.name + "' needs bins >= 1 and max > min");
        }
        o.features.push_back(d);
    }
    for (YamlSection& f : s.items("llms")) {
        LlmEndpoint e;
        f.get("base_url", e.base_url);
        f.get("model", e.model);
        f.get("weight", e.weight);
        f.get("usd_per_mtok_in", e.usd_per_mtok_in);
        f.get("usd_per_mtok_out", e.usd_per_mtok_out);
        f.finish();
        if (e.base_url.empty()) f.fail(f.node(), "llm endpoint needs a 'base_url'");
        o.llms.push_back(e);
    }
    s.finish();
}

}  // namespace

void validate_options(const EvolveOptions& o, const std::string& where) {
    const auto bad = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (o.iterations < 0) bad("iterations must be >= 0");
    if (o.workers < 1) bad("workers must be >= 1");
    if (o.islands < 1) bad("islands must be >= 1");
    if (o.selection != "weighted" && o.selection != "funsearch" && o.selection != "power_law" &&
        o.selection != "uniform") {
        bad("selection must be weighted, funsearch, power_law or uniform, not '" + o.selection +
            "'");
    }
    if (o.mode != "llm" && o.mode != "offline") bad("mode must be llm or offline");
    if (o.diff_mode != "diff" && o.diff_mode != "full") bad("diff_mode must be diff or full");
    if (o.migration_rate < 0 || o.migration_rate > 1) bad("migration_rate must be in [0, 1]");
    if (o.archive_ratio < 0 || o.archive_ratio > 1) bad("archive_ratio must be in [0, 1]");
    if (o.funsearch_t0 <= 0 || o.funsearch_period < 1) bad("funsearch_t0/period must be > 0");
}

Problem load_problem(const fs::path& dir_in) {
    Problem p;
    p.dir = fs::absolute(dir_in).lexically_normal();
    const fs::path yaml_path = p.dir / "problem.yaml";
    const std::string file = yaml_path.string();
    const YAML::Node root = parse_yaml(read_file(yaml_path), file);
    YamlSection top(root, file, "");
    top.get("name", p.name);
    top.get("description", p.description);
    top.get("language", p.language);
    top.get("best_known", p.best_known);
    if (std::isinf(p.best_known)) throw Error(file + ": 'best_known' must be a finite number");
    std::string initial;
    top.get("initial_program", initial);
    top.get("program_file", p.program_file);
    if (initial.empty()) throw Error(file + ": missing key 'initial_program'");
    p.initial_code = read_file(p.dir / initial);
    if (p.program_file.empty()) p.program_file = fs::path(initial).filename().string();
    if (p.program_file.empty() || p.program_file.find('/') != std::string::npos ||
        p.program_file == "." || p.program_file == "..") {
        throw Error(file + ": 'program_file' must be a plain file name");
    }
    if (p.name.empty()) p.name = p.dir.filename().string();
    for (const std::string& extra : top.strings("read_only")) {
        p.read_only.push_back(fs::absolute(p.dir / extra).lexically_normal());
    }
    p.read_only.insert(p.read_only.begin(), p.dir);

    YamlSection ev(top.raw("evaluator"), file, "evaluator");
    if (!top.has("evaluator")) throw Error(file + ": missing key 'evaluator'");
    ev.get("timeout_s", p.timeout_s);
    ev.get("cpu_s", p.cpu_s);
    ev.get("mem_mb", p.mem_mb);
    ev.get("procs", p.procs);
    if (ev.has("run")) {
        p.run_command = ev.strings("run");
        if (p.run_command.empty()) ev.fail(ev.raw("run"), "key 'evaluator.run' must not be empty");
    }
    if (ev.has("command")) p.stages.push_back({ev.strings("command"), 0, false});
    for (YamlSection& st : ev.items("stages")) {
        EvalStage stage;
        stage.command = st.strings("command");
        if (st.has("threshold")) {
            st.get("threshold", stage.threshold);
            stage.has_threshold = true;
        }
        st.finish();
        if (stage.command.empty()) st.fail(st.node(), "stage needs a 'command'");
        p.stages.push_back(stage);
    }
    ev.finish();
    if (p.stages.empty()) throw Error(file + ": evaluator needs 'command' or 'stages'");
    for (const auto& st : p.stages) {
        if (st.command.empty()) throw Error(file + ": evaluator.command must not be empty");
        for (const std::string& a : st.command) {
            if (p.run_command.empty() && (a.find("{run_stdout}") != std::string::npos ||
                                          a.find("{run_stderr}") != std::string::npos))
                throw Error(file + ": evaluator uses {run_stdout}/{run_stderr} but has no 'run'");
        }
    }

    YamlSection opts(top.raw("evolve"), file, "evolve");
    parse_options(opts, p.options);
    top.finish();
    if (p.options.features.empty()) {
        const double len = static_cast<double>(evolve_text(p.initial_code).size());
        p.options.features.push_back({"code_length", 8, 0, std::max(200.0, 3 * len)});
        p.options.features.push_back({"diversity", 8, 0, 1});
    }
    validate_options(p.options, file);

    std::string marker_error;
    evolve_blocks(p.initial_code, &marker_error);
    if (!marker_error.empty()) throw Error((p.dir / initial).string() + ": " + marker_error);
    return p;
}

std::vector<std::pair<size_t, size_t>> evolve_blocks(const std::string& code, std::string* error) {
    std::vector<std::pair<size_t, size_t>> out;
    size_t pos = 0;
    bool open = false;
    size_t begin = 0;
    int line_no = 0;
    while (pos < code.size()) {
        size_t eol = code.find('\n', pos);
        const size_t next = eol == std::string::npos ? code.size() : eol + 1;
        const std::string_view line(code.data() + pos, next - pos);
        line_no++;
        const bool is_start = line.find("EVOLVE-BLOCK-START") != std::string_view::npos;
        const bool is_end = line.find("EVOLVE-BLOCK-END") != std::string_view::npos;
        if (is_start) {
            if (open) {
                *error = "line " + std::to_string(line_no) + ": EVOLVE-BLOCK-START inside a block";
                return {};
            }
            open = true;
            begin = next;
        } else if (is_end) {
            if (!open) {
                *error = "line " + std::to_string(line_no) + ": EVOLVE-BLOCK-END without a start";
                return {};
            }
            open = false;
            out.emplace_back(begin, pos);
        }
        pos = next;
    }
    if (open) {
        *error = "EVOLVE-BLOCK-START without a matching EVOLVE-BLOCK-END";
        return {};
    }
    if (out.empty()) *error = "no EVOLVE-BLOCK-START / EVOLVE-BLOCK-END markers";
    return out;
}

std::string evolve_text(const std::string& code) {
    std::string error;
    const auto blocks = evolve_blocks(code, &error);
    if (blocks.empty()) return code;
    std::string out;
    for (const auto& [b, e] : blocks) {
        if (!out.empty()) out += "\n";
        out += code.substr(b, e - b);
    }
    return out;
}

std::string check_fixed_parts(const std::string& parent, const std::string& child) {
    std::string perr, cerr;
    const auto pb = evolve_blocks(parent, &perr);
    const auto cb = evolve_blocks(child, &cerr);
    if (!cerr.empty()) return "EVOLVE-BLOCK markers broken: " + cerr;
    if (pb.size() != cb.size()) {
        return "the program must keep " + std::to_string(pb.size()) + " EVOLVE-BLOCK(s), found " +
               std::to_string(cb.size());
    }
    size_t pp = 0, cp = 0;
    for (size_t i = 0; i <= pb.size(); i++) {
        const size_t pe = i < pb.size() ? pb[i].first : parent.size();
        const size_t ce = i < cb.size() ? cb[i].first : child.size();
        if (parent.compare(pp, pe - pp, child, cp, ce - cp) != 0) {
            return "code outside the EVOLVE-BLOCK markers was changed (segment " +
                   std::to_string(i) + "); only the code between the markers may change";
        }
        if (i < pb.size()) {
            pp = pb[i].second;
            cp = cb[i].second;
        }
    }
    return "";
}

}  // namespace crucible::evolve
