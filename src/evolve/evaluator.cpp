#include "evolve/evaluator.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

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

constexpr const char* kFolderPrefix = "crucible-evolve-";

// The environment every evolve sandbox gets on top of the sandbox's clean one. Python ignores
// its user site (~/.local: usercustomize, sitecustomize, .pth files), writes no bytecode, and
// puts neither the working directory (-c, -m, stdin) nor the script's folder first on
// sys.path: -I without the flag, so that it holds for every interpreter a command starts.
const std::vector<std::pair<std::string, std::string>> kIsolatedEnv = {
    {"PYTHONNOUSERSITE", "1"}, {"PYTHONDONTWRITEBYTECODE", "1"}, {"PYTHONSAFEPATH", "1"}};

// Makes every directory under `root` ours to list and empty again (an untrusted program that
// ran as our uid may have taken the permissions away), without following symlinks.
void make_removable(const fs::path& root) {
    std::vector<fs::path> todo = {root};
    while (!todo.empty()) {
        const fs::path dir = std::move(todo.back());
        todo.pop_back();
        struct stat st {};
        if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        chmod(dir.c_str(), 0700);
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            todo.push_back(it->path());
        }
    }
}

void remove_tree(const fs::path& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (!ec) return;
    make_removable(path);
    fs::remove_all(path, ec);
}

// True when `path` is `dir` or lies inside it (both made canonical as far as they exist).
bool lies_within(const fs::path& path, const fs::path& dir) {
    std::error_code ec1, ec2;
    const fs::path p = fs::weakly_canonical(path, ec1);
    const fs::path d = fs::weakly_canonical(dir, ec2);
    if (ec1 || ec2) return false;
    return std::mismatch(d.begin(), d.end(), p.begin(), p.end()).first == d.end();
}

// One evaluation's folders, all under WORK/crucible-evolve-<pid>-XXXXXX (the pid tells a later
// start whether the owner is gone): run/ (the candidate's scratch), stage-K/ (each stage's
// own fresh scratch) and handoff/ (read-only to every sandbox: the run's output and an empty
// HOME). Removed with everything in it when the evaluation ends.
struct EvaluationDir {
    fs::path path;
    explicit EvaluationDir(const fs::path& work_dir) {
        const fs::path parent = work_dir.empty() ? fs::temp_directory_path() : work_dir;
        std::error_code ec;
        fs::create_directories(parent, ec);
        std::string pattern =
            (parent / (kFolderPrefix + std::to_string(getpid()) + "-XXXXXX")).string();
        if (mkdtemp(pattern.data()) == nullptr) {
            throw Error("evolve: cannot create an evaluation folder in " + parent.string() + ": " +
                        std::strerror(errno));
        }
        path = pattern;
    }
    ~EvaluationDir() { remove_tree(path); }
    EvaluationDir(const EvaluationDir&) = delete;
    EvaluationDir& operator=(const EvaluationDir&) = delete;
    // A new, empty folder `name` inside.
    fs::path fresh(const std::string& name) const {
        const fs::path p = path / name;
        if (mkdir(p.c_str(), 0755) != 0) {
            throw Error("evolve: cannot create " + p.string() + ": " + std::strerror(errno));
        }
        return p;
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

fs::path evaluation_work_dir(const Problem& problem, const fs::path& run_dir) {
    for (const fs::path& candidate : {run_dir / "scratch", fs::temp_directory_path()}) {
        if (std::none_of(problem.read_only.begin(), problem.read_only.end(),
                         [&](const fs::path& shown) { return lies_within(candidate, shown); })) {
            return candidate;
        }
    }
    throw Error("evolve: both " + (run_dir / "scratch").string() + " and " +
                fs::temp_directory_path().string() +
                " lie inside a folder every sandbox sees (the problem folder or its read_only "
                "paths); choose a run folder elsewhere");
}

EvalOutcome evaluate_program(const Problem& problem, const std::string& code,
                             const fs::path& work_dir) {
    EvalOutcome out;
    const EvaluationDir folder(work_dir);
    for (const fs::path& shown : problem.read_only) {
        if (lies_within(folder.path, shown)) {
            throw Error("evolve: the evaluation folder " + folder.path.string() + " lies inside " +
                        shown.string() +
                        ", which every sandbox sees: a candidate could read other evaluations");
        }
    }
    // What every stage may read besides the problem: the run's output and an empty HOME, none
    // of it written by the candidate's processes (they are gone when it is written) and none
    // of it writable by anything sandboxed.
    const fs::path handoff = folder.fresh("handoff");
    const fs::path home = handoff / "home";
    const fs::path run_stdout = handoff / "stdout.txt";
    const fs::path run_stderr = handoff / "stderr.txt";
    fs::create_directory(home);
    SandboxOptions so;
    so.cpu_s = problem.cpu_s;
    so.wall_s = problem.timeout_s;
    so.mem_mb = problem.mem_mb;
    so.procs = problem.procs;
    so.read_only = problem.read_only;
    so.env = kIsolatedEnv;
    so.copy_back = false;  // nothing is read from a scratch afterwards: nothing comes back
    // Each sandbox starts from a scratch directory holding only the program as stored.
    const auto fresh_scratch = [&](const std::string& name) {
        const fs::path scratch = folder.fresh(name);
        write_file_durable(scratch / problem.program_file, code);
        return scratch;
    };
    const auto argv_of = [&](const std::vector<std::string>& command, const fs::path& scratch) {
        std::vector<std::string> argv;
        for (const auto& a : command) {
            std::string s = substitute(a, "{program}", (scratch / problem.program_file).string());
            s = substitute(s, "{problem}", problem.dir.string());
            s = substitute(s, "{run_stdout}", run_stdout.string());
            s = substitute(s, "{run_stderr}", run_stderr.string());
            argv.push_back(substitute(s, "{scratch}", scratch.string()));
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
    if (!problem.run_command.empty()) {
        // The candidate's HOME is its own scratch directory, which no stage ever sees.
        so.scratch = fresh_scratch("run");
        const SandboxResult r = run_sandboxed(so, argv_of(problem.run_command, so.scratch));
        out.wall_s += r.wall_s;
        if (failed(r, "run: ", "the program")) return out;
        if (r.stdout_truncated) {
            out.error = "run: the program printed more than " +
                        std::to_string(so.max_output_bytes) + " bytes";
            return out;
        }
        write_file_durable(run_stdout, r.stdout_text);
        write_file_durable(run_stderr, r.stderr_text);
    }
    // Readable by the sandbox's user (nobody when crucible runs as root), never writable: the
    // folders 0555, the files 0444, and the whole hand-off bound read-only.
    const auto read_only = fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read;
    const auto searchable = fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
    for (const fs::path& f : {run_stdout, run_stderr}) {
        if (fs::exists(f)) fs::permissions(f, read_only);
    }
    fs::permissions(home, read_only | searchable);
    fs::permissions(handoff, read_only | searchable | fs::perms::owner_write);
    so.read_only.push_back(handoff);
    so.env.emplace_back("HOME", home.string());
    for (size_t k = 0; k < problem.stages.size(); k++) {
        const EvalStage& stage = problem.stages[k];
        so.scratch = fresh_scratch("stage-" + std::to_string(k + 1));
        const SandboxResult r = run_sandboxed(so, argv_of(stage.command, so.scratch));
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

int remove_stale_evaluations(const fs::path& work_dir) {
    int removed = 0;
    std::error_code ec;
    const std::string prefix = kFolderPrefix;
    for (fs::directory_iterator it(work_dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        const size_t dash = name.find('-', prefix.size());
        const std::string digits = name.substr(prefix.size(), dash - prefix.size());
        if (dash == std::string::npos || digits.empty() || digits.size() > 9 ||
            digits.find_first_not_of("0123456789") != std::string::npos) {
            continue;  // not one of ours (or from a version without the pid): leave it
        }
        const pid_t pid = static_cast<pid_t>(std::stol(digits));
        // ESRCH: no such process. EPERM means it exists (another user's); 0 that it is alive.
        if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) continue;
        std::error_code lec;
        if (!fs::is_directory(fs::symlink_status(it->path(), lec))) continue;
        remove_tree(it->path());
        removed++;
    }
    return removed;
}

}  // namespace crucible::evolve
