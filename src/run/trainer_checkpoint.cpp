#include "run/trainer_checkpoint.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "model/lora_adapter.h"
#include "run/optimizer.h"
#include "run/run_folder.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

void write_trainer_checkpoint(const fs::path& dir, const TrainerCheckpoint& c,
                              const std::string& trainer, int64_t step, std::ostream& log) {
    const bool lora = c.model->has_lora();
    const float* w = lora ? c.model->lora_params() : c.model->params();
    const size_t n = lora ? c.model->lora_num_params() : c.model->num_params();
    if (!std::all_of(w, w + n, [](float x) { return std::isfinite(x); })) {
        throw Error(trainer + ": step " + std::to_string(step) +
                    ": the weights after the update are not finite; stopped without a "
                    "checkpoint of this state");
    }
    const fs::path tmp = dir.parent_path() / (".tmp-" + dir.filename().string());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    if (lora) {  // the adapters, naming their base: load_model reads the two together
        save_lora_adapter(*c.model, tmp, fs::absolute(c.lora_base).lexically_normal().string());
    } else {
        save_model(*c.model, tmp);
    }
    c.write_tokenizer(tmp);
    save_optimizer_state(*c.model, *c.adam_m, *c.adam_v, tmp / "optimizer.safetensors");
    write_file_durable(tmp / "config.yaml", c.config_yaml);
    // Written last: a folder without trainer_state.json is never taken as a checkpoint.
    write_file_durable(tmp / "trainer_state.json", c.state.dump(2) + "\n");
    if (!publish_directory(tmp, dir)) {
        log << "note: " << dir.string() << " already exists; kept the existing one\n";
    }
}

int64_t open_run_folder(const fs::path& run_dir, const Config& config,
                        const std::string& defaults_yaml, bool resume) {
    const fs::path ckpt_root = run_dir / "checkpoints";
    const int64_t latest = latest_checkpoint(ckpt_root);
    if (resume) {
        const fs::path saved = run_dir / "config.yaml";
        if (!fs::exists(saved) || latest < 0) {
            throw Error(run_dir.string() + ": nothing to resume (no config.yaml or checkpoint)");
        }
        Config previous(defaults_yaml);
        previous.merge_file(saved.string());
        const auto changed = Config::diff(previous, config);
        if (!changed.empty()) {
            std::string keys;
            for (const auto& k : changed) keys += " " + k;
            throw Error(saved.string() +
                        ": --resume needs the run's own config; these keys differ:" + keys);
        }
        return latest;
    }
    if (latest >= 0) {
        throw Error(run_dir.string() +
                    " already holds checkpoints; pass --resume to continue it, or choose "
                    "another run.name");
    }
    fs::create_directories(ckpt_root);
    write_file_durable(run_dir / "config.yaml", config.dump());
    return -1;
}

json read_trainer_state(const fs::path& dir, const std::string& format,
                        std::initializer_list<const char*> integer_fields,
                        const std::string& what) {
    const fs::path path = dir / "trainer_state.json";
    json state;
    try {
        state = json::parse(read_file(path));
    } catch (const json::exception& e) {
        throw Error(path.string() + ": not valid JSON: " + e.what());
    }
    bool ok = state.is_object() && state.value("format", "") == format;
    for (const char* field : integer_fields)
        ok = ok && state.contains(field) && state[field].is_number_integer();
    if (!ok) throw Error(path.string() + ": not a Crucible " + what + " trainer state");
    return state;
}

}  // namespace crucible
