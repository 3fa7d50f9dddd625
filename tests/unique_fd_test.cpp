// core/unique_fd: the owning descriptor closes exactly what it owns, once.
#include "core/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace crucible {
namespace {

bool is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

int open_null() {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    return fd;
}

TEST(UniqueFd, ClosesInTheDestructor) {
    int raw = -1;
    {
        const UniqueFd fd(open_null());
        raw = fd.get();
        EXPECT_TRUE(fd);
        EXPECT_TRUE(is_open(raw));
    }
    EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, EmptyAndFailedOpenHoldNothing) {
    const UniqueFd none;
    EXPECT_FALSE(none);
    EXPECT_EQ(none.get(), -1);
    const UniqueFd failed(::open("/nonexistent/x", O_RDONLY));
    EXPECT_FALSE(failed);
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
    int raw = -1;
    {
        UniqueFd fd(open_null());
        raw = fd.release();
        EXPECT_FALSE(fd);
    }
    EXPECT_TRUE(is_open(raw));
    ::close(raw);
}

TEST(UniqueFd, ResetClosesTheOldOne) {
    UniqueFd fd(open_null());
    const int first = fd.get();
    const int second = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    fd.reset(second);
    EXPECT_FALSE(is_open(first));
    EXPECT_EQ(fd.get(), second);
    fd.reset();
    EXPECT_FALSE(is_open(second));
    EXPECT_FALSE(fd);
}

TEST(UniqueFd, MoveTransfersOwnership) {
    UniqueFd a(open_null());
    const int raw = a.get();
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(b.get(), raw);
    UniqueFd c(open_null());
    const int other = c.get();
    c = std::move(b);
    EXPECT_FALSE(is_open(other));
    EXPECT_EQ(c.get(), raw);
    EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, CloseReportsAndDestructorKeepsErrno) {
    UniqueFd fd(open_null());
    EXPECT_EQ(fd.close(), 0);
    EXPECT_FALSE(fd);
    EXPECT_EQ(fd.close(), 0);  // nothing held: nothing to close
    {
        const UniqueFd held(open_null());
        errno = ENOSPC;
    }
    EXPECT_EQ(errno, ENOSPC);
}

}  // namespace
}  // namespace crucible
