// The JSONL line reader every dataset, task and rubric file goes through: line numbers for
// errors ("FILE:LINE: ..."), blank lines skipped, LF or CRLF endings, a bound on a line's size.
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace crucible {

// The longest line read (a file without newlines is not read whole into memory).
inline constexpr size_t kMaxJsonlLineBytes = size_t{64} << 20;

// One non-blank line of a JSONL file.
struct JsonlLine {
    const std::string& path;
    int number = 0;         // 1-based
    std::string_view text;  // without its line ending ("\n" or "\r\n")

    // "FILE:LINE", the prefix of every error about this line.
    std::string where() const { return path + ":" + std::to_string(number); }
};

// Calls `fn` for each line of `path` that holds more than spaces, tabs and carriage returns,
// in order. Throws Error("FILE: cannot open WHAT") when the file cannot be opened (`what` is
// the caller's name for it, e.g. "the dataset"; "" for none), Error("FILE:LINE: ...") for a
// line longer than `max_line_bytes` and Error("FILE: read failed") on an I/O error. Errors
// `fn` throws pass through.
void for_each_jsonl_line(const std::string& path, const std::string& what,
                         const std::function<void(const JsonlLine&)>& fn,
                         size_t max_line_bytes = kMaxJsonlLineBytes);

// Calls fn(line, record) for each line of a JSONL log that append_jsonl writes (metrics.jsonl
// and the like), in order, up to the first line that is not a JSON object: the torn last line
// of a killed run ends the log, it is not an error. A missing file has no records. Errors as
// for_each_jsonl_line's; errors `fn` throws pass through.
void for_each_jsonl_log_record(
    const std::string& path,
    const std::function<void(const JsonlLine&, const nlohmann::json&)>& fn);

// The line as one JSON object. Throws Error("FILE:LINE: not valid JSON (...)") or
// Error("FILE:LINE: each line must be a JSON object").
nlohmann::json parse_jsonl_object(const JsonlLine& line);

}  // namespace crucible
