#include "core/jsonl.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace crucible {

void for_each_jsonl_line(const std::string& path, const std::string& what,
                         const std::function<void(const JsonlLine&)>& fn, size_t max_line_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open" + (what.empty() ? "" : " " + what));
    std::string line;
    int number = 0;
    auto emit = [&]() {
        ++number;
        std::string_view text = line;
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (text.find_first_not_of(" \t\r") != std::string_view::npos) fn({path, number, text});
        line.clear();
    };
    // Read in blocks rather than with std::getline, so that a line past the bound is refused
    // before it is held whole.
    char block[1 << 16];
    while (in.read(block, sizeof block) || in.gcount() > 0) {
        const std::string_view got(block, static_cast<size_t>(in.gcount()));
        for (size_t start = 0; start < got.size();) {
            const size_t nl = got.find('\n', start);
            const size_t end = nl == std::string_view::npos ? got.size() : nl;
            if (line.size() + (end - start) > max_line_bytes)
                throw Error(path + ":" + std::to_string(number + 1) + ": line longer than " +
                            std::to_string(max_line_bytes) + " bytes");
            line.append(got.substr(start, end - start));
            if (nl == std::string_view::npos) break;
            emit();
            start = nl + 1;
        }
    }
    if (in.bad()) throw Error(path + ": read failed");
    if (!line.empty()) emit();  // a last line without a newline
}

void for_each_jsonl_log_record(
    const std::string& path,
    const std::function<void(const JsonlLine&, const nlohmann::json&)>& fn) {
    if (!std::filesystem::exists(path)) return;
    bool torn = false;
    for_each_jsonl_line(path, "", [&](const JsonlLine& line) {
        if (torn) return;
        const nlohmann::json j =
            nlohmann::json::parse(line.text, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) {
            torn = true;
            return;
        }
        fn(line, j);
    });
}

nlohmann::json parse_jsonl_object(const JsonlLine& line) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line.text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(line.where() + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw Error(line.where() + ": each line must be a JSON object");
    return j;
}

}  // namespace crucible
