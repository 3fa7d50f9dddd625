// File helpers: whole-file reads, durable writes, atomic directory publication.
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace crucible {

// Reads a whole file. Throws Error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// Replaces `path` with `data` so that a crash leaves either the old file or the new one,
// never half of it: writes a temporary file in the same directory, fsyncs it, renames it over
// `path` and fsyncs the directory. On failure the temporary file is removed, `path` is left
// as it was, and Error names the path. A `path` that exists and is not a regular file (a
// device, a FIFO such as /dev/stdout) is written in place; a symbolic link is followed.
void write_file_durable(const std::filesystem::path& path, std::string_view data);

// Appends `text` to `path` (created if missing) and checks every step: open, write (all of
// it) and close. A failed write (a full disk: ENOSPC; a file-size limit: EFBIG) throws Error
// naming the path and the system's reason, after cutting the file back to its size before
// the call, so a log never keeps a torn line. Not fsynced (a log line is cheap to lose in a
// crash; a lost line while the run goes on is what this prevents).
void append_file_checked(const std::filesystem::path& path, std::string_view text);

// Appends one JSONL line, `line.dump()` and '\n', with append_file_checked (invalid UTF-8 in
// strings is written as U+FFFD rather than thrown).
void append_jsonl(const std::filesystem::path& path, const nlohmann::json& line);

// fsyncs a directory so that renames and new entries inside it are durable.
void fsync_directory(const std::filesystem::path& dir);

// Publishes a fully written temporary directory under its final name: fsyncs it, renames it
// and fsyncs the parent. An existing `final_dir` is never replaced: returns false (and removes
// `tmp_dir`) in that case.
bool publish_directory(const std::filesystem::path& tmp_dir,
                       const std::filesystem::path& final_dir);

// Gives the whole pages inside [p, p + bytes) back to the kernel (madvise MADV_DONTNEED): an
// anonymous private range then reads as zeros, a file mapping as the file again.
void release_pages(const void* p, size_t bytes);

// `bytes` of fresh zeroed pages from the kernel (an anonymous private mapping: page-aligned,
// resident only where written); std::bad_alloc when the kernel refuses. free_zero_pages takes
// back what allocate_zero_pages(bytes) gave.
void* allocate_zero_pages(size_t bytes);
void free_zero_pages(void* p, size_t bytes);

}  // namespace crucible
