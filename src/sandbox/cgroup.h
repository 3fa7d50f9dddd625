// Whole-sandbox limits: one control group per sandbox, so that memory and process counts are
// capped for the whole tree, not per process. The group is created inside the caller's own
// group of each controller: cgroup v2 where the caller's group delegates the `memory` and
// `pids` controllers to its children, else the v1 `memory` and `pids` hierarchies where they
// are mounted and writable (the hybrid layout of these machines). Where neither works (an
// unprivileged caller, no controllers), nothing is created: `memory_limited()` is false, the
// reason is in `unavailable_reason()`, and the sandbox keeps only its per-process rlimits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace crucible {

class SandboxCgroup {
  public:
    // Creates the group(s) with the limits: memory in bytes (RAM + swap + the scratch's tmpfs
    // pages the sandbox writes), tasks (processes and threads). Never throws: a group that
    // cannot be made is reported, not fatal.
    SandboxCgroup(uint64_t memory_bytes, int64_t max_tasks);
    ~SandboxCgroup();  // removes the groups (call once every process in them is gone)
    SandboxCgroup(const SandboxCgroup&) = delete;
    SandboxCgroup& operator=(const SandboxCgroup&) = delete;

    bool memory_limited() const { return !memory_dir_.empty(); }
    bool tasks_limited() const { return !pids_dir_.empty(); }
    const std::string& unavailable_reason() const { return reason_; }

    // Moves `pid` (and so everything it starts later) into the group(s). False if it failed
    // (the reason is then recorded and the limits are not in force).
    bool add(pid_t pid);

    // Peak memory of the whole group in KiB since it was made; -1 when not limited.
    int64_t memory_peak_kb() const;
    // Whether the kernel's OOM killer ended a process of the group.
    bool oom_killed() const;

  private:
    bool v2_ = false;
    std::filesystem::path memory_dir_;  // v2: the one group (memory and pids)
    std::filesystem::path pids_dir_;
    std::string reason_;
};

}  // namespace crucible
