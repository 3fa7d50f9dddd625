#include "core/file_io.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

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

void write_file_durable(const fs::path& path, std::string_view data) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(path.string() + ": cannot open for writing: " + std::strerror(errno));
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string why = std::strerror(errno);
            ::close(fd);
            throw Error(path.string() + ": write failed: " + why);
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        throw Error(path.string() + ": fsync/close failed: " + std::strerror(errno));
    }
}

void fsync_directory(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw Error(dir.string() + ": cannot open directory: " + std::strerror(errno));
    const int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) throw Error(dir.string() + ": fsync failed: " + std::strerror(errno));
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

}  // namespace crucible
