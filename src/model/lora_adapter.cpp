#include "model/lora_adapter.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/file_io.h"
#include "model/safetensors.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s;
    for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return "[" + s + "]";
}

void read_adapter_tensors(Model& model, const fs::path& weights_path);

}  // namespace

void save_lora_adapter(const Model& model, const fs::path& dir, const std::string& base) {
    if (!model.has_lora()) throw Error(dir.string() + ": the model has no LoRA adapters to save");
    const LoraConfig& c = model.lora_config();
    const json config = {{"peft_type", "LORA"},
                         {"task_type", "CAUSAL_LM"},
                         {"base_model_name_or_path", base},
                         {"r", c.rank},
                         {"lora_alpha", c.alpha},
                         {"lora_dropout", 0.0},
                         {"target_modules", c.targets},
                         {"bias", "none"},
                         {"fan_in_fan_out", false},
                         {"use_rslora", false},
                         {"use_dora", false},
                         {"inference_mode", true}};
    std::vector<TensorToWrite> tensors;
    for (const TensorInfo& t : model.lora_tensors()) {
        tensors.push_back({t.name, t.shape, model.lora_params() + t.offset});
    }
    fs::create_directories(dir);
    write_file_durable(dir / "adapter_model.safetensors",
                       serialize_safetensors(tensors, {{"format", "pt"}}));
    write_file_durable(dir / "adapter_config.json", config.dump(2) + "\n");
}

void load_lora_adapter(Model& model, const fs::path& dir) {
    const fs::path config_path = dir / "adapter_config.json";
    if (!fs::exists(config_path)) {
        throw Error(config_path.string() +
                    ": no such file (a PEFT LoRA adapter folder has "
                    "adapter_config.json and adapter_model.safetensors)");
    }
    json c;
    try {
        c = json::parse(read_file(config_path));
    } catch (const json::exception& e) {
        throw Error(config_path.string() + ": not valid JSON: " + e.what());
    }
    const std::string where = config_path.string() + ": ";
    auto refuse_if = [&](const char* key, const json& unsupported, const std::string& why) {
        if (c.contains(key) && !c[key].is_null() && c[key] == unsupported) {
            throw Error(where + key + " " + c[key].dump() + ": " + why);
        }
    };
    if (c.value("peft_type", std::string()) != "LORA") {
        throw Error(where + "peft_type must be \"LORA\" (got " +
                    (c.contains("peft_type") ? c["peft_type"].dump() : "nothing") + ")");
    }
    if (!c.contains("r") || !c["r"].is_number_integer() || c["r"].get<int64_t>() < 1 ||
        c["r"].get<int64_t>() > 65536) {
        throw Error(where + "r must be an integer in [1, 65536]");
    }
    if (!c.contains("lora_alpha") || !c["lora_alpha"].is_number() ||
        !(c["lora_alpha"].get<double>() > 0)) {
        throw Error(where + "lora_alpha must be a positive number");
    }
    refuse_if("use_rslora", true, "rsLoRA's alpha / sqrt(r) scaling is not computed here");
    refuse_if("use_dora", true, "DoRA is not computed here");
    refuse_if("fan_in_fan_out", true, "only (out, in) linear weights are supported");
    if (c.contains("bias") && c["bias"] != "none") {
        throw Error(where + "bias " + c["bias"].dump() +
                    ": adapters with trained biases are "
                    "not computed here (\"none\" only)");
    }
    if (c.contains("rank_pattern") && !c["rank_pattern"].empty()) {
        throw Error(where + "rank_pattern: per-module ranks are not supported");
    }
    if (c.contains("alpha_pattern") && !c["alpha_pattern"].empty()) {
        throw Error(where + "alpha_pattern: per-module alphas are not supported");
    }
    if (!c.contains("target_modules") || !c["target_modules"].is_array()) {
        throw Error(where +
                    "target_modules must be a list of module names (a regex string is "
                    "not supported)");
    }
    LoraConfig lc;
    lc.rank = c["r"].get<int>();
    lc.alpha = c["lora_alpha"].get<double>();
    lc.targets.clear();
    for (const json& t : c["target_modules"]) {
        if (!t.is_string()) throw Error(where + "target_modules: every entry must be a string");
        lc.targets.push_back(t.get<std::string>());
    }
    try {
        model.enable_lora(lc, 0);
    } catch (const Error& e) {
        throw Error(where + e.what());
    }
    try {
        read_adapter_tensors(model, dir / "adapter_model.safetensors");
    } catch (...) {
        model.drop_lora();  // nothing half-loaded stays behind
        throw;
    }
}

namespace {

void read_adapter_tensors(Model& model, const fs::path& weights_path) {
    const SafetensorsFile file(weights_path);
    std::set<std::string> wanted;
    for (const TensorInfo& t : model.lora_tensors()) {
        wanted.insert(t.name);
        if (!file.has(t.name)) {
            throw Error(file.path() + ": tensor '" + t.name + "' is missing (target_modules " +
                        "names it)");
        }
        const SafeTensor& st = file.at(t.name);
        if (st.shape != t.shape) {
            throw Error(file.path() + ": tensor '" + t.name + "' has shape " +
                        shape_text(st.shape) + " but the base model needs " + shape_text(t.shape));
        }
        if (st.dtype != DType::f32 && st.dtype != DType::f16 && st.dtype != DType::bf16) {
            throw Error(file.path() + ": tensor '" + t.name + "' must be F32, F16 or BF16");
        }
        float* dst = model.lora_params() + t.offset;
        st.to_f32(dst);
        for (size_t i = 0; i < t.numel; i++) {
            if (!std::isfinite(dst[i])) {
                throw Error(file.path() + ": tensor '" + t.name + "' holds a non-finite value " +
                            "at element " + std::to_string(i) + ": the adapted model would " +
                            "compute NaN");
            }
        }
    }
    for (const auto& [name, t] : file.tensors()) {
        if (!wanted.count(name)) {
            throw Error(file.path() + ": tensor '" + name +
                        "' is not an adapter of a targeted projection of this base model");
        }
    }
}

}  // namespace

}  // namespace crucible
