// Real write failures for tests, without mounting a small filesystem: a file-size limit
// (RLIMIT_FSIZE) makes every write past `bytes` fail with EFBIG, as a full disk fails with
// ENOSPC. SIGXFSZ, which would kill the process, is ignored while the limit holds.
#pragma once

#include <signal.h>
#include <sys/resource.h>

#include <cstdint>

namespace crucible {

// Limits the size any file of this process may grow to, for the guard's lifetime; restores
// the previous limit and SIGXFSZ handler after. Applies to every file the process writes
// (pipes and terminals are not files), so keep the guarded code to the writes under test.
class FileSizeLimit {
  public:
    explicit FileSizeLimit(uint64_t bytes) {
        getrlimit(RLIMIT_FSIZE, &old_);
        old_handler_ = signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old_;
        lim.rlim_cur = static_cast<rlim_t>(bytes);
        ok_ = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &old_);
        signal(SIGXFSZ, old_handler_);
    }
    FileSizeLimit(const FileSizeLimit&) = delete;
    FileSizeLimit& operator=(const FileSizeLimit&) = delete;
    bool ok() const { return ok_; }

  private:
    rlimit old_{};
    sighandler_t old_handler_ = SIG_DFL;
    bool ok_ = false;
};

}  // namespace crucible
