// The sandbox. Isolation scheme:
//
//   crucible (parent)
//     └─ init   clone(NEWUSER|NEWPID|NEWNET|NEWNS|NEWIPC|NEWUTS|NEWCGROUP): PID 1 of the new
//        │      PID namespace, placed in a control group of its own (sandbox/cgroup.h: memory
//        │      and process limits for the whole tree) before it may continue. The parent maps
//        │      the new user namespace's uid/gid 0 to 65534 (nobody) when crucible runs as
//        │      root, else to the caller's own uid. init builds the filesystem view and says
//        │      "ready"; the parent copies the scratch's contents in through /proc/PID/root
//        │      and says "go"; init forks the command and reaps until it exits, then SIGKILLs
//        │      everything left in the namespace (daemons, orphans, fork bombs), reaps it all,
//        │      reports the command's wait status and waits while the parent copies the
//        │      scratch back out; then it exits and the namespace is gone.
//        └─ command   rlimits, no capabilities (bounding set emptied), no_new_privs, seccomp,
//                     clean environment, stdin /dev/null, stdout/stderr into capped pipes.
//
// Filesystem: a fresh tmpfs root holding only read-only binds of /usr, /etc and the /bin,
// /lib... links, /dev/{null,zero,full,random,urandom}, a new /proc (of the new PID namespace),
// any extra read-only paths, and the scratch: a size- and inode-limited tmpfs (nosuid, nodev)
// at the scratch's host path, the one writable mount. /root, /home, /tmp, /work, /var, /sys
// and everything else do not exist inside, and the host's scratch directory is never shown.
// init is a clone of crucible: its /proc/1/cmdline and environ are masked (bound to
// /dev/null), as are the /proc files container runtimes mask (kcore, keys, timer_list, ...).
// As the sandbox user is an unprivileged host uid, files the view does show (/etc/shadow, ...)
// are still subject to normal permissions. Network: a new namespace has only `lo`, left down.
// The wall-clock kill SIGKILLs init (so the kernel kills the whole namespace) and, as a
// backup, init's process group.
//
// Without namespaces (allow_unsafe), the command runs in its own process group with rlimits
// and seccomp only (and as nobody when crucible is root); the group is killed at the end.
//
// Between clone and execve a child of a possibly multi-threaded process may only make system
// calls (no malloc, no locks), so everything it needs is prepared beforehand in a ChildPlan.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>
#include <system_error>

#include "core/error.h"
#include "core/unique_fd.h"
#include "sandbox/cgroup.h"
#include "sandbox/scratch_copy.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kSandboxHostId = 65534;  // nobody/nogroup: what the sandbox is on the host
constexpr int kSetupFailedExit = 125;
constexpr const char* kStaging = "/tmp";
constexpr int kMaxScratchDepth = 64;  // deeper scratches are not copied back  // where the new root
                                      // is assembled before pivot_root

// ---- seccomp ---------------------------------------------------------------------------------

// The filter, compiled once with libseccomp and exported as classic BPF so that the child
// only needs prctl() to install it. Everything not listed is allowed: the namespaces, the
// unprivileged uid and the empty capability set do the rest; this list removes the kernel
// interfaces most used to escape or attack the host.
std::vector<sock_filter> build_seccomp_program() {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == nullptr) throw Error("sandbox: seccomp_init failed");
    struct Guard {
        scmp_filter_ctx c;
        ~Guard() { seccomp_release(c); }
    } guard{ctx};
    const auto add = [&](uint32_t action, const char* name, std::vector<scmp_arg_cmp> args = {}) {
        const int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) return;  // not known to this libseccomp: nothing to deny
        const int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()),
                                              args.empty() ? nullptr : args.data());
        if (rc != 0) {
            throw Error(std::string("sandbox: seccomp rule for ") + name + ": " +
                        std::strerror(-rc));
        }
    };
    const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
    for (const char* name : {"ptrace",
                             "process_vm_readv",
                             "process_vm_writev",
                             "mount",
                             "umount2",
                             "pivot_root",
                             "chroot",
                             "move_mount",
                             "open_tree",
                             "fsopen",
                             "fsconfig",
                             "fsmount",
                             "fspick",
                             "mount_setattr",
                             "kexec_load",
                             "kexec_file_load",
                             "init_module",
                             "finit_module",
                             "delete_module",
                             "bpf",
                             "perf_event_open",
                             "keyctl",
                             "add_key",
                             "request_key",
                             "unshare",
                             "setns",
                             "open_by_handle_at",
                             "name_to_handle_at",
                             "userfaultfd",
                             "io_uring_setup",
                             "io_uring_enter",
                             "io_uring_register",
                             "swapon",
                             "swapoff",
                             "reboot",
                             "acct",
                             "quotactl",
                             "syslog",
                             "lookup_dcookie",
                             "vhangup"}) {
        add(deny, name);
    }
    // Raw and packet sockets (and netlink, the route to configuring interfaces). Their
    // arguments are ints: compare 32 bits, whatever the upper half of the register holds.
    add(deny, "socket", {SCMP_A0_32(SCMP_CMP_EQ, AF_PACKET)});
    add(deny, "socket", {SCMP_A0_32(SCMP_CMP_EQ, AF_NETLINK)});
    add(deny, "socket", {SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW)});  // 0xf: SOCK_TYPE_MASK
    add(deny, "socketpair", {SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW)});
    // No new namespaces from inside. clone3 takes its flags in memory that seccomp cannot
    // read, so it answers ENOSYS and glibc falls back to clone, whose flags we can check.
    for (const unsigned long flag : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                                     CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP}) {
        add(deny, "clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)});
    }
    add(SCMP_ACT_ERRNO(ENOSYS), "clone3");

    const UniqueFd fd(memfd_create("crucible-seccomp", MFD_CLOEXEC));
    if (!fd) throw Error(std::string("sandbox: memfd_create: ") + std::strerror(errno));
    std::vector<sock_filter> program;
    const int rc = seccomp_export_bpf(ctx, fd.get());
    const off_t size = lseek(fd.get(), 0, SEEK_END);
    if (rc == 0 && size > 0 && size % sizeof(sock_filter) == 0) {
        program.resize(size / sizeof(sock_filter));
        if (pread(fd.get(), program.data(), size, 0) != size) program.clear();
    }
    if (program.empty()) throw Error("sandbox: could not export the seccomp filter");
    return program;
}

const std::vector<sock_filter>& seccomp_program() {
    static const std::vector<sock_filter> program = build_seccomp_program();
    return program;
}

// ---- what the child does -------------------------------------------------------------------
// (The child closes descriptors by hand: it leaves only through execve or _exit, so no
// destructor, UniqueFd's included, would ever run there.)

struct FsOp {
    enum Kind { make_dir, symlink, touch, bind_mount, tmpfs } kind;
    std::string path;    // inside the staging root
    std::string target;  // symlink: the link's text; tmpfs: the mount options
    int source = -1;     // bind_mount: index into ChildPlan::sources
};

struct ChildPlan {
    bool namespaces = true;
    bool drop_to_nobody = false;  // unsafe mode as root: become uid/gid 65534
    // Filesystem (namespaces only).
    std::vector<std::string> sources;  // opened O_PATH before the view is built
    std::vector<int> source_fds;       // sized like sources; filled in by the child
    std::vector<FsOp> ops;
    std::string staging_proc;
    std::vector<std::string> proc_masks;  // under staging_proc: /dev/null bound over them
    int null_source = -1;                 // index into sources of /dev/null
    std::string scratch;                  // host path = path inside
    // The command.
    std::string exe;
    std::vector<std::string> argv_s, env_s;
    std::vector<char*> argv, envp;
    std::vector<rlimit> limits;  // indexed like kLimitResources
    sock_fprog seccomp{};
    // Descriptors the child uses (the parent's ends are closed in the child). Plain ints, not
    // UniqueFd: the parent's UniqueFds own them; the cloned child only ever leaves through
    // execve or _exit, so no destructor runs there, and it closes what it must by hand.
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
    int error_fd = -1;   // setup failures: "step\0" + errno
    int status_fd = -1;  // init -> parent: InitMessages
    int sync_fd = -1;    // parent -> init: one byte when the uid maps are written, one when
                         // the scratch is copied in; hang-up: parent died or is done
    std::vector<int> parent_fds;
};

// What init tells the parent on the status pipe (8 bytes: atomic on a pipe).
struct InitMessage {
    enum Kind : int { ready = 1, exited = 2 } kind;
    int value;  // exited: the command's wait status
};

constexpr __rlimit_resource_t kLimitResources[] = {RLIMIT_CPU,   RLIMIT_AS,     RLIMIT_NPROC,
                                                   RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE};

// Async-signal-safe error report: the step's name and errno, then _exit.
[[noreturn]] void child_fail(const ChildPlan& plan, const char* step) {
    const int err = errno;
    char buf[256];
    size_t n = 0;
    while (step[n] != '\0' && n < 200) {
        buf[n] = step[n];
        n++;
    }
    buf[n++] = '\0';
    std::memcpy(buf + n, &err, sizeof err);
    n += sizeof err;
    if (write(plan.error_fd, buf, n) < 0) {
        // Nothing more can be done from here.
    }
    _exit(kSetupFailedExit);
}

// "/proc/self/fd/N" without snprintf (which may allocate).
void fd_path(char (&buf)[32], int fd) {
    const char prefix[] = "/proc/self/fd/";
    std::memcpy(buf, prefix, sizeof prefix - 1);
    char digits[12];
    int k = 0;
    do {
        digits[k++] = static_cast<char>('0' + fd % 10);
        fd /= 10;
    } while (fd > 0);
    size_t n = sizeof prefix - 1;
    while (k > 0) buf[n++] = digits[--k];
    buf[n] = '\0';
}

// True while the parent lives: it keeps its end of the sync pipe open until we are reaped.
bool parent_alive(const ChildPlan& plan) {
    pollfd p{plan.sync_fd, POLLIN, 0};
    while (poll(&p, 1, 0) < 0) {
        if (errno != EINTR) return false;
    }
    return (p.revents & (POLLHUP | POLLERR)) == 0;
}

void become_sandbox_user(const ChildPlan& plan, gid_t gid, uid_t uid) {
    // Raw system calls: glibc's wrappers would try to change the credentials of every thread
    // the parent had (they do not exist here) and can block on a lock copied in the locked
    // state.
    if (plan.drop_to_nobody || plan.namespaces) {
        // Supplementary groups (root's gid 0) would otherwise survive into the namespace.
        if (syscall(SYS_setgroups, 0, nullptr) != 0 && errno != EPERM) {
            child_fail(plan, "setgroups");
        }
    }
    if (syscall(SYS_setresgid, gid, gid, gid) != 0) child_fail(plan, "setresgid");
    if (syscall(SYS_setresuid, uid, uid, uid) != 0) child_fail(plan, "setresuid");
    // Credential changes clear the parent-death signal, so it is set after them.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(plan, "prctl(PDEATHSIG)");
    if (!parent_alive(plan)) _exit(kSetupFailedExit);
}

void build_filesystem(ChildPlan& plan) {
    for (size_t i = 0; i < plan.sources.size(); i++) {
        plan.source_fds[i] = open(plan.sources[i].c_str(), O_PATH | O_CLOEXEC);
        if (plan.source_fds[i] < 0) child_fail(plan, "open a path to bind");
    }
    // The rest of the work needs a uid mapped in the namespace (to create files).
    become_sandbox_user(plan, 0, 0);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        child_fail(plan, "make mounts private");
    }
    if (mount("tmpfs", kStaging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) {
        child_fail(plan, "mount tmpfs root");
    }
    for (const FsOp& op : plan.ops) {
        switch (op.kind) {
            case FsOp::make_dir:
                if (mkdir(op.path.c_str(), 0755) != 0 && errno != EEXIST) child_fail(plan, "mkdir");
                break;
            case FsOp::symlink:
                if (symlink(op.target.c_str(), op.path.c_str()) != 0) child_fail(plan, "symlink");
                break;
            case FsOp::touch: {
                const int fd = open(op.path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0) child_fail(plan, "create a mount point");
                close(fd);
                break;
            }
            case FsOp::bind_mount: {
                char src[32];
                fd_path(src, plan.source_fds[op.source]);
                if (mount(src, op.path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
                    child_fail(plan, "bind mount");
                }
                break;
            }
            case FsOp::tmpfs:
                if (mount("tmpfs", op.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                          op.target.c_str()) != 0) {
                    child_fail(plan, "mount the scratch tmpfs");
                }
                break;
        }
    }
    if (mount("proc", plan.staging_proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) != 0) {
        child_fail(plan, "mount /proc");
    }
    {
        char null_path[32];
        fd_path(null_path, plan.source_fds[plan.null_source]);
        for (const std::string& masked : plan.proc_masks) {
            if (mount(null_path, masked.c_str(), nullptr, MS_BIND, nullptr) != 0 &&
                errno != ENOENT) {
                child_fail(plan, "mask a /proc file");
            }
        }
    }
    for (const int fd : plan.source_fds) close(fd);
    if (chdir(kStaging) != 0) child_fail(plan, "chdir to the new root");
    if (syscall(SYS_pivot_root, ".", ".") != 0) child_fail(plan, "pivot_root");
    if (umount2(".", MNT_DETACH) != 0) child_fail(plan, "detach the old root");
    if (chdir("/") != 0) child_fail(plan, "chdir /");
    // Everything read-only and setuid-free, then the scratch directory writable again.
    mount_attr ro{};
    ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
    if (mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0) {
        child_fail(plan, "make the root read-only");
    }
    mount_attr rw{};
    rw.attr_clr = MOUNT_ATTR_RDONLY;
    rw.attr_set = MOUNT_ATTR_NODEV;
    if (mount_setattr(AT_FDCWD, plan.scratch.c_str(), AT_RECURSIVE, &rw, sizeof rw) != 0) {
        child_fail(plan, "make scratch writable");
    }
    if (sethostname("sandbox", 7) != 0) child_fail(plan, "sethostname");
}

// From here on the process becomes the command.
[[noreturn]] void exec_command(ChildPlan& plan) {
    if (!plan.namespaces) {
        if (setpgid(0, 0) != 0) child_fail(plan, "setpgid");
    }
    if (chdir(plan.scratch.c_str()) != 0) child_fail(plan, "chdir to scratch");
    for (size_t i = 0; i < plan.limits.size(); i++) {
        if (setrlimit(kLimitResources[i], &plan.limits[i]) != 0) {
            child_fail(plan, "setrlimit");
        }
    }
    if (dup2(plan.stdin_fd, 0) < 0 || dup2(plan.stdout_fd, 1) < 0 || dup2(plan.stderr_fd, 2) < 0) {
        child_fail(plan, "dup2");
    }
    // No capabilities, now or after execve (an empty bounding set caps what exec grants root).
    for (int cap = 0; cap <= 63; cap++) {
        // EINVAL: no such capability; EPERM: no CAP_SETPCAP, i.e. an unprivileged caller in
        // unsafe mode, whose capabilities the capset below and no_new_privs already cover.
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM) {
            child_fail(plan, "drop capability bounding set");
        }
    }
    if (plan.drop_to_nobody) {
        become_sandbox_user(plan, kSandboxHostId, kSandboxHostId);
    } else if (!plan.namespaces) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(plan, "prctl(PDEATHSIG)");
        if (!parent_alive(plan)) _exit(kSetupFailedExit);
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capset, &header, data) != 0) child_fail(plan, "capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(plan, "no_new_privs");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &plan.seccomp) != 0) {
        child_fail(plan, "install seccomp filter");
    }
    // Whatever the caller's process had open stays out of the command.
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) child_fail(plan, "close_range");
    execve(plan.exe.c_str(), plan.argv.data(), plan.envp.data());
    child_fail(plan, "execve");
}

// PID 1 of the new namespaces: set up, fork the command, reap until it exits.
[[noreturn]] void run_init(ChildPlan& plan) {
    for (const int fd : plan.parent_fds) close(fd);
    char byte = 0;
    ssize_t n;
    while ((n = read(plan.sync_fd, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) _exit(kSetupFailedExit);  // the parent failed to map our uid, or died
    build_filesystem(plan);
    // The parent fills the scratch through /proc/PID/root, then says go.
    const InitMessage ready{InitMessage::ready, 0};
    if (write(plan.status_fd, &ready, sizeof ready) != sizeof ready) _exit(kSetupFailedExit);
    while ((n = read(plan.sync_fd, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) _exit(kSetupFailedExit);
    if (setsid() < 0) child_fail(plan, "setsid");
    // Not fork(): its atfork handlers take locks (malloc's) that another thread of the
    // parent may have held when we were cloned, which would deadlock here.
    const pid_t command =
        static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, 0));
    if (command < 0) child_fail(plan, "fork the command");
    if (command == 0) exec_command(plan);
    // init keeps only the status pipe (and the sync pipe, to notice the parent's death).
    close(plan.error_fd);
    close(plan.stdin_fd);
    close(plan.stdout_fd);
    close(plan.stderr_fd);
    int command_status = 0;
    for (;;) {
        int status = 0;
        const pid_t pid = waitpid(-1, &status, __WALL);
        if (pid == command) {
            command_status = status;
            break;
        }
        if (pid < 0 && errno != EINTR) _exit(kSetupFailedExit);
    }
    // Nothing may run while the scratch is copied out: kill the rest of the namespace (from
    // PID 1, -1 means every other process in it) and reap until none is left.
    kill(-1, SIGKILL);
    for (;;) {
        if (waitpid(-1, nullptr, __WALL) < 0 && errno != EINTR) break;  // ECHILD: all gone
    }
    const InitMessage exited{InitMessage::exited, command_status};
    if (write(plan.status_fd, &exited, sizeof exited) != sizeof exited) _exit(kSetupFailedExit);
    // Keep the namespace (and its scratch) until the parent has copied it out and hangs up.
    while (read(plan.sync_fd, &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
}

// ---- parent side ---------------------------------------------------------------------------

struct Pipe {
    UniqueFd r, w;
    Pipe() {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            throw Error(std::string("sandbox: pipe: ") + std::strerror(errno));
        }
        r.reset(fds[0]);
        w.reset(fds[1]);
    }
};

const char* const kSandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string resolve_command(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;  // relative ones: to the scratch dir
    std::string path = kSandboxPath;
    size_t start = 0;
    while (start <= path.size()) {
        const size_t end = std::min(path.find(':', start), path.size());
        const std::string candidate = path.substr(start, end - start) + "/" + name;
        struct stat st {};
        if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        start = end + 1;
    }
    throw Error("sandbox: command '" + name + "' not found on the sandbox's PATH (" +
                std::string(kSandboxPath) + "); give an absolute path");
}

// The filesystem view: which host paths appear, and how.
void plan_filesystem(ChildPlan& plan, const SandboxOptions& options) {
    const std::vector<fs::path>& extra_read_only = options.read_only;
    const std::string root = kStaging;
    std::set<std::string> made;
    const auto mkdirs = [&](const std::string& inside) {  // inside: absolute, in the view
        size_t pos = 1;
        while (pos <= inside.size()) {
            const size_t next = std::min(inside.find('/', pos), inside.size());
            const std::string prefix = inside.substr(0, next);
            if (made.insert(prefix).second)
                plan.ops.push_back({FsOp::make_dir, root + prefix, "", -1});
            pos = next + 1;
        }
    };
    const auto parent_of = [](const std::string& p) { return p.substr(0, p.rfind('/')); };
    const auto bind = [&](const std::string& host, const std::string& inside, bool is_dir) {
        if (is_dir) {
            mkdirs(inside);
        } else {
            if (!parent_of(inside).empty()) mkdirs(parent_of(inside));
            plan.ops.push_back({FsOp::touch, root + inside, "", -1});
        }
        plan.sources.push_back(host);
        plan.ops.push_back(
            {FsOp::bind_mount, root + inside, "", static_cast<int>(plan.sources.size() - 1)});
    };
    for (const char* p : {"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
        struct stat st {};
        if (lstat(p, &st) != 0) continue;
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            const ssize_t n = readlink(p, target, sizeof target - 1);
            if (n <= 0) continue;
            plan.ops.push_back({FsOp::symlink, root + p, std::string(target, n), -1});
        } else if (S_ISDIR(st.st_mode)) {
            bind(p, p, true);
        }
    }
    for (const fs::path& extra : extra_read_only) {
        std::error_code ec;
        const fs::path canonical = fs::canonical(extra, ec);
        if (ec) throw Error("sandbox: read-only path " + extra.string() + ": " + ec.message());
        bind(canonical.string(), canonical.string(), fs::is_directory(canonical));
    }
    mkdirs("/dev");
    for (const char* dev : {"null", "zero", "full", "random", "urandom"}) {
        bind(std::string("/dev/") + dev, std::string("/dev/") + dev, false);
        if (std::strcmp(dev, "null") == 0)
            plan.null_source = static_cast<int>(plan.sources.size()) - 1;
    }
    plan.ops.push_back({FsOp::symlink, root + "/dev/fd", "/proc/self/fd", -1});
    plan.ops.push_back({FsOp::symlink, root + "/dev/stdin", "/proc/self/fd/0", -1});
    plan.ops.push_back({FsOp::symlink, root + "/dev/stdout", "/proc/self/fd/1", -1});
    plan.ops.push_back({FsOp::symlink, root + "/dev/stderr", "/proc/self/fd/2", -1});
    mkdirs("/proc");
    plan.staging_proc = root + "/proc";
    // init's command line and environment are crucible's; the rest is what container
    // runtimes mask (kernel memory, keyrings, timers, the scheduler's debug view).
    for (const char* masked :
         {"/1/cmdline", "/1/environ", "/1/task/1/cmdline", "/1/task/1/environ", "/kcore", "/keys",
          "/timer_list", "/sched_debug", "/sysrq-trigger", "/kallsyms"}) {
        plan.proc_masks.push_back(plan.staging_proc + masked);
    }
    mkdirs(plan.scratch);
    plan.ops.push_back({FsOp::tmpfs, root + plan.scratch,
                        "size=" + std::to_string(options.disk_mb) +
                            "m,nr_inodes=" + std::to_string(options.max_files) + ",mode=0755",
                        -1});
}

void write_proc_file(pid_t pid, const char* name, const std::string& text) {
    const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
    const UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        throw Error("sandbox: writing " + path + ": " + std::strerror(errno));
    }
}

// Reads what is available into `out`, keeping at most `cap` bytes. Returns false at EOF.
bool drain(int fd, std::string& out, bool& truncated, size_t cap) {
    char buf[65536];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    if (n == 0) return false;
    const size_t room = cap - std::min(cap, out.size());
    out.append(buf, std::min(room, static_cast<size_t>(n)));
    if (static_cast<size_t>(n) > room) truncated = true;
    return true;
}

struct SetupFailure {
    std::string step;
    int err = 0;
};

// One attempt; returns false (with `failure` filled) when setup failed before the command ran.
// With namespaces, `cgroup` (if any) receives init before it may continue, and the scratch is
// copied in from `host_scratch` when init is ready and back into it (if `copy_back`) when the
// command has exited and its namespace is empty.
bool attempt(const SandboxOptions& options, ChildPlan& plan, SandboxResult& result,
             SetupFailure& failure, SandboxCgroup* cgroup, const fs::path& host_scratch,
             bool copy_back) {
    Pipe out, err, errors, status, sync;
    UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) throw Error(std::string("sandbox: /dev/null: ") + std::strerror(errno));
    plan.stdin_fd = devnull.get();
    plan.stdout_fd = out.w.get();
    plan.stderr_fd = err.w.get();
    plan.error_fd = errors.w.get();
    plan.status_fd = status.w.get();
    plan.sync_fd = sync.r.get();
    plan.parent_fds = {out.r.get(), err.r.get(), errors.r.get(), status.r.get(), sync.w.get()};
    plan.source_fds.assign(plan.sources.size(), -1);
    const bool as_root = geteuid() == 0;

    unsigned long flags = SIGCHLD;
    if (plan.namespaces) {
        flags |= CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC |
                 CLONE_NEWUTS | CLONE_NEWCGROUP;
    }
    const auto start = std::chrono::steady_clock::now();
    // The raw system call: glibc's fork handlers (and sanitizer interceptors) stay out of a
    // child that only makes system calls.
    const long pid_or_error = syscall(SYS_clone, flags, nullptr, nullptr, nullptr, 0);
    if (pid_or_error < 0) {
        failure = {"clone", errno};
        return false;
    }
    const pid_t pid = static_cast<pid_t>(pid_or_error);
    if (pid == 0) {
        if (plan.namespaces) run_init(plan);
        for (const int fd : plan.parent_fds) close(fd);
        exec_command(plan);
    }
    if (!plan.namespaces) setpgid(pid, pid);  // also done by the child; whichever runs first
    out.w.reset();
    err.w.reset();
    errors.w.reset();
    status.w.reset();
    sync.r.reset();
    // (Raw system calls: glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++.)
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    const auto kill_all = [&]() {
        if (pidfd.get() >= 0) {
            syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
        } else {
            kill(pid, SIGKILL);
        }
        killpg(pid, SIGKILL);
    };
    if (plan.namespaces) {
        const uid_t host_uid = as_root ? kSandboxHostId : geteuid();
        const gid_t host_gid = as_root ? kSandboxHostId : getegid();
        try {
            // An unprivileged caller may only map its own ids, after giving up setgroups.
            if (!as_root) write_proc_file(pid, "setgroups", "deny");
            write_proc_file(pid, "uid_map", "0 " + std::to_string(host_uid) + " 1\n");
            write_proc_file(pid, "gid_map", "0 " + std::to_string(host_gid) + " 1\n");
        } catch (const Error& e) {
            kill_all();
            waitpid(pid, nullptr, 0);
            failure = {std::string("map uids: ") + e.what(), 0};
            return false;
        }
        if (cgroup != nullptr) cgroup->add(pid);
        const char go = 1;
        if (write(sync.w.get(), &go, 1) != 1) {
            kill_all();
            waitpid(pid, nullptr, 0);
            failure = {"sync", errno};
            return false;
        }
    }

    // Drain output and setup errors until the tree is gone or the wall clock runs out.
    using clock = std::chrono::steady_clock;
    auto deadline = start + std::chrono::duration_cast<clock::duration>(
                                std::chrono::duration<double>(options.wall_s));
    std::string setup_errors, copy_error;
    bool setup_trunc = false, exited = false, killed = false;
    int out_fd = out.r.get(), err_fd = err.r.get(), errors_fd = errors.r.get();
    int status_fd = plan.namespaces ? status.r.get() : -1;
    int command_status = 0;
    bool have_status = false;
    // init's messages: fill the scratch when it is ready, empty it when the command is done.
    const std::string sandbox_scratch = "/proc/" + std::to_string(pid) + "/root" + plan.scratch;
    const auto on_message = [&](const InitMessage& m) {
        try {
            if (m.kind == InitMessage::ready) {
                copy_into_sandbox(host_scratch, sandbox_scratch, as_root, kSandboxHostId,
                                  kSandboxHostId);
                const char go = 1;
                if (write(sync.w.get(), &go, 1) != 1) throw Error("sandbox: init went away");
            } else if (m.kind == InitMessage::exited && !killed) {
                // (After a kill, init may be gone with its scratch: nothing to copy.)
                command_status = m.value;
                have_status = true;
                if (copy_back) {
                    result.scratch_error = copy_out_of_sandbox(
                        sandbox_scratch, host_scratch, static_cast<uint64_t>(options.disk_mb) << 20,
                        kMaxScratchDepth, &result.scratch_skipped);
                }
                sync.w.reset();  // init may go: the namespace and its scratch end with it
            }
        } catch (const Error& e) {
            copy_error = e.what();
            kill_all();
            killed = true;
        }
    };
    while (!exited || out_fd >= 0 || err_fd >= 0 || errors_fd >= 0) {
        const auto now = clock::now();
        if (now >= deadline) {
            if (!exited && !killed && !have_status) {
                kill_all();
                killed = true;
                result.timed_out = true;
                deadline = now + std::chrono::seconds(2);  // to collect what is left
                continue;
            }
            break;  // pipes held open by something outside our reach: stop reading
        }
        pollfd fds[5] = {{out_fd, POLLIN, 0},
                         {err_fd, POLLIN, 0},
                         {errors_fd, POLLIN, 0},
                         {exited ? -1 : pidfd.get(), POLLIN, 0},
                         {status_fd, POLLIN, 0}};
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        // Without a pidfd the exit is noticed by polling waitid.
        const long cap_ms = pidfd.get() >= 0 ? 1000 : 50;
        const int timeout = static_cast<int>(std::min<long>(left.count() + 1, cap_ms));
        const int ready = poll(fds, 5, timeout);
        if (ready < 0 && errno != EINTR) break;
        if (fds[0].revents != 0 &&
            !drain(out_fd, result.stdout_text, result.stdout_truncated, options.max_output_bytes)) {
            out_fd = -1;
        }
        if (fds[1].revents != 0 &&
            !drain(err_fd, result.stderr_text, result.stderr_truncated, options.max_output_bytes)) {
            err_fd = -1;
        }
        if (fds[2].revents != 0 && !drain(errors_fd, setup_errors, setup_trunc, 4096)) {
            errors_fd = -1;
        }
        if (fds[4].revents != 0) {
            InitMessage m{};
            const ssize_t n = read(status_fd, &m, sizeof m);
            if (n == static_cast<ssize_t>(sizeof m)) {
                on_message(m);
            } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                status_fd = -1;
            }
        }
        if (!exited) {
            siginfo_t info{};
            const bool gone = pidfd.get() >= 0
                                  ? (fds[3].revents != 0)
                                  : (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                                     info.si_pid == pid);
            if (gone) {
                exited = true;
                // Without namespaces, what the command left in its group goes with it.
                if (!plan.namespaces) killpg(pid, SIGKILL);
                deadline = std::min(deadline, clock::now() + std::chrono::seconds(1));
            }
        }
    }
    if (!exited && !killed) kill_all();
    int wait_status = 0;
    rusage usage{};
    while (wait4(pid, &wait_status, 0, &usage) < 0 && errno == EINTR) {
    }
    result.wall_s = std::chrono::duration<double>(clock::now() - start).count();
    result.cpu_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 + usage.ru_stime.tv_sec +
                   usage.ru_stime.tv_usec * 1e-6;
    result.max_rss_kb = usage.ru_maxrss;

    if (!setup_errors.empty()) {
        const size_t nul = setup_errors.find('\0');
        failure.step = setup_errors.substr(0, nul);
        if (nul != std::string::npos && setup_errors.size() >= nul + 1 + sizeof(int)) {
            std::memcpy(&failure.err, setup_errors.data() + nul + 1, sizeof(int));
        }
        return false;
    }
    if (!copy_error.empty()) throw Error(copy_error);
    if (!plan.namespaces) {
        command_status = wait_status;
        have_status = true;
    } else if (!have_status && !result.timed_out && WIFEXITED(wait_status) &&
               WEXITSTATUS(wait_status) == kSetupFailedExit) {
        failure = {"sandbox init", 0};
        return false;
    }
    if (have_status && WIFEXITED(command_status)) {
        result.exit_code = WEXITSTATUS(command_status);
    } else if (have_status && WIFSIGNALED(command_status)) {
        result.signal = WTERMSIG(command_status);
    } else {
        result.signal = SIGKILL;  // init was killed (wall clock) before the command finished
    }
    const double cpu_limit = std::ceil(options.cpu_s);
    result.cpu_limit = result.signal == SIGXCPU ||
                       (result.signal == SIGKILL && !result.timed_out && result.cpu_s >= cpu_limit);
    return true;
}

}  // namespace

SandboxResult run_sandboxed(const SandboxOptions& options, const std::vector<std::string>& argv) {
    if (argv.empty()) throw Error("sandbox: no command given");
    if (!(options.wall_s > 0) || !(options.cpu_s > 0) || options.mem_mb == 0 ||
        options.procs <= 0 || options.open_files <= 0 || options.disk_mb == 0 ||
        options.max_files <= 0) {
        throw Error(
            "sandbox: limits must be positive (wall_s, cpu_s, mem_mb, procs, open_files, disk_mb, "
            "max_files)");
    }
    // Scratch: the caller's directory, or a fresh one removed afterwards.
    fs::path scratch = options.scratch;
    struct TempDir {
        fs::path path;
        ~TempDir() {
            std::error_code ec;
            if (!path.empty()) fs::remove_all(path, ec);
        }
    } temp;
    if (scratch.empty()) {
        std::string pattern = (fs::temp_directory_path() / "crucible-sandbox-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) {
            throw Error("sandbox: cannot create a scratch directory: " +
                        std::string(std::strerror(errno)));
        }
        scratch = temp.path = pattern;
    }
    std::error_code ec;
    scratch = fs::canonical(scratch, ec);
    if (ec || !fs::is_directory(scratch)) {
        throw Error("sandbox: scratch directory " + options.scratch.string() +
                    " does not exist or is not a directory");
    }
    if (scratch == "/" || scratch == kStaging) {
        throw Error("sandbox: scratch directory must not be / or /tmp itself");
    }
    // The caller's directory is never shown to the command nor given to the sandbox's user:
    // its contents travel in and out by copy (see attempt()), which nobody else may disturb.
    if (temp.path.empty()) check_scratch_is_private(scratch);

    ChildPlan plan;
    plan.scratch = scratch.string();
    plan.exe = resolve_command(argv[0]);
    plan.argv_s = argv;
    std::vector<std::pair<std::string, std::string>> env = {{"PATH", kSandboxPath},
                                                            {"HOME", plan.scratch},
                                                            {"TMPDIR", plan.scratch},
                                                            {"LANG", "C.UTF-8"}};
    for (const auto& [key, value] : options.env) {
        auto it =
            std::find_if(env.begin(), env.end(), [&](const auto& kv) { return kv.first == key; });
        if (it != env.end()) {
            it->second = value;
        } else {
            env.emplace_back(key, value);
        }
    }
    for (const auto& [key, value] : env) plan.env_s.push_back(key + "=" + value);
    for (std::string& s : plan.argv_s) plan.argv.push_back(s.data());
    plan.argv.push_back(nullptr);
    for (std::string& s : plan.env_s) plan.envp.push_back(s.data());
    plan.envp.push_back(nullptr);
    const rlim_t cpu = static_cast<rlim_t>(std::ceil(options.cpu_s));
    plan.limits = {
        {cpu, cpu + 1},
        {static_cast<rlim_t>(options.mem_mb) << 20, static_cast<rlim_t>(options.mem_mb) << 20},
        {static_cast<rlim_t>(options.procs), static_cast<rlim_t>(options.procs)},
        {static_cast<rlim_t>(options.file_mb) << 20, static_cast<rlim_t>(options.file_mb) << 20},
        {static_cast<rlim_t>(options.open_files), static_cast<rlim_t>(options.open_files)},
        {0, 0}};
    const std::vector<sock_filter>& program = seccomp_program();
    plan.seccomp.len = static_cast<unsigned short>(program.size());
    plan.seccomp.filter = const_cast<sock_filter*>(program.data());
    plan_filesystem(plan, options);

    SandboxResult result;
    SetupFailure failure;
    {
        // Whole-sandbox memory and task limits; with none, the rlimits still hold per process.
        SandboxCgroup cgroup(static_cast<uint64_t>(options.mem_mb) << 20, options.procs);
        const bool copy_back = temp.path.empty() && options.copy_back;
        if (attempt(options, plan, result, failure, &cgroup, scratch, copy_back)) {
            result.whole_sandbox_limits = cgroup.memory_limited() && cgroup.tasks_limited();
            result.limits_note = cgroup.unavailable_reason();
            result.memory_peak_kb = cgroup.memory_peak_kb();
            result.oom_killed = cgroup.oom_killed();
            return result;
        }
    }
    const std::string why =
        failure.step + (failure.err != 0 ? std::string(": ") + std::strerror(failure.err) : "");
    if (failure.step == "execve") {
        throw Error("sandbox: cannot execute " + plan.exe + ": " + std::strerror(failure.err));
    }
    if (!options.allow_unsafe) {
        throw Error("sandbox: cannot isolate the command in namespaces (" + why +
                    "); this kernel or container does not allow unprivileged user namespaces. "
                    "Pass --unsafe-no-namespaces (allow_unsafe) to run it with rlimits and "
                    "seccomp only, without filesystem or network isolation");
    }
    plan.namespaces = false;
    plan.drop_to_nobody = geteuid() == 0;
    // Unisolated, the command writes the host directory itself, as nobody when crucible is
    // root: only a scratch of our own is given to nobody; a caller's keeps its owner (and must
    // be writable by nobody for the command to write it).
    if (plan.drop_to_nobody && !temp.path.empty() &&
        chown(scratch.c_str(), kSandboxHostId, kSandboxHostId) != 0) {
        throw Error("sandbox: chown " + scratch.string() + ": " + std::strerror(errno));
    }
    result = SandboxResult{};
    result.isolated = false;
    result.limits_note = "no namespaces: per-process rlimits only";
    if (attempt(options, plan, result, failure, nullptr, scratch, false)) return result;
    if (failure.step == "execve") {
        throw Error("sandbox: cannot execute " + plan.exe + ": " + std::strerror(failure.err));
    }
    throw Error("sandbox: cannot start the command even without namespaces (" + failure.step +
                (failure.err != 0 ? std::string(": ") + std::strerror(failure.err) : "") + ")");
}

}  // namespace crucible
