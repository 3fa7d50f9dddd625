#include "model/checkpoint.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "model/lora_adapter.h"

namespace crucible {

namespace fs = std::filesystem;

void save_model(const Model& model, const fs::path& dir) {
    if (model.fp32_released()) {
        throw Error(dir.string() +
                    ": cannot save an inference-only model (its fp32 matrices "
                    "were released)");
    }
    if (model.has_lora()) {  // the base alone would silently drop what the adapters learned
        throw Error(dir.string() +
                    ": the model has LoRA adapters: save them with save_lora_adapter, or "
                    "merge_lora() first");
    }
    std::vector<TensorToWrite> out;
    for (const TensorInfo& t : model.tensors()) {
        out.push_back({t.name, t.shape, model.params() + t.offset});
    }
    write_file_durable(dir / "model.safetensors", serialize_safetensors(out, {{"format", "pt"}}));
    write_file_durable(dir / "config.json", to_json(model.config()).dump(2) + "\n");
}

void load_tensor(Model& model, const TensorInfo& t, const SafetensorsFile& file) {
    const SafeTensor& st = file.at(t.name);
    if (st.shape != t.shape) {
        std::string want, got;
        for (auto d : t.shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
        for (auto d : st.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
        throw Error(file.path() + ": tensor '" + t.name + "' has shape [" + got +
                    "] but config.json needs [" + want + "]");
    }
    if (st.dtype != DType::f32 && st.dtype != DType::f16 && st.dtype != DType::bf16) {
        throw Error(file.path() + ": tensor '" + t.name + "' must be F32, F16 or BF16");
    }
    model.write_tensor(t, [&](float* dst) { st.to_f32(dst); });
    file.release(st);
}

namespace {

// One mechanism for a single file and for shards: every parameter comes from the file that
// holds it, and (unless allow_extra) every tensor in the files must be a parameter.
void load_from(Model& model, const std::vector<const SafetensorsFile*>& files, bool allow_extra) {
    if (!allow_extra) {
        for (const SafetensorsFile* f : files) {
            for (const auto& [name, t] : f->tensors()) {
                // Some tied checkpoints carry a redundant lm_head.weight (vLLM #3344).
                if (name == "lm_head.weight" && model.config().tie_word_embeddings) continue;
                if (!model.find(name)) {
                    throw Error(f->path() + ": unexpected tensor '" + name +
                                "' (the config.json does not describe it)");
                }
            }
        }
    }
    for (const TensorInfo& t : model.tensors()) {
        const SafetensorsFile* holder = files.front();
        for (const SafetensorsFile* f : files) {
            if (f->has(t.name)) holder = f;
        }
        load_tensor(model, t, *holder);  // names the missing tensor if no file has it
    }
}

}  // namespace

void load_weights(Model& model, const SafetensorsFile& file, bool allow_extra) {
    load_from(model, {&file}, allow_extra);
}

void load_weights(Model& model, const std::vector<SafetensorsFile>& files) {
    std::vector<const SafetensorsFile*> ptrs;
    for (const SafetensorsFile& f : files) ptrs.push_back(&f);
    load_from(model, ptrs, false);
}

namespace {

// The weight files of a checkpoint folder: model.safetensors, or the shards named by
// model.safetensors.index.json ({"metadata": ..., "weight_map": {tensor: file}}).
std::vector<SafetensorsFile> open_weight_files(const fs::path& dir) {
    std::vector<SafetensorsFile> files;
    const fs::path index_path = dir / "model.safetensors.index.json";
    if (!fs::exists(index_path)) {
        files.emplace_back(dir / "model.safetensors");
        return files;
    }
    nlohmann::json index;
    try {
        index = nlohmann::json::parse(read_file(index_path));
    } catch (const nlohmann::json::exception& e) {
        throw Error(index_path.string() + ": not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
        throw Error(index_path.string() + ": needs a \"weight_map\" object");
    }
    std::vector<std::string> shards;
    for (auto& [tensor, file] : index["weight_map"].items()) {
        if (!file.is_string()) {
            throw Error(index_path.string() + ": weight_map entry for '" + tensor +
                        "' must be a file name");
        }
        const std::string name = file.get<std::string>();
        if (name.find('/') != std::string::npos || name == "..") {
            throw Error(index_path.string() + ": shard '" + name +
                        "' must be a file in the folder");
        }
        if (std::find(shards.begin(), shards.end(), name) == shards.end()) shards.push_back(name);
    }
    for (const std::string& shard : shards) files.emplace_back(dir / shard);
    // Every tensor the index names must be in the shard it names.
    for (auto& [tensor, file] : index["weight_map"].items()) {
        const std::string name = file.get<std::string>();
        const size_t k = std::find(shards.begin(), shards.end(), name) - shards.begin();
        if (!files[k].has(tensor)) {
            throw Error((dir / name).string() + ": missing tensor '" + tensor +
                        "' that model.safetensors.index.json places there");
        }
    }
    return files;
}

}  // namespace

std::unique_ptr<Model> load_model(const fs::path& dir, MatmulDtype held_as) {
    if (fs::exists(dir / "adapter_config.json")) {  // a PEFT LoRA folder: its base + adapters
        const fs::path cfg = dir / "adapter_config.json";
        std::string base;
        try {
            base = nlohmann::json::parse(read_file(cfg)).value("base_model_name_or_path", "");
        } catch (const nlohmann::json::exception& e) {
            throw Error(cfg.string() + ": not valid JSON: " + e.what());
        }
        if (base.empty() || !fs::is_directory(base) ||
            fs::exists(fs::path(base) / "adapter_config.json")) {
            throw Error(cfg.string() + ": base_model_name_or_path '" + base +
                        "' is not a model folder (a LoRA folder loads on top of its base's "
                        "config.json and model.safetensors)");
        }
        auto model = load_model(base, held_as);
        load_lora_adapter(*model, dir);
        return model;
    }
    const fs::path config_path = dir / "config.json";
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
        throw Error(config_path.string() + ": not valid JSON: " + e.what());
    }
    auto model = std::make_unique<Model>(parse_model_config(j, config_path.string()));
    if (held_as != MatmulDtype::float32) model->hold_matrices_in(held_as);
    load_weights(*model, open_weight_files(dir));
    return model;
}

}  // namespace crucible
