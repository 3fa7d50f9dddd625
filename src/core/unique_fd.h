// An owning file descriptor: the one way a scope holds a descriptor it must close.
#pragma once

#include <unistd.h>

#include <cerrno>

namespace crucible {

// Move-only owner of one descriptor (-1: none). The destructor closes it and leaves errno as
// it was, so an error path may close and then still report the errno that failed it. A writer
// whose close(2) can report a lost write (NFS, a full disk) calls close() and checks it.
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    // The descriptor, still owned (-1 when none).
    int get() const noexcept { return fd_; }
    // True when a descriptor is held (a failed open(2) leaves -1: false).
    explicit operator bool() const noexcept { return fd_ >= 0; }

    // Gives up ownership without closing; returns the descriptor (-1 when none).
    int release() noexcept {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    // Closes the held descriptor (errno kept) and owns `fd` instead.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0 && fd_ != fd) {
            const int saved = errno;
            ::close(fd_);
            errno = saved;
        }
        fd_ = fd;
    }
    // Closes now and returns close(2)'s result: 0, or -1 with errno set (0 when none held).
    int close() noexcept {
        const int fd = release();
        return fd < 0 ? 0 : ::close(fd);
    }

  private:
    int fd_ = -1;
};

}  // namespace crucible
