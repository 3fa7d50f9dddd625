// The sandbox's limits hold for the whole sandbox, not per process (issue 22, items 2-4):
// memory and tasks through a control group of its own, the scratch a size- and inode-limited
// tmpfs (nosuid, nodev) filled by copy from the caller's directory and copied back after the
// command, the caller's directory never given away, and crucible's own command line hidden
// from the command. Expected values are the limits set here; the kernel enforces them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

const char* const kPython = "/usr/bin/python3";

SandboxOptions quick() {
    SandboxOptions o;
    o.wall_s = 20;
    o.cpu_s = 10;
    o.mem_mb = 512;
    o.procs = 32;
    return o;
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "crucible-limits-test-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
        path = fs::canonical(pattern);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void spit(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
}

// Whether this machine lets us make a control group (root on a cgroup v1/v2 host): where it
// does not, the sandbox says so in its result and the whole-sandbox tests do not apply.
bool cgroups_available() {
    SandboxCgroup probe(64 << 20, 8);
    return probe.memory_limited() && probe.tasks_limited();
}

// ---- memory and tasks for the whole sandbox ----------------------------------------------

TEST(SandboxLimits, MemoryIsCappedForTheWholeSandboxNotPerProcess) {
    if (!cgroups_available()) GTEST_SKIP() << "no control group can be made here";
    SandboxOptions o = quick();
    o.mem_mb = 256;
    // Four processes of 100 MiB each: every one is within the per-process limit (256 MiB of
    // address space), together they are not. The review held 825 MB this way at --mem-mb 256.
    const std::string hold =
        "import time; x = bytearray(100 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); "
        "time.sleep(3)";
    const SandboxResult r = run_sandboxed(o, {"sh", "-c",
                                              "for i in 1 2 3 4; do " + std::string(kPython) +
                                                  " -c \"" + hold + "\" & done; wait; echo done"});
    EXPECT_TRUE(r.whole_sandbox_limits) << r.limits_note;
    EXPECT_TRUE(r.oom_killed) << r.stderr_text;
    EXPECT_GT(r.memory_peak_kb, 150 * 1024);  // it did hold more than one process's worth
    EXPECT_LE(r.memory_peak_kb, 256 * 1024);  // and never more than the limit
}

TEST(SandboxLimits, ThePeakOfTheWholeSandboxIsReported) {
    if (!cgroups_available()) GTEST_SKIP() << "no control group can be made here";
#ifdef CRUCIBLE_SANITIZED
    // The sandbox's init is a fork of this process, whose resident set then includes the
    // sanitizer's shadow memory: max_rss is no longer the command's.
    GTEST_SKIP() << "resident memory is the sanitizer's in a sanitizer build";
#endif
    // Two processes of 40 MiB at once: the sum is seen, not the largest one.
    const std::string hold =
        "import time; x = bytearray(40 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); "
        "time.sleep(1)";
    const SandboxResult r =
        run_sandboxed(quick(), {"sh", "-c",
                                std::string(kPython) + " -c \"" + hold + "\" & " + kPython +
                                    " -c \"" + hold + "\"; wait"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_FALSE(r.oom_killed);
    EXPECT_GT(r.memory_peak_kb, 80 * 1024);
    EXPECT_GT(r.memory_peak_kb, r.max_rss_kb);  // more than any single process
    EXPECT_LT(r.memory_peak_kb, 512 * 1024);
}

TEST(SandboxLimits, TasksAreCappedForTheWholeSandbox) {
    if (!cgroups_available()) GTEST_SKIP() << "no control group can be made here";
    SandboxOptions o = quick();
    o.procs = 12;
    // Threads count: 40 threads cannot all start when the sandbox may hold 12 tasks.
    const SandboxResult r = run_sandboxed(
        o, {kPython, "-c",
            "import threading, time\n"
            "started = 0\n"
            "for i in range(40):\n"
            "    try:\n"
            "        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
            "        started += 1\n"
            "    except RuntimeError:\n"
            "        break\n"
            "print(started)\n"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const int started = std::atoi(r.stdout_text.c_str());
    EXPECT_GT(started, 0);
    EXPECT_LT(started, 12);  // init and the interpreter's own thread count too
}

// ---- the scratch: a tmpfs of its own --------------------------------------------------------

TEST(SandboxLimits, TheScratchIsASizeLimitedTmpfsNosuidNodev) {
    SandboxOptions o = quick();
    o.disk_mb = 8;
    const SandboxResult r = run_sandboxed(
        o, {kPython, "-c",
            "import os\n"
            "st = os.statvfs('.')\n"
            "print(st.f_blocks * st.f_frsize // 2**20)\n"
            "line = [l for l in open('/proc/self/mountinfo') if l.split()[4] == os.getcwd()][0]\n"
            "print(line.split(' - ')[1].split()[0], 'nosuid' in line.split()[5], "
            "'nodev' in line.split()[5])\n"
            "written = 0\n"
            "try:\n"
            "    for i in range(4):\n"
            "        with open(f'f{i}', 'wb') as f: f.write(b'x' * (3 * 2**20))\n"
            "        written += 1\n"
            "except OSError as e:\n"
            "    print('full', e.errno == 28)\n"
            "print(written)\n"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text, "8\ntmpfs True True\nfull True\n2\n");
}

TEST(SandboxLimits, TheScratchHoldsAtMostMaxFiles) {
    SandboxOptions o = quick();
    o.max_files = 50;
    const SandboxResult r = run_sandboxed(o, {kPython, "-c",
                                              "made = 0\n"
                                              "try:\n"
                                              "    for i in range(200):\n"
                                              "        open(f'f{i}', 'w').close()\n"
                                              "        made += 1\n"
                                              "except OSError as e:\n"
                                              "    print('full', e.errno == 28)\n"
                                              "print(made)\n"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text.substr(0, 10), "full True\n");
    const int made = std::atoi(r.stdout_text.c_str() + 10);
    EXPECT_GT(made, 40);
    EXPECT_LT(made, 50);
}

TEST(SandboxLimits, ContentsTravelInAndBackOutAndTheDirectoryKeepsItsOwner) {
    TempDir scratch;
    fs::permissions(scratch.path, fs::perms::owner_all | fs::perms::group_read |
                                      fs::perms::group_exec | fs::perms::others_read |
                                      fs::perms::others_exec);
    fs::create_directory(scratch.path / "in");
    spit(scratch.path / "in" / "data.txt", "given\n");
    spit(scratch.path / "gone.txt", "delete me\n");
    struct stat before {};
    ASSERT_EQ(stat(scratch.path.c_str(), &before), 0);
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    const SandboxResult r =
        run_sandboxed(o, {"sh", "-c",
                          "cat in/data.txt && echo more >> in/data.txt && rm gone.txt && "
                          "mkdir -p out/deep && echo made > out/deep/new.txt"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text, "given\n");
    EXPECT_EQ(slurp(scratch.path / "in" / "data.txt"), "given\nmore\n");
    EXPECT_FALSE(fs::exists(scratch.path / "gone.txt"));
    EXPECT_EQ(slurp(scratch.path / "out" / "deep" / "new.txt"), "made\n");
    struct stat after {
    }, made{};
    ASSERT_EQ(stat(scratch.path.c_str(), &after), 0);
    EXPECT_EQ(after.st_uid, before.st_uid);  // never chowned to the sandbox's user
    EXPECT_EQ(after.st_gid, before.st_gid);
    EXPECT_EQ(after.st_mode, before.st_mode);
    ASSERT_EQ(stat((scratch.path / "out" / "deep" / "new.txt").c_str(), &made), 0);
    EXPECT_EQ(made.st_uid, geteuid());  // what comes back is the caller's
}

TEST(SandboxLimits, SetuidBitsAndSymlinksDoNotComeBack) {
    TempDir scratch;
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    const SandboxResult r = run_sandboxed(
        o, {"sh", "-c",
            "cp /bin/true t && chmod 4755 t && echo x > g && chmod 2775 g && mkdir d && "
            "chmod 1777 d && ln -s /etc/shadow link && ln -s / root && mkfifo fifo"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.scratch_skipped, 3);
    EXPECT_FALSE(fs::exists(fs::symlink_status(scratch.path / "link")));
    EXPECT_FALSE(fs::exists(fs::symlink_status(scratch.path / "root")));
    EXPECT_FALSE(fs::exists(fs::symlink_status(scratch.path / "fifo")));
    struct stat t {
    }, g{}, d{};
    ASSERT_EQ(stat((scratch.path / "t").c_str(), &t), 0);
    ASSERT_EQ(stat((scratch.path / "g").c_str(), &g), 0);
    ASSERT_EQ(stat((scratch.path / "d").c_str(), &d), 0);
    EXPECT_EQ(t.st_mode & 07777, 0755u);
    EXPECT_EQ(g.st_mode & 07777, 0755u);  // setgid and group write dropped
    EXPECT_EQ(d.st_mode & 07000, 0u);
}

TEST(SandboxLimits, AScratchTooLargeToComeBackLeavesTheFolderAndTheResult) {
    // Sparse files cost the tmpfs nothing but would be written out in full: measured first,
    // refused before the caller's folder is touched, and the command's result still stands.
    TempDir scratch;
    spit(scratch.path / "precious.txt", "keep me\n");
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    o.disk_mb = 8;
    o.file_mb = 4096;
    const SandboxResult r =
        run_sandboxed(o, {"sh", "-c", "echo important; truncate -s 1G sparse; rm precious.txt"});
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text, "important\n");
    EXPECT_NE(r.scratch_error.find("disk_mb"), std::string::npos) << r.scratch_error;
    EXPECT_FALSE(fs::exists(scratch.path / "sparse"));
    EXPECT_EQ(slurp(scratch.path / "precious.txt"), "keep me\n");
}

TEST(SandboxLimits, AScratchTooDeepToComeBackLeavesTheFolder) {
    TempDir scratch;
    spit(scratch.path / "precious.txt", "keep me\n");
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    std::string deep = "d";
    for (int i = 0; i < 80; i++) deep += "/d";
    const SandboxResult r = run_sandboxed(o, {"mkdir", "-p", deep});
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_NE(r.scratch_error.find("deeper"), std::string::npos) << r.scratch_error;
    EXPECT_FALSE(fs::exists(scratch.path / "d"));
    EXPECT_EQ(slurp(scratch.path / "precious.txt"), "keep me\n");
}

TEST(SandboxLimits, WhatComesBackIsNotWritableByOthers) {
    // A directory the command made world-writable would be the caller's on the host, open to
    // every local user (who could then plant links in it): group/other write is dropped.
    TempDir scratch;
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    const SandboxResult r =
        run_sandboxed(o, {"sh", "-c", "mkdir d && echo x > d/f && chmod 666 d/f && chmod 777 d"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.scratch_error, "");
    struct stat d {
    }, f{};
    ASSERT_EQ(stat((scratch.path / "d").c_str(), &d), 0);
    ASSERT_EQ(stat((scratch.path / "d" / "f").c_str(), &f), 0);
    EXPECT_EQ(d.st_mode & 07777, 0755u);
    EXPECT_EQ(f.st_mode & 07777, 0644u);
}

TEST(SandboxLimits, AScratchOthersCanChangeIsRefused) {
    // Another user able to write in it could swap an entry for a link during the copy.
    TempDir scratch;
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    fs::permissions(scratch.path, fs::perms::others_write, fs::perm_options::add);
    try {
        run_sandboxed(o, {"true"});
        ADD_FAILURE() << "a world-writable scratch was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("writable by others"), std::string::npos) << e.what();
    }
    fs::permissions(scratch.path, fs::perms::others_write, fs::perm_options::remove);
    if (geteuid() != 0) return;  // only root can give a folder away
    fs::create_directory(scratch.path / "theirs");
    ASSERT_EQ(chown((scratch.path / "theirs").c_str(), 65534, 65534), 0);
    try {
        run_sandboxed(o, {"true"});
        ADD_FAILURE() << "a scratch holding another user's directory was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("belongs to uid 65534"), std::string::npos)
            << e.what();
    }
}

TEST(SandboxLimits, ReadOnlyDirectoriesCopyInWithTheirModes) {
    TempDir scratch;
    fs::create_directory(scratch.path / "ro");
    spit(scratch.path / "ro" / "f", "given\n");
    fs::permissions(scratch.path / "ro", fs::perms::owner_read | fs::perms::owner_exec |
                                             fs::perms::group_read | fs::perms::group_exec |
                                             fs::perms::others_read | fs::perms::others_exec);
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    o.copy_back = false;
    const SandboxResult r = run_sandboxed(o, {"sh", "-c", "cat ro/f; stat -c %a ro; touch new"});
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text, "given\n555\n");
    EXPECT_FALSE(fs::exists(scratch.path / "new"));  // copy_back = false: nothing comes back
    fs::permissions(scratch.path / "ro", fs::perms::owner_write, fs::perm_options::add);
}

TEST(SandboxLimits, AfterAWallClockKillNothingIsCopiedBack) {
    TempDir scratch;
    spit(scratch.path / "kept.txt", "original\n");
    SandboxOptions o = quick();
    o.scratch = scratch.path;
    o.wall_s = 1;
    const SandboxResult r =
        run_sandboxed(o, {"sh", "-c", "echo changed > kept.txt; echo new > new.txt; sleep 100"});
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(slurp(scratch.path / "kept.txt"), "original\n");
    EXPECT_FALSE(fs::exists(scratch.path / "new.txt"));
}

// ---- what the command may see ---------------------------------------------------------------

TEST(SandboxLimits, CruciblesCommandLineAndEnvironmentAreHidden) {
    setenv("CRUCIBLE_LIMITS_TEST_SECRET", "sk-hidden-1234", 1);
    const SandboxResult r = run_sandboxed(
        quick(), {kPython, "-c",
                  "import sys\n"
                  "for p in ['/proc/1/cmdline', '/proc/1/environ', '/proc/1/task/1/cmdline', "
                  "'/proc/kcore', '/proc/keys']:\n"
                  "    try:\n"
                  "        data = open(p, 'rb').read()\n"
                  "        print(p, len(data))\n"
                  "    except OSError as e:\n"
                  "        print(p, 'denied')\n"});
    unsetenv("CRUCIBLE_LIMITS_TEST_SECRET");
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(r.stdout_text.find("sk-hidden"), std::string::npos);
    EXPECT_EQ(r.stdout_text.find("crucible"), std::string::npos) << r.stdout_text;
    EXPECT_NE(r.stdout_text.find("/proc/1/cmdline 0\n"), std::string::npos) << r.stdout_text;
    EXPECT_NE(r.stdout_text.find("/proc/1/task/1/cmdline 0\n"), std::string::npos) << r.stdout_text;
    const auto has = [&](const std::string& line) {
        return r.stdout_text.find(line) != std::string::npos;
    };
    EXPECT_TRUE(has("/proc/1/environ 0\n") || has("/proc/1/environ denied\n")) << r.stdout_text;
    for (const std::string p : {"/proc/kcore", "/proc/keys"}) {  // masked where the host has it
        EXPECT_TRUE(has(p + " 0\n") || has(p + " denied\n")) << r.stdout_text;
    }
}

}  // namespace
}  // namespace crucible
