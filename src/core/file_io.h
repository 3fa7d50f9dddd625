// File helpers: whole-file reads, durable writes, atomic directory publication.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace crucible {

// Reads a whole file. Throws Error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// Writes `data` to `path` and fsyncs it. Throws Error naming the path on failure.
void write_file_durable(const std::filesystem::path& path, std::string_view data);

// fsyncs a directory so that renames and new entries inside it are durable.
void fsync_directory(const std::filesystem::path& dir);

// Publishes a fully written temporary directory under its final name: fsyncs it, renames it
// and fsyncs the parent. An existing `final_dir` is never replaced: returns false (and removes
// `tmp_dir`) in that case.
bool publish_directory(const std::filesystem::path& tmp_dir,
                       const std::filesystem::path& final_dir);

}  // namespace crucible
