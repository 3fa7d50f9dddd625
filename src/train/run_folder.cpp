#include "train/run_folder.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "model/safetensors.h"

namespace crucible {

namespace fs = std::filesystem;

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

void remove_unpublished_checkpoints(const fs::path& dir) {
    if (!fs::exists(dir)) return;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());
    }
}

void save_optimizer_state(const Model& model, const std::vector<float>& m,
                          const std::vector<float>& v, const fs::path& file) {
    std::vector<TensorToWrite> opt;
    for (const TensorInfo& t : model.tensors()) {
        opt.push_back({"exp_avg." + t.name, t.shape, m.data() + t.offset});
        opt.push_back({"exp_avg_sq." + t.name, t.shape, v.data() + t.offset});
    }
    write_file_durable(file, safetensors_serialize(opt, {}));
}

void load_optimizer_state(const Model& model, const fs::path& file, std::vector<float>* m,
                          std::vector<float>* v) {
    m->assign(model.num_params(), 0.0f);
    v->assign(model.num_params(), 0.0f);
    const SafetensorsFile opt(file);
    for (const TensorInfo& t : model.tensors()) {
        const SafeTensor& mt = opt.at("exp_avg." + t.name);
        const SafeTensor& vt = opt.at("exp_avg_sq." + t.name);
        if (mt.numel() != t.numel || vt.numel() != t.numel) {
            throw Error(opt.path() + ": optimizer state for '" + t.name + "' has the wrong size");
        }
        mt.to_f32(m->data() + t.offset);
        vt.to_f32(v->data() + t.offset);
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
    std::ifstream in(file);
    std::string line, kept;
    while (std::getline(in, line)) {
        try {
            if (nlohmann::json::parse(line).value("step", INT64_MAX) <= step) kept += line + "\n";
        } catch (const nlohmann::json::exception&) {
            break;  // a torn last line from the kill
        }
    }
    in.close();
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
