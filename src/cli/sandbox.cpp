// `crucible sandbox run [limits] -- CMD ARGS...`: run one command in the sandbox and print the
// result as one JSON object (exit 0 whenever the sandbox itself worked).
#include "sandbox/sandbox.h"

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace crucible::cli {

using nlohmann::json;

std::function<int()> add_sandbox(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("sandbox", "Run untrusted commands in the sandbox");
    cmd->require_subcommand(1);
    CLI::App* run = cmd->add_subcommand(
        "run", "Run CMD ARGS... in the sandbox and print the result as one JSON object");
    struct Options {
        SandboxOptions sandbox;
        std::string scratch;
        std::vector<std::string> command;
    };
    auto opt = std::make_shared<Options>();
    SandboxOptions& s = opt->sandbox;
    run->add_option("--cpu-s", s.cpu_s, "CPU seconds per process (RLIMIT_CPU)")
        ->capture_default_str();
    run->add_option("--mem-mb", s.mem_mb,
                    "memory of the whole sandbox (cgroup, with its scratch files) and address "
                    "space of each process, MiB")
        ->capture_default_str();
    run->add_option("--wall-s", s.wall_s, "wall-clock seconds, then the whole tree is killed")
        ->capture_default_str();
    run->add_option("--procs", s.procs, "processes and threads of the whole sandbox (cgroup)")
        ->capture_default_str();
    run->add_option("--disk-mb", s.disk_mb, "size of the scratch (a tmpfs), MiB")
        ->capture_default_str();
    run->add_option("--max-files", s.max_files, "files and directories the scratch may hold")
        ->capture_default_str();
    run->add_option("--file-mb", s.file_mb, "largest file it may write, MiB")
        ->capture_default_str();
    run->add_option("--open-files", s.open_files, "open files (RLIMIT_NOFILE)")
        ->capture_default_str();
    run->add_option("--max-output", s.max_output_bytes, "bytes kept of stdout and of stderr")
        ->capture_default_str();
    run->add_option("--scratch", opt->scratch,
                    "a directory whose contents are copied into the sandbox's scratch and which "
                    "receives what the command left there (default: an empty scratch)");
    run->add_option("--read-only", s.read_only, "extra host path visible read-only (repeatable)");
    run->add_flag("--unsafe-no-namespaces", s.allow_unsafe,
                  "where namespaces are unavailable, run with rlimits and seccomp only");
    run->add_option("command", opt->command, "the command and its arguments (after --)")
        ->required();
    return [opt]() {
        opt->sandbox.scratch = opt->scratch;
        const SandboxResult r = run_sandboxed(opt->sandbox, opt->command);
        const json out = {{"exit_code", r.exit_code},
                          {"signal", r.signal},
                          {"timed_out", r.timed_out},
                          {"cpu_limit", r.cpu_limit},
                          {"cpu_s", r.cpu_s},
                          {"wall_s", r.wall_s},
                          {"max_rss_kb", r.max_rss_kb},
                          {"memory_peak_kb", r.memory_peak_kb},
                          {"oom_killed", r.oom_killed},
                          {"whole_sandbox_limits", r.whole_sandbox_limits},
                          {"limits_note", r.limits_note},
                          {"scratch_skipped", r.scratch_skipped},
                          {"scratch_error", r.scratch_error},
                          {"stdout", r.stdout_text},
                          {"stdout_truncated", r.stdout_truncated},
                          {"stderr", r.stderr_text},
                          {"stderr_truncated", r.stderr_truncated},
                          {"isolated", r.isolated}};
        std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
        return 0;
    };
}

}  // namespace crucible::cli
