// Helpers shared by the test files: a self-removing temporary directory, the message of an
// expected crucible::Error, and whole-file reads that tolerate a missing file.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace crucible::testutil {

// A fresh directory under the test temp dir (named after the running test), removed with
// everything in it at scope exit.
class TempDir {
  public:
    TempDir() {
        static std::atomic<int> counter{0};
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        path_ = std::filesystem::path(::testing::TempDir()) /
                ("crucible_" + std::string(info ? info->name() : "x") + "_" +
                 std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    // Writes `bytes` to a file called `name` inside the directory and returns its path.
    std::filesystem::path write(const std::string& name, const std::string& bytes) const {
        const std::filesystem::path p = path_ / name;
        std::ofstream out(p, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        return p;
    }

  private:
    std::filesystem::path path_;
};

// The message of the crucible::Error thrown by f(), or a test failure if it throws nothing
// (or something else).
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected crucible::Error, got another exception: " << e.what();
        return {};
    }
    ADD_FAILURE() << "expected crucible::Error, nothing was thrown";
    return {};
}

// What `cmd` (run by the shell) prints on stdout; *status (if given) gets pclose's status.
inline std::string command_output(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) {
        if (status) *status = -1;
        return out;
    }
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int rc = pclose(p);
    if (status) *status = rc;
    return out;
}

// The JSON values of a JSONL file, one per line (a run's metrics.jsonl, samples.jsonl).
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& file) {
    std::vector<nlohmann::json> out;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
}

// The bytes of a file; empty when it cannot be read.
inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// mpirun as root needs Open MPI's two confirmations; ranks may outnumber the cores (the CI has
// two). In a sanitizer build the ranks unwind allocations fully, so that Open MPI's own leaks are
// recognised as its (cmake/lsan_suppressions.cpp).
inline const char* const kMpiEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_rmaps_base_oversubscribe=1 ASAN_OPTIONS=fast_unwind_on_malloc=0 ";

}  // namespace crucible::testutil
