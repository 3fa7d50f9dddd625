#include "run/optimizer.h"

#include "core/error.h"
#include "core/file_io.h"
#include "model/safetensors.h"

namespace crucible {

namespace fs = std::filesystem;

void adamw_step(Model& model, std::vector<float>& m, std::vector<float>& v,
                const kernels::AdamWParams& hp, int64_t t) {
    const Model::Trainable w = model.trainable();
    for (const TensorInfo& tensor : w.tensors) {
        kernels::AdamWParams p = hp;
        if (!tensor.decay) p.weight_decay = 0.0f;
        kernels::adamw_update(w.params + tensor.offset, w.grads + tensor.offset,
                              m.data() + tensor.offset, v.data() + tensor.offset, tensor.numel, p,
                              t);
    }
}

void save_optimizer_state(const Model& model, const std::vector<float>& m,
                          const std::vector<float>& v, const fs::path& file) {
    std::vector<TensorToWrite> opt;
    for (const TensorInfo& t : model.has_lora() ? model.lora_tensors() : model.tensors()) {
        opt.push_back({"exp_avg." + t.name, t.shape, m.data() + t.offset});
        opt.push_back({"exp_avg_sq." + t.name, t.shape, v.data() + t.offset});
    }
    write_file_durable(file, serialize_safetensors(opt, {}));
}

void load_optimizer_state(const Model& model, const fs::path& file, std::vector<float>* m,
                          std::vector<float>* v) {
    const size_t n = model.has_lora() ? model.lora_num_params() : model.num_params();
    m->assign(n, 0.0f);
    v->assign(n, 0.0f);
    const SafetensorsFile opt(file);
    for (const TensorInfo& t : model.has_lora() ? model.lora_tensors() : model.tensors()) {
        const SafeTensor& mt = opt.at("exp_avg." + t.name);
        const SafeTensor& vt = opt.at("exp_avg_sq." + t.name);
        if (mt.numel() != t.numel || vt.numel() != t.numel) {
            throw Error(opt.path() + ": optimizer state for '" + t.name + "' has the wrong size");
        }
        mt.to_f32(m->data() + t.offset);
        vt.to_f32(v->data() + t.offset);
    }
}

}  // namespace crucible
