// Supervised fine-tuning: packed batches, gradient accumulation, AdamW, atomic checkpoints
// and exact resumption.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "tokenizer/text_tokenizer.h"
#include "train/sft_data.h"

namespace crucible {

struct EvalResult {
    double loss = 0.0;       // token-mean loss over the eval set
    double accuracy = -1.0;  // greedy accuracy over eval_generate prompts; -1 if not run
    int64_t n_generated = 0;
};

// Gives a config with an empty run.name a fresh one: "sft-YYYYMMDD-HHMMSS" (UTC).
void resolve_run_name(Config& config);

class SftTrainer {
  public:
    // Builds (or, with resume, reloads) the run described by `config`. Without resume, a run
    // folder that already holds checkpoints is an error, so nothing is overwritten. With
    // resume, the latest complete checkpoint is loaded and the config must equal the run's
    // saved config.yaml. Progress lines go to `log`.
    SftTrainer(const Config& config, bool resume, std::ostream& log);
    ~SftTrainer();

    // Trains until `until_step` (default: train.steps), checkpointing on the way.
    void run(int64_t until_step = -1);
    // Mean loss and greedy accuracy on the eval set.
    EvalResult evaluate();

    int64_t step() const { return step_; }
    Model& model() { return *model_; }
    const std::filesystem::path& run_dir() const { return run_dir_; }
    // checkpoints/step-N of this run.
    std::filesystem::path checkpoint_dir(int64_t step) const;

  private:
    // LoRA on a bf16 or q8_0 base: the base loads in that format alone; else float32.
    MatmulDtype frozen_base_dtype() const;
    void train_step();
    void save_checkpoint();
    void load_checkpoint(const std::filesystem::path& dir);
    // The example index used at position `i` of the infinite, epoch-shuffled stream.
    size_t example_at(int64_t i);

    const Config config_;
    std::ostream& log_;
    std::filesystem::path run_dir_;
    TextTokenizer tokenizer_;  // the model folder's tokenizer.json, else the byte tokenizer
    std::unique_ptr<Model> model_;
    SftDataset train_, eval_;
    std::vector<float> adam_m_, adam_v_;
    std::vector<float> grad_sum_;  // the step's micro-batch gradients, added in order
    int64_t step_ = 0;
    int64_t total_steps_;
    int64_t batch_size_, grad_accum_;
    kernels::LrSchedule schedule_;
    // The train.* values the step reads, taken from the config once.
    struct Hyper {
        float lr, min_lr_ratio, beta1, beta2, eps, weight_decay;
        double grad_clip;
        int64_t warmup_steps, checkpoint_every, eval_every, log_every;
    } hp_{};
    // Data order: epoch e is a permutation drawn from Rng(mix(seed, e)).
    uint64_t seed_;
    int64_t perm_epoch_ = -1;
    std::vector<size_t> perm_;
    PackedBatch batch_;
    double tokens_per_s_ = 0.0;
    double elapsed_s_ = 0.0;
};

}  // namespace crucible
