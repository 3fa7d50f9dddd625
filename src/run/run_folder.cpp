#include "run/run_folder.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/file_io.h"
#include "core/jsonl.h"

namespace crucible {

namespace fs = std::filesystem;

void name_new_run(Config& config, const std::string& prefix) {
    if (!config.get_string("run.name").empty()) return;
    const std::time_t now = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
    const fs::path dir(config.get_string("run.dir"));
    std::string name = prefix + "-" + stamp;
    for (int k = 2; fs::exists(dir / name); k++)
        name = prefix + "-" + stamp + "-" + std::to_string(k);
    config.set("run.name=" + name);
}

int64_t latest_checkpoint(const fs::path& dir) {
    int64_t best = -1;
    if (!fs::exists(dir)) return best;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("step-", 0) != 0) continue;
        if (!fs::exists(e.path() / "trainer_state.json")) continue;
        try {
            best = std::max<int64_t>(best, std::stoll(name.substr(5)));
        } catch (const std::exception&) {
        }
    }
    return best;
}

fs::path resolve_model_dir(const fs::path& dir) {
    std::error_code ec;
    if (fs::exists(dir / "config.json", ec)) return dir;
    const int64_t latest = latest_checkpoint(dir / "checkpoints");
    if (latest < 0) return dir;
    return dir / "checkpoints" / ("step-" + std::to_string(latest));
}

void remove_unpublished_checkpoints(const fs::path& dir) {
    if (!fs::exists(dir)) return;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());
    }
}

void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                          "special_tokens_map.json", "vocab.json", "merges.txt"}) {
        if (fs::exists(from / f)) write_file_durable(to / f, read_file(from / f));
    }
}

void truncate_jsonl_after_step(const fs::path& file, int64_t step) {
    if (!fs::exists(file)) return;
    std::string kept;  // up to a torn last line from the kill (or a line without a numeric step)
    bool ended = false;
    for_each_jsonl_log_record(file.string(), [&](const JsonlLine& line, const nlohmann::json& j) {
        if (ended) return;
        try {
            if (j.value("step", INT64_MAX) <= step) kept.append(line.text).push_back('\n');
        } catch (const nlohmann::json::exception&) {
            ended = true;
        }
    });
    write_file_durable(file, kept);
}

std::string format_duration(double s) {
    char buf[32];
    const long t = static_cast<long>(s + 0.5);
    if (t >= 3600) {
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    } else if (t >= 60) {
        std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    } else {
        std::snprintf(buf, sizeof buf, "%lds", t);
    }
    return buf;
}

}  // namespace crucible
