#include "sandbox/scratch_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

constexpr auto kPermissionBits =
    fs::perms::owner_all | fs::perms::group_all | fs::perms::others_all;

[[noreturn]] void fail(const char* what, const fs::path& entry, const std::string& why) {
    throw Error(std::string("sandbox: ") + what + " " + entry.string() + ": " + why);
}

// Runs `f` with this thread's file-system identity (setfsuid/setfsgid: per thread, unlike
// setuid) switched to (uid, gid) when `as_user`. A tmpfs mounted inside the sandbox's user
// namespace accepts new files only from ids mapped into it: root is not, the sandbox's user is.
template <typename F>
auto with_fs_identity(bool as_user, uid_t uid, gid_t gid, F f) {
    if (!as_user) return f();
    struct Restore {
        long uid, gid;
        ~Restore() {
            syscall(SYS_setfsuid, uid);
            syscall(SYS_setfsgid, gid);
        }
    } restore{syscall(SYS_setfsuid, uid), syscall(SYS_setfsgid, gid)};
    return f();
}

// A regular file's bytes into a new file made by `create(mode)` (an fd or -1 with errno),
// never through a symbolic link at the source, with plain read/write: the in-kernel copy
// routes (copy_file_range, sendfile) are not used across a tmpfs seen through /proc/PID/root.
// "" on success, else why not.
template <typename Create>
std::string copy_bytes(const fs::path& from, mode_t mode, Create create) {
    // O_NONBLOCK: a FIFO put in the file's place must not block the copy.
    const UniqueFd in(open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in) return std::strerror(errno);
    struct stat st {};
    if (fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) return "not a regular file any more";
    UniqueFd out(create(mode));
    if (!out) return std::strerror(errno);
    std::string why;
    char buf[1 << 16];
    while (why.empty()) {
        const ssize_t n = read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) why = std::strerror(errno);
        if (n <= 0) break;
        for (ssize_t done = 0; done < n && why.empty();) {
            const ssize_t w = write(out.get(), buf + done, static_cast<size_t>(n - done));
            if (w < 0 && errno != EINTR) why = std::strerror(errno);
            if (w > 0) done += w;
        }
    }
    // The mode exactly (open's mode is masked by the umask).
    if (why.empty() && fchmod(out.get(), mode) != 0) why = std::strerror(errno);
    if (out.close() != 0 && why.empty()) why = std::strerror(errno);
    return why;
}

int create_file(const fs::path& to, mode_t mode) {
    return open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
}

}  // namespace

void check_scratch_is_private(const fs::path& dir) {
    const uid_t me = geteuid();
    const auto refuse = [&](const fs::path& entry, const std::string& why) {
        throw Error("sandbox: scratch directory " + dir.string() + ": " + entry.string() + " " +
                    why +
                    ": another user could swap its entries while crucible copies them; use a "
                    "directory only you can change");
    };
    const auto stat_of = [&](const fs::path& p) {
        struct stat st {};
        if (lstat(p.c_str(), &st) != 0) {
            refuse(p, std::string("cannot be read: ") + std::strerror(errno));
        }
        return st;
    };
    for (fs::path p = dir.parent_path();; p = p.parent_path()) {
        const struct stat st = stat_of(p);
        if (st.st_uid != me && st.st_uid != 0) {
            refuse(p, "belongs to uid " + std::to_string(st.st_uid));
        }
        if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0) {
            refuse(p, "is writable by others");
        }
        if (p == p.root_path() || p.empty()) break;
    }
    const auto check = [&](const fs::path& p) {
        const struct stat st = stat_of(p);
        if (!S_ISDIR(st.st_mode)) return;
        if (st.st_uid != me) refuse(p, "belongs to uid " + std::to_string(st.st_uid));
        if ((st.st_mode & S_IWOTH) != 0) refuse(p, "is writable by others");
    };
    check(dir);
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
         !ec && it != end; it.increment(ec)) {
        check(it->path());
    }
    if (ec) refuse(dir, "cannot be listed: " + ec.message());
}

void copy_into_sandbox(const fs::path& from, const fs::path& to, bool as_user, uid_t uid,
                       gid_t gid) {
    std::error_code ec;
    // Directories stay writable until their contents are in; their modes are set last,
    // deepest first.
    std::vector<std::pair<fs::path, fs::perms>> directory_modes;
    fs::recursive_directory_iterator it(from, fs::directory_options::none, ec), end;
    if (ec) fail("cannot read the scratch directory", from, ec.message());
    for (; it != end; it.increment(ec)) {
        if (ec) fail("cannot read the scratch directory", from, ec.message());
        const fs::path source = it->path();
        const fs::path target = to / source.lexically_relative(from);
        const fs::file_status st = fs::symlink_status(source, ec);
        if (ec) fail("cannot copy into the sandbox", source, ec.message());
        const fs::perms mode = st.permissions() & kPermissionBits;
        std::string why;
        if (fs::is_symlink(st)) {
            const fs::path link = fs::read_symlink(source, ec);
            if (!ec) {
                with_fs_identity(as_user, uid, gid, [&] { fs::create_symlink(link, target, ec); });
            }
        } else if (fs::is_directory(st)) {
            with_fs_identity(as_user, uid, gid, [&] { fs::create_directory(target, ec); });
            directory_modes.emplace_back(target, mode);
        } else if (fs::is_regular_file(st)) {
            why = copy_bytes(source, static_cast<mode_t>(mode), [&](mode_t m) {
                return with_fs_identity(as_user, uid, gid, [&] { return create_file(target, m); });
            });
        } else {
            continue;  // devices, FIFOs and sockets stay on the host
        }
        if (ec) why = ec.message();
        if (!why.empty()) {
            fail("cannot copy into the sandbox's scratch (full? see disk_mb and max_files)", source,
                 why);
        }
    }
    for (auto d = directory_modes.rbegin(); d != directory_modes.rend(); ++d) {
        with_fs_identity(as_user, uid, gid, [&] { fs::permissions(d->first, d->second, ec); });
        if (ec) fail("cannot set the mode of", d->first, ec.message());
    }
}

std::string copy_out_of_sandbox(const fs::path& from, const fs::path& to, uint64_t max_bytes,
                                int max_depth, int64_t* skipped) {
    // No group/other write: a directory the command made world-writable must not become one
    // on the host, owned by the caller.
    constexpr fs::perms kKept = fs::perms::owner_all | fs::perms::group_read |
                                fs::perms::group_exec | fs::perms::others_read |
                                fs::perms::others_exec;
    std::error_code ec;
    // Measure first, so that a scratch that cannot come back leaves `to` as it was.
    uint64_t bytes = 0;
    {
        fs::recursive_directory_iterator it(from, fs::directory_options::none, ec), end;
        for (; !ec && it != end; it.increment(ec)) {
            if (it.depth() >= max_depth) {
                return "the scratch is nested deeper than " + std::to_string(max_depth) +
                       " directories: nothing copied back";
            }
            const fs::file_status st = it->symlink_status(ec);
            if (!ec && fs::is_regular_file(st)) bytes += it->file_size(ec);
            if (bytes > max_bytes) {
                return "the scratch's files add up to more than " +
                       std::to_string(max_bytes >> 20) +
                       " MiB (disk_mb), counting sparse files at their full size: nothing "
                       "copied back";
            }
        }
        if (ec) {
            return "cannot read the sandbox's scratch: " + ec.message() + ": nothing copied back";
        }
    }
    for (fs::directory_iterator it(to, ec), end; !ec && it != end; it.increment(ec)) {
        fs::remove_all(it->path(), ec);
        if (ec) return "cannot clear " + it->path().string() + ": " + ec.message();
    }
    if (ec) return "cannot read " + to.string() + ": " + ec.message();
    std::vector<std::pair<fs::path, fs::perms>> directory_modes;
    fs::recursive_directory_iterator it(from, fs::directory_options::none, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        const fs::path source = it->path();
        const fs::path target = to / source.lexically_relative(from);
        const fs::file_status st = fs::symlink_status(source, ec);
        if (ec) break;
        const fs::perms mode = st.permissions() & kKept;
        std::string why;
        if (fs::is_directory(st)) {
            // Private to the caller until its contents are in; mkdir fails on anything
            // already there (`to` was emptied), a symbolic link included.
            if (mkdir(target.c_str(), 0700) != 0) why = std::strerror(errno);
            directory_modes.emplace_back(target, mode);
        } else if (fs::is_regular_file(st)) {
            why = copy_bytes(source, static_cast<mode_t>(mode),
                             [&](mode_t m) { return create_file(target, m); });
        } else {
            (*skipped)++;  // symbolic links, FIFOs, sockets, devices
            continue;
        }
        if (!why.empty()) return "cannot copy back " + source.string() + ": " + why;
    }
    if (ec) return "cannot read the sandbox's scratch: " + ec.message();
    for (auto d = directory_modes.rbegin(); d != directory_modes.rend(); ++d) {
        if (chmod(d->first.c_str(), static_cast<mode_t>(d->second)) != 0) {
            return "cannot set the mode of " + d->first.string() + ": " + std::strerror(errno);
        }
    }
    return "";
}

}  // namespace crucible
