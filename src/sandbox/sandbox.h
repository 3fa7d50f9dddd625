// Running untrusted code (evolve evaluators, code rewards): one child process tree in fresh
// user, PID, network, mount, IPC, UTS and cgroup namespaces, with rlimits, a seccomp filter, a
// wall-clock kill of the whole tree and capped output capture. The comment at the top of
// sandbox.cpp describes the isolation scheme.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace crucible {

struct SandboxOptions {
    double cpu_s = 10;                  // RLIMIT_CPU per process: SIGXCPU, then SIGKILL 1 s later
    double wall_s = 30;                 // wall clock for the whole tree, then SIGKILL to all of it
    size_t mem_mb = 1024;               // memory of the whole sandbox (cgroup: RAM, swap and
                                        // its scratch files) and each process's address space
    int procs = 64;                     // processes and threads of the whole sandbox (cgroup),
                                        // and RLIMIT_NPROC of its user
    size_t disk_mb = 256;               // size of the scratch tmpfs (the whole sandbox)
    int max_files = 16384;              // files and directories the scratch tmpfs may hold
    size_t file_mb = 64;                // RLIMIT_FSIZE: largest file it may write
    int open_files = 256;               // RLIMIT_NOFILE
    size_t max_output_bytes = 1 << 20;  // per stream; the rest is read and discarded
    std::filesystem::path scratch;      // the working directory (also HOME, TMPDIR) at this
                                        // path inside; its contents are copied into the
                                        // sandbox's tmpfs scratch and what the command left
                                        // is copied back (see run_sandboxed). Empty: start
                                        // from an empty scratch, nothing copied back
    bool copy_back = true;              // copy the scratch back into `scratch` after the command
    std::vector<std::filesystem::path> read_only;  // extra host paths made visible read-only
    std::vector<std::pair<std::string, std::string>> env;  // added to the clean environment
    bool allow_unsafe = false;  // where namespaces are unavailable, run with rlimits + seccomp
                                // only (no filesystem or network isolation) instead of refusing
};

struct SandboxResult {
    int exit_code = -1;        // the command's exit status; -1 when a signal ended it
    int signal = 0;            // the signal that ended it (SIGKILL after a wall timeout), else 0
    bool timed_out = false;    // the wall-clock limit fired and the tree was killed
    bool cpu_limit = false;    // RLIMIT_CPU ended it (SIGXCPU, or SIGKILL past the hard limit)
    double cpu_s = 0;          // user + system CPU of the whole tree
    double wall_s = 0;         // from start to the last process reaped
    long max_rss_kb = 0;       // peak resident set of the largest single process
    long memory_peak_kb = -1;  // peak memory of the whole sandbox (cgroup); -1: not measured
    bool oom_killed = false;   // the whole-sandbox memory limit killed a process
    bool whole_sandbox_limits = false;  // memory and processes were capped for the whole tree
                                        // (a cgroup); false: per-process rlimits only
    std::string limits_note;            // why not, when whole_sandbox_limits is false
    std::string scratch_error;          // why the scratch was not (fully) copied back, else ""
    int64_t scratch_skipped = 0;        // symlinks, devices, FIFOs, sockets not copied back
    std::string stdout_text;            // at most max_output_bytes each
    std::string stderr_text;
    bool stdout_truncated = false;
    bool stderr_truncated = false;
    bool isolated = true;  // false: ran without namespaces (allow_unsafe and none available)
};

// The scratch: a tmpfs of disk_mb MiB and max_files inodes, mounted nosuid,nodev at the
// scratch's host path inside the sandbox (so paths in argv work). The host directory is never
// shown to the command and its ownership is never changed: its contents are copied in (owned
// by the sandbox's user) before the command starts, and after the command exits and every
// process it left is killed, the scratch's directories and regular files replace the host
// directory's contents (owned by the caller, set-user-ID/set-group-ID/sticky bits and group/
// other write dropped; symlinks and special files are not copied back). A scratch too large
// (disk_mb, sparse files at full size) or too deep to come back leaves the directory as it was
// and says why in scratch_error; after a wall-clock kill nothing is copied back. The directory
// must be one only the caller can change (check_scratch_is_private), else Error. Without
// namespaces (allow_unsafe) the command writes the host directory itself.
//
// Runs argv (argv[0] resolved on the sandbox's PATH unless it holds a '/') in the sandbox with
// stdin at /dev/null and a clean environment (PATH, HOME, TMPDIR, LANG + options.env; nothing
// is inherited, so API keys in the caller's environment stay out). Blocks until every process
// of the tree is gone; never outlives wall_s by more than about a second. Thread-safe.
// Throws Error when the sandbox cannot be set up (bad scratch dir, command not found, no
// namespaces and !allow_unsafe); the command's own failures are reported in the result.
SandboxResult run_sandboxed(const SandboxOptions& options, const std::vector<std::string>& argv);

}  // namespace crucible
