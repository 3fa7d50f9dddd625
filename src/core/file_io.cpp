#include "core/file_io.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/unique_fd.h"

namespace crucible {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path.string() + ": cannot open for reading: " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(path.string() + ": read failed");
    return ss.str();
}

namespace {

std::string errno_text(int e) {
    return std::strerror(e);
}

// Writes all of `data` to `fd`; returns 0 or the errno of the failed write.
int write_all(int fd, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        done += static_cast<size_t>(n);
    }
    return 0;
}

// The old behaviour, kept for targets that cannot be renamed over (devices, FIFOs).
void write_in_place(const fs::path& path, std::string_view data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw Error(path.string() + ": cannot open for writing: " + errno_text(errno));
    if (const int e = write_all(fd.get(), data); e != 0) {
        throw Error(path.string() + ": write failed: " + errno_text(e));
    }
    // fsync is meaningless (EINVAL) on a pipe or a terminal; only close can still fail.
    if (fd.close() != 0) throw Error(path.string() + ": close failed: " + errno_text(errno));
}

}  // namespace

void write_file_durable(const fs::path& path, std::string_view data) {
    fs::path target = path;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(path, ec))) target = fs::weakly_canonical(path, ec);
    if (ec) target = path;
    const fs::file_status st = fs::status(target, ec);
    if (fs::exists(st) && !fs::is_regular_file(st)) return write_in_place(target, data);

    // The temporary name is unique in this process (counter) and across processes (pid), in
    // the target's directory so that rename(2) is atomic, and hidden so listings skip it.
    static std::atomic<uint64_t> counter{0};
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    // (Appended, not operator+: GCC 12 warns falsely on "." + std::string.)
    std::string name = ".";
    name += target.filename().string();
    name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    const fs::path tmp = dir / name;
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) throw Error(path.string() + ": cannot open for writing: " + errno_text(errno));
    const auto fail = [&](const std::string& what, int e) {
        fd.reset();
        ::unlink(tmp.c_str());
        throw Error(path.string() + ": " + what + ": " + errno_text(e));
    };
    struct stat old {};
    if (::stat(target.c_str(), &old) == 0)
        ::fchmod(fd.get(), old.st_mode & 07777);  // keep its mode
    if (const int e = write_all(fd.get(), data); e != 0) fail("write failed", e);
    if (::fsync(fd.get()) != 0) fail("fsync failed", errno);
    if (fd.close() != 0) fail("close failed", errno);
    if (::rename(tmp.c_str(), target.c_str()) != 0) fail("cannot rename the written file", errno);
    fsync_directory(dir);
}

void append_file_checked(const fs::path& path, std::string_view text) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) throw Error(path.string() + ": cannot open for appending: " + errno_text(errno));
    struct stat before {};
    const bool sized = ::fstat(fd.get(), &before) == 0 && S_ISREG(before.st_mode);
    if (const int e = write_all(fd.get(), text); e != 0) {
        // Cut off the part that did get written: the file stays a sequence of whole lines.
        if (sized && ::ftruncate(fd.get(), before.st_size) != 0) {
            // Nothing more to do: the error below already stops the caller.
        }
        throw Error(path.string() + ": write failed: " + errno_text(e) +
                    (e == ENOSPC ? " (the disk is full)" : ""));
    }
    if (fd.close() != 0) throw Error(path.string() + ": close failed: " + errno_text(errno));
}

void append_jsonl(const fs::path& path, const nlohmann::json& line) {
    append_file_checked(path,
                        line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void fsync_directory(const fs::path& dir) {
    const UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw Error(dir.string() + ": cannot open directory: " + std::strerror(errno));
    if (::fsync(fd.get()) != 0)
        throw Error(dir.string() + ": fsync failed: " + std::strerror(errno));
}

bool publish_directory(const fs::path& tmp_dir, const fs::path& final_dir) {
    fsync_directory(tmp_dir);
    if (fs::exists(final_dir)) {
        fs::remove_all(tmp_dir);
        return false;
    }
    // RENAME_NOREPLACE: even a directory created after the check above is never replaced.
    if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) !=
        0) {
        if (errno == EEXIST) {  // published by someone else in the meantime: keep theirs
            fs::remove_all(tmp_dir);
            return false;
        }
        const std::string why = std::strerror(errno);
        fs::remove_all(tmp_dir);
        throw Error(final_dir.string() + ": cannot publish checkpoint: " + why);
    }
    fsync_directory(final_dir.parent_path());
    return true;
}

void release_pages(const void* p, size_t bytes) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGE_SIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void* allocate_zero_pages(size_t bytes) {
    // A zero-byte mapping is invalid; one page keeps the pointer unique and freeable.
    void* p = ::mmap(nullptr, std::max<size_t>(bytes, 1), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
}

void free_zero_pages(void* p, size_t bytes) {
    if (p) ::munmap(p, std::max<size_t>(bytes, 1));
}

}  // namespace crucible
