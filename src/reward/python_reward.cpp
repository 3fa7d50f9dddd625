#include "reward/python_reward.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/file_io.h"
#include "core/unique_fd.h"
#include "sandbox/sandbox.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

// The worker: imports the file, answers one JSON line per request on the descriptor that was
// its stdout (the user's prints are sent to stderr instead), and says why a score is missing
// with the exception's last line.
constexpr const char* kWorker = R"PY(
import importlib.util, json, math, os, sys, traceback
proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr
def send(obj):
    proto.write(json.dumps(obj, allow_nan=False) + "\n")
    proto.flush()
def last_line(e):
    return traceback.format_exception_only(type(e), e)[-1].strip()
path, name, signature = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    spec = importlib.util.spec_from_file_location("crucible_user_reward", path)
    if spec is None:
        raise ImportError("not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if fn is None:
        raise AttributeError("no function named " + repr(name))
    if not callable(fn):
        raise TypeError(repr(name) + " is not callable")
except BaseException as e:
    send({"ready": False, "error": last_line(e)})
    sys.exit(1)
send({"ready": True})
def number(v):
    if isinstance(v, dict) and "score" in v:
        v = v["score"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("returned " + type(v).__name__ + ", not a number")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError("returned " + repr(v) + ", not a finite number")
    return v
for line in (open(sys.argv[4]) if len(sys.argv) > 4 else sys.stdin):
    req = json.loads(line)
    n = len(req["completions"])
    scores, errors = [None] * n, [None] * n
    if signature == "trl":
        try:
            values = list(fn(prompts=req["prompts"], completions=req["completions"], **req["columns"]))
            if len(values) != n:
                raise ValueError("returned %d values for %d completions" % (len(values), n))
            for i, v in enumerate(values):
                try:
                    scores[i] = number(v)
                except Exception as e:
                    errors[i] = last_line(e)
        except Exception as e:
            errors = [last_line(e)] * n
    else:
        for i in range(n):
            try:
                scores[i] = number(fn(req["data_sources"][i], req["completions"][i],
                                      req["ground_truths"][i], req["extra_infos"][i]))
            except Exception as e:
                errors[i] = last_line(e)
    send({"scores": scores, "errors": errors})
)PY";

// Whether `resp` is the worker's answer for n samples: {"scores": [n], "errors": [n]}.
bool is_answer(const json& resp, size_t n) {
    return resp.is_object() && resp.contains("scores") && resp["scores"].is_array() &&
           resp["scores"].size() == n && resp.contains("errors") && resp["errors"].is_array() &&
           resp["errors"].size() == n;
}

// A worker's answer into out[begin, begin + n): a finite score, or the error it gave.
void take_answer(const json& resp, size_t begin, std::vector<PythonRewardResult>* out) {
    for (size_t i = 0; i < resp["scores"].size(); i++) {
        const json& score = resp["scores"][i];
        const json& error = resp["errors"][i];
        if (score.is_number() && std::isfinite(score.get<double>())) {
            (*out)[begin + i] = {score.get<double>(), "", false};
        } else {
            (*out)[begin + i] = {std::nullopt,
                                 error.is_string() ? error.get<std::string>() : "no score", false};
        }
    }
}

double seconds_left(std::chrono::steady_clock::time_point deadline) {
    return std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
}

}  // namespace

PythonRewardOptions::Signature parse_python_signature(const std::string& value,
                                                      const std::string& what) {
    if (value == "trl") return PythonRewardOptions::Signature::trl;
    if (value == "verl") return PythonRewardOptions::Signature::verl;
    throw Error(what + ": unknown signature '" + value + "' (expected trl or verl)");
}

struct PythonRewardPool::Worker {
    pid_t pid = -1;
    UniqueFd sock;    // the worker's stdin and stdout
    std::string buf;  // bytes read past the last complete line

    void kill_now() {
        if (pid > 0) {
            ::kill(-pid, SIGKILL);  // its process group: whatever the reward started too
            ::kill(pid, SIGKILL);
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        pid = -1;
        sock.reset();
        buf.clear();
    }
    ~Worker() { kill_now(); }

    // Reads one line until `deadline`. Returns 1 with the line, 0 on timeout, -1 on EOF or an
    // error.
    int read_line(std::chrono::steady_clock::time_point deadline, std::string* line) {
        for (;;) {
            const size_t nl = buf.find('\n');
            if (nl != std::string::npos) {
                *line = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                return 1;
            }
            const double left = seconds_left(deadline);
            if (left <= 0) return 0;
            pollfd p{sock.get(), POLLIN, 0};
            const int ms = static_cast<int>(std::ceil(std::min(left, 3600.0) * 1000.0));
            const int rc = poll(&p, 1, ms);
            if (rc < 0 && errno == EINTR) continue;
            if (rc < 0) return -1;
            if (rc == 0) continue;  // the loop checks the deadline
            char tmp[65536];
            const ssize_t n = ::read(sock.get(), tmp, sizeof tmp);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return -1;
            buf.append(tmp, static_cast<size_t>(n));
        }
    }

    bool write_all(const std::string& data) {
        size_t off = 0;
        while (off < data.size()) {
            const ssize_t n =
                ::send(sock.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            off += static_cast<size_t>(n);
        }
        return true;
    }
};

PythonRewardPool::PythonRewardPool(PythonRewardOptions options) : options_(std::move(options)) {
    const std::string what = "rewards.python: " + options_.file;
    if (options_.file.empty()) throw Error("rewards.python.file: no file given");
    if (::access(options_.file.c_str(), R_OK) != 0) throw Error(what + ": " + std::strerror(errno));
    if (options_.function.empty()) throw Error("rewards.python.function: no function given");
    if (!(options_.timeout_s > 0)) throw Error("rewards.python.timeout_s must be > 0");
    if (options_.workers < 1) throw Error("rewards.python.workers must be >= 1");
    // Resolved here: the child of fork() only calls async-signal-safe functions until exec.
    executable_ = options_.python;
    if (executable_.find('/') == std::string::npos) {
        const char* path = std::getenv("PATH");
        std::string dirs = path ? path : "/usr/bin:/bin";
        executable_.clear();
        for (size_t at = 0; at <= dirs.size();) {
            const size_t colon = std::min(dirs.find(':', at), dirs.size());
            const std::string candidate = dirs.substr(at, colon - at) + "/" + options_.python;
            if (colon > at && ::access(candidate.c_str(), X_OK) == 0) {
                executable_ = candidate;
                break;
            }
            at = colon + 1;
        }
        if (executable_.empty())
            throw Error("rewards.python: '" + options_.python + "' is not on PATH");
    }
    workers_.resize(static_cast<size_t>(options_.workers));
    if (options_.sandbox) {
        // The import alone, in the sandbox: a file that does not load fails here, by name,
        // and its time is what each call adds to timeout_s.
        bool timed_out = false;
        std::string why;
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<std::string> lines =
            run_in_sandbox("", std::max(30.0, options_.timeout_s), &timed_out, &why);
        import_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (timed_out) throw Error(what + ": the sandboxed import did not finish within 30 s");
        const json ready = lines.empty() ? json() : json::parse(lines[0], nullptr, false);
        if (!ready.is_object() || !ready.contains("ready"))
            throw Error(what + ": the sandboxed worker did not start: " +
                        (why.empty() ? std::string("no greeting") : why));
        if (!ready["ready"].get<bool>())
            throw Error(what + ": cannot load '" + options_.function +
                        "': " + ready.value("error", std::string("unknown error")));
        return;
    }
    for (size_t w = 0; w < workers_.size(); w++) start(w);
}

std::vector<std::string> PythonRewardPool::run_in_sandbox(const std::string& request_lines,
                                                          double wall_s, bool* timed_out,
                                                          std::string* why) {
    namespace fs = std::filesystem;
    // A private scratch holding the request; the reward file's folder is seen read-only.
    std::string tmpl = (fs::temp_directory_path() / "crucible-reward-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
        throw Error(std::string("rewards.python: mkdtemp: ") + std::strerror(errno));
    const fs::path scratch = tmpl;
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{scratch};
    write_file_durable(scratch / "request.jsonl", request_lines);
    const fs::path file = fs::absolute(options_.file).lexically_normal();
    SandboxOptions so;
    so.wall_s = wall_s;
    so.cpu_s = wall_s;
    so.mem_mb = options_.sandbox_mem_mb;
    so.procs = 16;
    so.disk_mb = 64;
    so.scratch = scratch;
    so.copy_back = false;
    so.read_only = {file.parent_path()};
    const std::string sig =
        options_.signature == PythonRewardOptions::Signature::trl ? "trl" : "verl";
    const SandboxResult r =
        run_sandboxed(so, {options_.python, "-u", "-c", kWorker, file.string(), options_.function,
                           sig, (scratch / "request.jsonl").string()});
    *timed_out = r.timed_out || r.cpu_limit;
    std::vector<std::string> lines;
    for (size_t at = 0; at < r.stdout_text.size();) {
        const size_t nl = r.stdout_text.find('\n', at);
        if (nl == std::string::npos) break;
        lines.push_back(r.stdout_text.substr(at, nl - at));
        at = nl + 1;
    }
    if (lines.size() < 2 || r.exit_code != 0) {
        // Why there is no answer: the last line the process wrote on stderr, or how it ended.
        std::string err = r.stderr_text;
        while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
        const size_t nl = err.rfind('\n');
        *why = nl == std::string::npos ? err : err.substr(nl + 1);
        if (r.oom_killed)
            *why = "the sandbox's memory limit (" + std::to_string(options_.sandbox_mem_mb) +
                   " MiB) killed it";
        if (why->empty())
            *why = r.signal ? "killed by signal " + std::to_string(r.signal)
                            : "exit status " + std::to_string(r.exit_code);
    }
    return lines;
}

bool PythonRewardPool::call_sandboxed(const std::string& request, size_t begin, size_t end,
                                      std::vector<PythonRewardResult>* out) {
    bool timed_out = false;
    std::string why;
    const std::vector<std::string> lines = run_in_sandbox(
        request + "\n", options_.timeout_s + std::max(1.0, 2 * import_s_), &timed_out, &why);
    if (timed_out) return false;
    const size_t n = end - begin;
    const json resp = lines.size() >= 2 ? json::parse(lines[1], nullptr, false) : json();
    if (!is_answer(resp, n)) {
        const std::string reason =
            "the sandboxed call gave no answer: " + (why.empty() ? std::string("no result") : why);
        for (size_t i = begin; i < end; i++) (*out)[i] = {std::nullopt, reason, false};
        return true;
    }
    take_answer(resp, begin, out);
    return true;
}

PythonRewardPool::~PythonRewardPool() = default;

void PythonRewardPool::start(size_t w) {
    auto worker = std::make_unique<Worker>();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw Error(std::string("rewards.python: socketpair: ") + std::strerror(errno));
    UniqueFd mine(sv[0]), theirs(sv[1]);
    const std::string sig =
        options_.signature == PythonRewardOptions::Signature::trl ? "trl" : "verl";
    // Everything the child needs is built before fork: it only calls async-signal-safe
    // functions until exec.
    std::vector<std::string> args = {options_.python,   "-u", "-c", kWorker, options_.file,
                                     options_.function, sig};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("rewards.python: fork: ") + std::strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        dup2(theirs.get(), 0);
        dup2(theirs.get(), 1);
        execv(executable_.c_str(), argv.data());
        _exit(127);
    }
    setpgid(pid, pid);
    theirs.reset();
    worker->pid = pid;
    worker->sock = std::move(mine);
    // Importing may take longer than a call (numpy, sympy): at least 30 s.
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(std::max(30.0, options_.timeout_s)));
    std::string line;
    const int got = worker->read_line(deadline, &line);
    const std::string what = "rewards.python: " + options_.file + ": ";
    if (got == 0) throw Error(what + "the worker did not start within 30 s");
    if (got < 0)
        throw Error(what + "the worker exited before it was ready (is '" + options_.python +
                    "' installed?)");
    const json ready = json::parse(line, nullptr, false);
    if (!ready.is_object() || !ready.contains("ready"))
        throw Error(what + "the worker's first line is not its greeting: " + line.substr(0, 200));
    if (!ready["ready"].get<bool>())
        throw Error(what + "cannot load '" + options_.function +
                    "': " + ready.value("error", std::string("unknown error")));
    workers_[w] = std::move(worker);
}

void PythonRewardPool::restart(size_t w) {
    try {
        start(w);
    } catch (const std::exception&) {
    }
}

bool PythonRewardPool::call(size_t w, const std::vector<PythonRewardSample>& samples, size_t begin,
                            size_t end, std::vector<PythonRewardResult>* out) {
    const size_t n = end - begin;
    json req = {{"prompts", json::array()},       {"completions", json::array()},
                {"columns", json::object()},      {"data_sources", json::array()},
                {"ground_truths", json::array()}, {"extra_infos", json::array()}};
    // TRL's convention: every other dataset column as a list over the batch (null where an
    // item lacks it).
    std::vector<std::string> keys;
    for (size_t i = begin; i < end; i++) {
        for (const auto& [k, v] : samples[i].columns.items()) {
            if (k == "prompts" || k == "completions") continue;
            if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
        }
    }
    for (const std::string& k : keys) req["columns"][k] = json::array();
    for (size_t i = begin; i < end; i++) {
        const PythonRewardSample& s = samples[i];
        req["prompts"].push_back(s.prompt);
        req["completions"].push_back(s.completion);
        for (const std::string& k : keys)
            req["columns"][k].push_back(s.columns.contains(k) ? s.columns[k] : json());
        req["data_sources"].push_back(s.columns.value("data_source", json("")));
        req["ground_truths"].push_back(s.answer);
        req["extra_infos"].push_back(s.columns.contains("extra_info") ? s.columns["extra_info"]
                                                                      : s.columns);
    }
    if (options_.sandbox)
        return call_sandboxed(req.dump(-1, ' ', false, json::error_handler_t::replace), begin, end,
                              out);
    const auto fail_all = [&](const std::string& why) {
        for (size_t i = begin; i < end; i++) (*out)[i] = {std::nullopt, why, false};
    };
    Worker& worker = *workers_[w];
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(options_.timeout_s));
    std::string line;
    const int got =
        worker.write_all(req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n")
            ? worker.read_line(deadline, &line)
            : -1;
    if (got == 0) {
        worker.kill_now();
        restart(w);
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.restarts++;
        return false;
    }
    std::string broken;
    json resp;
    if (got < 0) {
        broken = "the worker exited during the call";
    } else {
        resp = json::parse(line, nullptr, false);
        if (!is_answer(resp, n))
            broken = "the worker answered with something that is not its JSON line: " +
                     line.substr(0, 120);
    }
    if (!broken.empty()) {
        fail_all(broken);
        worker.kill_now();
        restart(w);
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.restarts++;
        return true;
    }
    take_answer(resp, begin, out);
    return true;
}

std::vector<PythonRewardResult> PythonRewardPool::score(
    const std::vector<PythonRewardSample>& samples) {
    std::lock_guard<std::mutex> serial(call_mutex_);
    std::vector<PythonRewardResult> out(samples.size());
    if (samples.empty()) return out;
    const size_t chunks = std::min(workers_.size(), samples.size());
    const size_t per = (samples.size() + chunks - 1) / chunks;
    const auto run_chunk = [&](size_t w) {
        const size_t begin = w * per, end = std::min(samples.size(), begin + per);
        if (begin >= end) return;
        if (call(w, samples, begin, end, &out)) return;
        // The call timed out: each sample alone, so only those that hang are marked.
        for (size_t i = begin; i < end; i++) {
            if (end - begin > 1 && call(w, samples, i, i + 1, &out)) continue;
            char buf[96];
            std::snprintf(buf, sizeof buf, "reward_timeout: no answer within %g s",
                          options_.timeout_s);
            out[i] = {std::nullopt, buf, true};
        }
    };
    std::vector<std::thread> threads;
    for (size_t w = 1; w < chunks; w++) threads.emplace_back(run_chunk, w);
    run_chunk(0);
    for (std::thread& t : threads) t.join();
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.calls++;
    stats_.samples += static_cast<int64_t>(samples.size());
    for (const PythonRewardResult& r : out) {
        if (!r.score) stats_.failed++;
        if (r.timeout) stats_.timeouts++;
    }
    return out;
}

PythonRewardStats PythonRewardPool::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

}  // namespace crucible::reward
