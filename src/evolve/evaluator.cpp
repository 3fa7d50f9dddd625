#include "evolve/evaluator.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/file_io.h"
#include "sandbox/sandbox.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;

std::string tail(const std::string& s, size_t n) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string substitute(std::string s, const std::string& key, const std::string& value) {
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + value.size())) {
        s.replace(p, key.size(), value);
    }
    return s;
}

struct ScratchDir {
    fs::path path;
    ScratchDir() {
        std::string pattern = (fs::temp_directory_path() / "crucible-evolve-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) throw Error("evolve: cannot create a scratch dir");
        path = pattern;
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

}  // namespace

bool parse_eval_output(const std::string& text, EvalOutcome* out, std::string* error) {
    size_t end = text.find_last_not_of(" \t\r\n");
    if (end == std::string::npos) {
        *error = "the evaluator printed nothing (expected a JSON object on the last line)";
        return false;
    }
    size_t begin = text.rfind('\n', end);
    begin = begin == std::string::npos ? 0 : begin + 1;
    const std::string line = text.substr(begin, end - begin + 1);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
        *error = "the evaluator's last line is not JSON: " + tail(line, 200);
        return false;
    }
    if (!j.is_object()) {
        *error = "the evaluator's last line is not a JSON object";
        return false;
    }
    if (!j.contains("combined_score") || !j["combined_score"].is_number()) {
        *error = "the evaluator's JSON has no numeric combined_score";
        return false;
    }
    const double s = j["combined_score"].get<double>();
    if (!std::isfinite(s)) {
        *error = "combined_score is not finite";
        return false;
    }
    out->score = s;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "artifacts") {
            out->artifacts = it->is_string() ? it->get<std::string>() : it->dump(1);
        } else if (it->is_number() || it->is_boolean() || it->is_string()) {
            out->metrics[it.key()] = *it;
        }
    }
    return true;
}

EvalOutcome evaluate_program(const Problem& problem, const std::string& code) {
    EvalOutcome out;
    ScratchDir scratch;
    const fs::path program = scratch.path / problem.program_file;
    write_file_durable(program, code);
    SandboxOptions so;
    so.cpu_s = problem.cpu_s;
    so.wall_s = problem.timeout_s;
    so.mem_mb = problem.mem_mb;
    so.procs = problem.procs;
    so.scratch = scratch.path;
    so.read_only = problem.read_only;
    // Where the run's output is handed to the stages: outside the scratch directory, so the
    // candidate can neither see it nor plant anything (a symlink) where it will be written.
    std::optional<ScratchDir> handoff;
    if (!problem.run_command.empty()) handoff.emplace();
    const fs::path run_stdout = handoff ? handoff->path / "stdout.txt" : fs::path();
    const fs::path run_stderr = handoff ? handoff->path / "stderr.txt" : fs::path();
    const auto argv_of = [&](const std::vector<std::string>& command) {
        std::vector<std::string> argv;
        for (const auto& a : command) {
            std::string s = substitute(a, "{program}", program.string());
            s = substitute(s, "{problem}", problem.dir.string());
            s = substitute(s, "{run_stdout}", run_stdout.string());
            s = substitute(s, "{run_stderr}", run_stderr.string());
            argv.push_back(substitute(s, "{scratch}", scratch.path.string()));
        }
        return argv;
    };
    // Records why a sandboxed command failed in `out`; false when it ran to a zero exit.
    const auto failed = [&](const SandboxResult& r, const std::string& where,
                            const std::string& who) {
        if (r.timed_out || r.cpu_limit) {
            out.timed_out = true;
            out.error = where + (r.timed_out ? "wall-clock limit of " : "CPU limit of ") +
                        std::to_string(r.timed_out ? problem.timeout_s : problem.cpu_s) +
                        " s exceeded";
        } else if (r.exit_code != 0) {
            out.error = where + who +
                        (r.signal ? " killed by signal " + std::to_string(r.signal)
                                  : " exited with status " + std::to_string(r.exit_code));
        } else {
            return false;
        }
        out.artifacts = tail(r.stderr_text, 2000);
        return true;
    };
    if (handoff) {
        const SandboxResult r = run_sandboxed(so, argv_of(problem.run_command));
        out.wall_s += r.wall_s;
        if (failed(r, "run: ", "the program")) return out;
        if (r.stdout_truncated) {
            out.error = "run: the program printed more than " +
                        std::to_string(so.max_output_bytes) + " bytes";
            return out;
        }
        write_file_durable(run_stdout, r.stdout_text);
        write_file_durable(run_stderr, r.stderr_text);
        // Readable by the sandbox's user (nobody when crucible runs as root), never writable.
        fs::permissions(handoff->path, fs::perms::owner_all | fs::perms::group_read |
                                           fs::perms::group_exec | fs::perms::others_read |
                                           fs::perms::others_exec);
        for (const fs::path& f : {run_stdout, run_stderr}) {
            fs::permissions(f, fs::perms::owner_read | fs::perms::owner_write |
                                   fs::perms::group_read | fs::perms::others_read);
        }
        so.read_only.push_back(handoff->path);
    }
    for (size_t k = 0; k < problem.stages.size(); k++) {
        const EvalStage& stage = problem.stages[k];
        const SandboxResult r = run_sandboxed(so, argv_of(stage.command));
        out.wall_s += r.wall_s;
        out.stages_run = static_cast<int>(k + 1);
        const std::string where = "stage " + std::to_string(k + 1) + ": ";
        if (failed(r, where, "evaluator")) return out;
        std::string err;
        EvalOutcome stage_out;
        if (!parse_eval_output(r.stdout_text, &stage_out, &err)) {
            out.error = where + err;
            out.artifacts = tail(r.stderr_text, 2000);
            return out;
        }
        out.score = stage_out.score;
        out.metrics.update(stage_out.metrics);
        if (!stage_out.artifacts.empty()) out.artifacts = stage_out.artifacts;
        if (stage.has_threshold && k + 1 < problem.stages.size() &&
            stage_out.score < stage.threshold) {
            out.metrics["cascade_stopped_at_stage"] = static_cast<int>(k + 1);
            break;
        }
    }
    out.ok = true;
    return out;
}

}  // namespace crucible::evolve
