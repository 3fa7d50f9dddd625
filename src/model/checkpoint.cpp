#include "model/checkpoint.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace fs = std::filesystem;

void save_model(const Model& model, const fs::path& dir) {
    std::vector<TensorToWrite> out;
    for (const TensorInfo& t : model.tensors()) {
        out.push_back({t.name, t.shape, model.params() + t.offset});
    }
    write_file_durable(dir / "model.safetensors", safetensors_serialize(out, {{"format", "pt"}}));
    write_file_durable(dir / "config.json", model_config_to_json(model.config()).dump(2) + "\n");
}

void load_weights(Model& model, const SafetensorsFile& file, bool allow_extra) {
    for (const auto& [name, t] : file.tensors()) {
        if (allow_extra) break;
        // Some tied checkpoints carry a redundant lm_head.weight (vLLM #3344): ignore it.
        if (name == "lm_head.weight" && model.config().tie_word_embeddings) continue;
        if (!model.find(name)) {
            throw Error(file.path() + ": unexpected tensor '" + name +
                        "' (the config.json does not describe it)");
        }
    }
    for (const TensorInfo& t : model.tensors()) {
        const SafeTensor& st = file.at(t.name);
        if (st.shape != t.shape) {
            std::string want, got;
            for (auto d : t.shape) want += std::to_string(d) + ",";
            for (auto d : st.shape) got += std::to_string(d) + ",";
            throw Error(file.path() + ": tensor '" + t.name + "' has shape [" + got +
                        "] but the config needs [" + want + "]");
        }
        if (st.dtype != DType::F32 && st.dtype != DType::F16 && st.dtype != DType::BF16) {
            throw Error(file.path() + ": tensor '" + t.name + "' must be F32, F16 or BF16");
        }
        st.to_f32(model.params() + t.offset);
    }
}

std::unique_ptr<Model> load_model(const fs::path& dir) {
    const fs::path config_path = dir / "config.json";
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
        throw Error(config_path.string() + ": not valid JSON: " + e.what());
    }
    auto model = std::make_unique<Model>(model_config_from_json(j, config_path.string()));
    load_weights(*model, SafetensorsFile(dir / "model.safetensors"));
    return model;
}

}  // namespace crucible
