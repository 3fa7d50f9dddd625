// For fuzz targets whose parser takes a path: each input is written to one anonymous in-memory
// file (memfd), opened again through /proc/self/fd/N, so no disk is touched and nothing is left.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace crucible::fuzz {

// Replaces the memfd's contents with `data` and returns a path that opens it.
inline const std::string& as_file(const uint8_t* data, size_t size) {
    static const int fd = memfd_create("crucible-fuzz", 0);
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (fd < 0 || ftruncate(fd, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
        const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
        if (n <= 0) std::abort();
        done += static_cast<size_t>(n);
    }
    return path;
}

}  // namespace crucible::fuzz
