#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/unique_fd.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(s);
    while (std::getline(in, part, sep)) parts.push_back(part);
    return parts;
}

// Writes `text` to a control file; errno's message on failure, "" on success.
std::string write_control(const fs::path& path, const std::string& text) {
    const UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return path.string() + ": " + std::strerror(errno);
    const ssize_t n = write(fd.get(), text.data(), text.size());
    const int err = errno;
    if (n != static_cast<ssize_t>(text.size())) return path.string() + ": " + std::strerror(err);
    return "";
}

// The value of "key N" in a flat-keyed control file (memory.events, memory.oom_control).
int64_t keyed_value(const fs::path& path, const std::string& key) {
    std::istringstream in(read_text(path));
    std::string k;
    int64_t v = 0;
    while (in >> k >> v) {
        if (k == key) return v;
    }
    return 0;
}

// The caller's own group in a hierarchy: the mount point of the hierarchy (from mountinfo:
// fstype `cgroup2`, or `cgroup` with `controller` among its super options) joined with the
// caller's path in it (from /proc/self/cgroup). Empty when that hierarchy is not mounted.
fs::path own_group(const std::string& controller) {
    std::string mount_point, mount_root;
    {
        std::istringstream in(read_text("/proc/self/mountinfo"));
        std::string line;
        while (std::getline(in, line)) {
            const size_t dash = line.find(" - ");
            if (dash == std::string::npos) continue;
            const std::vector<std::string> left = split(line.substr(0, dash), ' ');
            const std::vector<std::string> right = split(line.substr(dash + 3), ' ');
            if (left.size() < 5 || right.size() < 3) continue;
            const bool match =
                controller.empty() ? right[0] == "cgroup2" : right[0] == "cgroup" && [&] {
                    for (const std::string& o : split(right[2], ','))
                        if (o == controller) return true;
                    return false;
                }();
            if (match) {
                mount_root = left[3];
                mount_point = left[4];
                break;
            }
        }
    }
    if (mount_point.empty()) return {};
    std::istringstream in(read_text("/proc/self/cgroup"));
    std::string line;
    while (std::getline(in, line)) {
        const std::vector<std::string> f = split(line, ':');
        if (f.size() < 3) continue;
        const std::string path = line.substr(f[0].size() + f[1].size() + 2);
        const bool match = controller.empty() ? f[0] == "0" && f[1].empty() : [&] {
            for (const std::string& c : split(f[1], ','))
                if (c == controller) return true;
            return false;
        }();
        if (!match) continue;
        std::string rel = path;
        if (mount_root != "/" && rel.compare(0, mount_root.size(), mount_root) == 0) {
            rel = rel.substr(mount_root.size());
        }
        return fs::path(mount_point) / fs::path(rel).relative_path();
    }
    return {};
}

// A name no other sandbox of this or another process uses.
std::string group_name() {
    static std::atomic<uint64_t> counter{0};
    return "crucible-sandbox-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

// Makes `parent/name`; "" on success, else why not.
std::string make_group(const fs::path& parent, const std::string& name, fs::path& made) {
    const fs::path dir = parent / name;
    if (mkdir(dir.c_str(), 0755) != 0) return dir.string() + ": " + std::strerror(errno);
    made = dir;
    return "";
}

void remove_group(const fs::path& dir) {
    if (dir.empty()) return;
    // The last processes' exit is reported before the group is fully empty; retry briefly.
    for (int attempt = 0; attempt < 100; attempt++) {
        if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
        if (errno != EBUSY) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

// Groups left by a crucible that was killed before it could remove them: the pid in their
// name is gone (a live process, ours or another user's, keeps its groups).
void remove_stale_groups(const fs::path& parent) {
    const std::string prefix = "crucible-sandbox-";
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
        if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            rmdir(it->path().c_str());  // fails harmlessly while it still holds a process
        }
    }
}

}  // namespace

SandboxCgroup::SandboxCgroup(uint64_t memory_bytes, int64_t max_tasks) {
    const std::string name = group_name();
    const std::string mem = std::to_string(memory_bytes);
    const std::string tasks = std::to_string(max_tasks);
    // v2: usable when the caller's group already hands memory and pids to its children.
    const fs::path unified = own_group("");
    if (!unified.empty()) {
        const std::string delegated = read_text(unified / "cgroup.subtree_control");
        bool memory = false, pids = false;
        for (const std::string& c : split(delegated, ' ')) {
            const std::string t = c.substr(0, c.find('\n'));
            memory |= t == "memory";
            pids |= t == "pids";
        }
        fs::path dir;
        if (memory && pids && make_group(unified, name, dir).empty()) {
            std::string why = write_control(dir / "memory.max", mem);
            if (why.empty()) why = write_control(dir / "memory.swap.max", "0");
            if (why.empty()) why = write_control(dir / "pids.max", tasks);
            if (why.empty()) {
                v2_ = true;
                memory_dir_ = pids_dir_ = dir;
                return;
            }
            remove_group(dir);
        }
    }
    // v1: the memory and the pids hierarchies, each on its own.
    std::string why;
    const fs::path memory_parent = own_group("memory");
    const fs::path pids_parent = own_group("pids");
    static std::once_flag swept;  // once per process: the names of the dead do not come back
    std::call_once(swept, [&] {
        for (const fs::path& p : {memory_parent, pids_parent, unified}) {
            if (!p.empty()) remove_stale_groups(p);
        }
    });
    if (memory_parent.empty()) {
        why = "no memory controller is mounted";
    } else {
        fs::path dir;
        why = make_group(memory_parent, name, dir);
        if (why.empty()) why = write_control(dir / "memory.limit_in_bytes", mem);
        // Swap counts too where the kernel accounts it (memsw >= limit, so set after it).
        if (why.empty() && fs::exists(dir / "memory.memsw.limit_in_bytes")) {
            why = write_control(dir / "memory.memsw.limit_in_bytes", mem);
        }
        if (why.empty()) {
            memory_dir_ = dir;
        } else {
            remove_group(dir);
        }
    }
    std::string pids_why;
    if (pids_parent.empty()) {
        pids_why = "no pids controller is mounted";
    } else {
        fs::path dir;
        pids_why = make_group(pids_parent, name, dir);
        if (pids_why.empty()) pids_why = write_control(dir / "pids.max", tasks);
        if (pids_why.empty()) {
            pids_dir_ = dir;
        } else {
            remove_group(dir);
        }
    }
    if (!why.empty() || !pids_why.empty()) {
        reason_ = why.empty() ? pids_why : pids_why.empty() ? why : why + "; " + pids_why;
    }
}

SandboxCgroup::~SandboxCgroup() {
    remove_group(memory_dir_);
    if (pids_dir_ != memory_dir_) remove_group(pids_dir_);
}

bool SandboxCgroup::add(pid_t pid) {
    bool ok = true;
    for (fs::path* dir : {&memory_dir_, &pids_dir_}) {
        if (dir->empty() || (dir == &pids_dir_ && v2_)) continue;  // v2: one group for both
        const std::string why = write_control(*dir / "cgroup.procs", std::to_string(pid));
        if (why.empty()) continue;
        reason_ = why;  // this limit is not in force: say so, keep the other
        remove_group(*dir);
        dir->clear();
        if (v2_) pids_dir_.clear();
        ok = false;
    }
    return ok;
}

int64_t SandboxCgroup::memory_peak_kb() const {
    if (memory_dir_.empty()) return -1;
    const std::string text =
        read_text(memory_dir_ / (v2_ ? "memory.peak" : "memory.max_usage_in_bytes"));
    char* end = nullptr;
    const long long bytes = std::strtoll(text.c_str(), &end, 10);
    if (end == text.c_str() || bytes < 0) return -1;
    return bytes / 1024;
}

bool SandboxCgroup::oom_killed() const {
    if (memory_dir_.empty()) return false;
    return keyed_value(memory_dir_ / (v2_ ? "memory.events" : "memory.oom_control"), "oom_kill") >
           0;
}

}  // namespace crucible
