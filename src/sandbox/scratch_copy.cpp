#include "sandbox/scratch_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

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
    const int in = open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return std::strerror(errno);
    const int out = create(mode);
    if (out < 0) {
        const int err = errno;
        close(in);
        return std::strerror(err);
    }
    std::string why;
    char buf[1 << 16];
    while (why.empty()) {
        const ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) why = std::strerror(errno);
        if (n <= 0) break;
        for (ssize_t done = 0; done < n && why.empty();) {
            const ssize_t w = write(out, buf + done, static_cast<size_t>(n - done));
            if (w < 0 && errno != EINTR) why = std::strerror(errno);
            if (w > 0) done += w;
        }
    }
    // The mode exactly (open's mode is masked by the umask).
    if (why.empty() && fchmod(out, mode) != 0) why = std::strerror(errno);
    close(in);
    if (close(out) != 0 && why.empty()) why = std::strerror(errno);
    return why;
}

int create_file(const fs::path& to, mode_t mode) {
    return open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
}

}  // namespace

void copy_into_sandbox(const fs::path& from, const fs::path& to, bool as_user, uid_t uid,
                       gid_t gid) {
    std::error_code ec;
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
            with_fs_identity(as_user, uid, gid, [&] {
                fs::create_directory(target, ec);
                if (!ec) fs::permissions(target, mode, ec);
            });
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
}

int64_t copy_out_of_sandbox(const fs::path& from, const fs::path& to, uint64_t max_bytes) {
    std::error_code ec;
    for (fs::directory_iterator it(to, ec), end; !ec && it != end; it.increment(ec)) {
        fs::remove_all(it->path(), ec);
        if (ec) fail("cannot clear", it->path(), ec.message());
    }
    if (ec) fail("cannot read the scratch directory", to, ec.message());
    int64_t skipped = 0;
    uint64_t bytes = 0;
    fs::recursive_directory_iterator it(from, fs::directory_options::none, ec), end;
    if (ec) fail("cannot read the sandbox's scratch", from, ec.message());
    for (; it != end; it.increment(ec)) {
        if (ec) fail("cannot read the sandbox's scratch", from, ec.message());
        const fs::path source = it->path();
        const fs::path target = to / source.lexically_relative(from);
        const fs::file_status st = fs::symlink_status(source, ec);
        if (ec) fail("cannot copy out of the sandbox", source, ec.message());
        const fs::perms mode = st.permissions() & kPermissionBits;
        std::string why;
        if (fs::is_directory(st)) {
            // Writable by its owner until the copy is done with it.
            fs::create_directory(target, ec);
            if (!ec) fs::permissions(target, mode | fs::perms::owner_all, ec);
        } else if (fs::is_regular_file(st)) {
            // Apparent sizes: a sparse file costs the tmpfs nothing but would be written out
            // in full on the host.
            const uintmax_t size = fs::file_size(source, ec);
            if (!ec && (size > max_bytes || bytes + size > max_bytes)) {
                fail("refusing to copy back", source,
                     "the scratch's files add up to more than " + std::to_string(max_bytes >> 20) +
                         " MiB (disk_mb), counting sparse files at their full size");
            }
            bytes += size;
            if (!ec) {
                why = copy_bytes(source, static_cast<mode_t>(mode),
                                 [&](mode_t m) { return create_file(target, m); });
            }
        } else {
            skipped++;  // symbolic links, FIFOs, sockets, devices
            continue;
        }
        if (ec) why = ec.message();
        if (!why.empty()) fail("cannot copy out of the sandbox", source, why);
    }
    return skipped;
}

}  // namespace crucible
