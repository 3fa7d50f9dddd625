// Durable writes and checked appends under real write failures: a file-size limit
// (RLIMIT_FSIZE, writes past it fail with EFBIG) and /dev/full (every write fails with ENOSPC).
#include "core/file_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "write_failure.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

class TempDir {
  public:
    TempDir() {
        path_ = fs::temp_directory_path() /
                ("crucible_file_io_" + std::to_string(getpid()) + "_" + std::to_string(next_++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

  private:
    static inline int next_ = 0;
    fs::path path_;
};

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// The message of the Error `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// ---- write_file_durable -----------------------------------------------------------------------

TEST(FileIoDurable, AFailedWriteLeavesThePreviousFileWholeAndNoTemporary) {
    TempDir dir;
    const fs::path target = dir.path() / "results.json";
    const std::string old_content = "{\"complete\": true}\n";
    write_file_durable(target, old_content);
    const std::string big(4096, 'x');
    std::string msg;
    {
        FileSizeLimit limit(100);  // the new content stops at 100 bytes with EFBIG
        ASSERT_TRUE(limit.ok());
        msg = error_of([&] { write_file_durable(target, big); });
    }
    EXPECT_NE(msg.find(target.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
    // Rewriting in place would have left the first 100 bytes of the new content here.
    EXPECT_EQ(read_file(target), old_content);
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"results.json"});
    // With room again, the same call succeeds.
    write_file_durable(target, big);
    EXPECT_EQ(read_file(target), big);
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"results.json"});
}

TEST(FileIoDurable, AFailedFirstWriteCreatesNothing) {
    TempDir dir;
    const fs::path target = dir.path() / "report.html";
    {
        FileSizeLimit limit(10);
        ASSERT_TRUE(limit.ok());
        EXPECT_THROW(write_file_durable(target, std::string(1000, 'y')), Error);
    }
    EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(FileIoDurable, ReplacesTheFileRatherThanRewritingIt) {
    // A reader that opened the old file keeps seeing it whole: the new content arrives under
    // a new inode by rename, never by truncating the old one.
    TempDir dir;
    const fs::path target = dir.path() / "config.yaml";
    write_file_durable(target, "old: 1\n");
    ::chmod(target.c_str(), 0600);
    const int fd = ::open(target.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    write_file_durable(target, "new: 2\nmore: 3\n");
    char buf[64] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    ::close(fd);
    EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "old: 1\n");
    EXPECT_EQ(read_file(target), "new: 2\nmore: 3\n");
    struct stat st {};
    ASSERT_EQ(::stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);  // the replaced file's mode is kept
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"config.yaml"});
}

TEST(FileIoDurable, FollowsASymbolicLink) {
    TempDir dir;
    const fs::path real = dir.path() / "real.txt";
    const fs::path link = dir.path() / "link.txt";
    write_file_durable(real, "a");
    fs::create_symlink(real, link);
    write_file_durable(link, "b");
    EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
    EXPECT_EQ(read_file(real), "b");
}

// ---- append_file_checked / append_jsonl ---------------------------------------------------------

TEST(FileIoAppend, AFullDiskThrowsNamingTheFile) {
    if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
    const std::string msg = error_of([] { append_file_checked("/dev/full", "{\"step\": 1}\n"); });
    EXPECT_NE(msg.find("/dev/full"), std::string::npos) << msg;
    EXPECT_NE(msg.find("disk is full"), std::string::npos) << msg;
    TempDir dir;
    const fs::path link = dir.path() / "metrics.jsonl";
    fs::create_symlink("/dev/full", link);
    const std::string msg2 = error_of([&] { append_jsonl(link, {{"step", 1}}); });
    EXPECT_NE(msg2.find(link.string()), std::string::npos) << msg2;
}

TEST(FileIoAppend, AFailedAppendKeepsTheFileToWholeLines) {
    TempDir dir;
    const fs::path log = dir.path() / "samples.jsonl";
    append_jsonl(log, {{"step", 1}});
    const std::string before = read_file(log);
    ASSERT_EQ(before, "{\"step\":1}\n");
    std::string msg;
    {
        // Room for part of the next line: the write stops there with EFBIG.
        FileSizeLimit limit(before.size() + 8);
        ASSERT_TRUE(limit.ok());
        msg = error_of([&] { append_jsonl(log, {{"step", 2}, {"text", std::string(100, 'z')}}); });
    }
    EXPECT_NE(msg.find(log.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
    EXPECT_EQ(read_file(log), before);  // the torn part was cut off
    append_jsonl(log, {{"step", 2}});
    EXPECT_EQ(read_file(log), "{\"step\":1}\n{\"step\":2}\n");
}

TEST(FileIoAppend, InvalidUtf8IsReplacedNotThrown) {
    TempDir dir;
    const fs::path log = dir.path() / "samples.jsonl";
    append_jsonl(log, {{"completion", std::string("a\xff")}});
    const auto j = nlohmann::json::parse(read_file(log));
    EXPECT_EQ(j["completion"].get<std::string>(), "a\xef\xbf\xbd");
}

TEST(FileIoAppend, AMissingDirectoryThrowsNamingTheFile) {
    TempDir dir;
    const fs::path log = dir.path() / "no" / "metrics.jsonl";
    const std::string msg = error_of([&] { append_file_checked(log, "x\n"); });
    EXPECT_NE(msg.find(log.string()), std::string::npos) << msg;
}

}  // namespace
}  // namespace crucible
