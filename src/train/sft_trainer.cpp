#include "train/sft_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "dist/world.h"
#include "engine/engine.h"
#include "env/countdown.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "run/optimizer.h"
#include "run/run_folder.h"
#include "run/trainer_checkpoint.h"
#include "train/sft_config.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// FNV-1a over every example's tokens and targets: a resumed run refuses different data.
uint64_t dataset_hash(const SftDataset& ds) {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](uint64_t x) {
        for (int i = 0; i < 8; i++) {
            h ^= (x >> (8 * i)) & 0xff;
            h *= 1099511628211ULL;
        }
    };
    for (const SftExample& ex : ds.examples) {
        mix(ex.tokens.size());
        for (size_t i = 0; i < ex.tokens.size(); i++)
            mix((uint64_t)ex.tokens[i] * 2 + ex.target[i]);
    }
    return h;
}

SftDataset load_dataset(const Config& cfg, bool eval_split, const TextTokenizer& tok) {
    const std::string spec = cfg.get_string(eval_split ? "data.eval" : "data.train");
    if (spec.rfind("builtin:", 0) == 0) {
        return builtin_sft_dataset(
            spec, eval_split, (int)cfg.get_int("data.builtin_train_examples"),
            (int)cfg.get_int("data.builtin_eval_examples"), (uint64_t)cfg.get_int("seed"), tok);
    }
    return load_sft_jsonl(spec, tok, (int)cfg.get_int("data.max_seq_len"));
}

ModelConfig arch_from_config(const Config& cfg) {
    json j;
    for (const char* key :
         {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
          "num_attention_heads", "num_key_value_heads", "max_position_embeddings"}) {
        j[key] = cfg.get_int(std::string("model.arch.") + key);
    }
    j["rms_norm_eps"] = cfg.get_double("model.arch.rms_norm_eps");
    j["rope_theta"] = cfg.get_double("model.arch.rope_theta");
    j["tie_word_embeddings"] = cfg.get_bool("model.arch.tie_word_embeddings");
    j["model_type"] = cfg.get_string("model.arch.model_type");
    j["eos_token_id"] = ByteTokenizer::kEndOfText;
    return parse_model_config(j, "config model.arch");
}

// Refuses, before anything large is allocated, a run whose model (parameters, gradients,
// AdamW's two moments, and the micro-batches' gradient sum with accumulation) and largest forward
// (a micro-batch, or an eval chunk of batch_size sequences) at the longest example would not fit
// this machine's memory.
void check_memory(const Config& cfg, const ModelConfig& mc, bool new_model, const SftDataset& train,
                  const SftDataset& eval) {
    const double batch = double(cfg.get_int("train.batch_size"));
    const double micro = batch / double(cfg.get_int("train.grad_accum"));
    double longest = 1;
    for (const SftDataset* ds : {&train, &eval}) {
        for (const SftExample& ex : ds->examples)
            longest = std::max(longest, double(ex.tokens.size()));
    }
    const double seqs = std::max(micro, std::min(batch, double(eval.examples.size())));
    const double model_bytes = (batch / micro > 1 ? 20 : 16) * Model::param_count(mc);
    const double act_bytes =
        4 * Model::activation_floats(mc, seqs, longest) + 20 * seqs * longest + 8 * batch;
    const double have = physical_memory_bytes();
    if (model_bytes + act_bytes <= have) return;
    auto gb = [](double bytes) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
        return std::string(buf);
    };
    const std::string model =
        (new_model ? "model.arch: " : "model.path's config.json: ") + Model::param_count_cause(mc);
    char seq_text[160];
    std::snprintf(seq_text, sizeof seq_text,
                  "train.batch_size %.0f / train.grad_accum %.0f: %.0f sequences of up to %.0f "
                  "tokens (data.max_seq_len)",
                  batch, batch / micro, seqs, longest);
    throw Error("config: this run needs about " + gb(model_bytes + act_bytes) +
                ", more than this machine's " + gb(have) + ": the model " + gb(model_bytes) +
                " for parameters, gradients, AdamW state and the gradient sum with accumulation (" +
                model + "), activations " + gb(act_bytes) + " (" + seq_text + ")");
}

}  // namespace

void resolve_run_name(Config& config) {
    name_new_run(config, "sft");
}

SftTrainer::SftTrainer(const Config& config, bool resume, std::ostream& log)
    : config_(config), log_(log) {
    run_dir_ = fs::path(config_.get_string("run.dir")) / config_.get_string("run.name");
    if (config_.get_string("run.name").empty()) {
        throw Error("config: run.name is empty (resolve_run_name() names new runs)");
    }
    total_steps_ = config_.get_int("train.steps");
    batch_size_ = config_.get_int("train.batch_size");
    grad_accum_ = config_.get_int("train.grad_accum");
    seed_ = static_cast<uint64_t>(config_.get_int("seed"));
    // Each number's interval is the schema's (sft_config.h); this rule ties two keys.
    if (batch_size_ % grad_accum_ != 0) {
        throw Error("config: train.batch_size must be a positive multiple of train.grad_accum");
    }
    // Data parallel (mpirun -np N): each rank takes whole micro-batches of the same global batch.
    if (grad_accum_ % dist::size() != 0) {
        throw Error("config: train.grad_accum " + std::to_string(grad_accum_) +
                    " is not a multiple of the " + std::to_string(dist::size()) +
                    " ranks (mpirun -np): each rank takes train.grad_accum / ranks whole "
                    "micro-batches of the global batch");
    }
    hp_.lr = (float)config_.get_double("train.lr");
    hp_.min_lr_ratio = (float)config_.get_double("train.min_lr_ratio");
    hp_.warmup_steps = config_.get_int("train.warmup_steps");
    hp_.beta1 = (float)config_.get_double("train.beta1");
    hp_.beta2 = (float)config_.get_double("train.beta2");
    hp_.eps = (float)config_.get_double("train.eps");
    hp_.weight_decay = (float)config_.get_double("train.weight_decay");
    hp_.grad_clip = config_.get_double("train.grad_clip");
    hp_.checkpoint_every = config_.get_int("train.checkpoint_every");
    hp_.eval_every = config_.get_int("train.eval_every");
    hp_.log_every = std::max<int64_t>(1, config_.get_int("train.log_every"));
    const std::string sched = config_.get_string("train.schedule");
    if (sched != "cosine" && sched != "constant") {
        throw Error("config: train.schedule must be cosine or constant, got '" + sched + "'");
    }
    schedule_ = sched == "cosine" ? kernels::LrSchedule::cosine : kernels::LrSchedule::constant;

    // A model folder with a tokenizer.json brings its tokenizer; new models use bytes.
    const std::string start_from = config_.get_string("model.path");
    tokenizer_ = !start_from.empty() && fs::exists(fs::path(start_from) / "tokenizer.json")
                     ? load_text_tokenizer(start_from)
                     : TextTokenizer(ByteTokenizer());
    train_ = load_dataset(config_, false, tokenizer_);
    if (!config_.get_string("data.eval").empty()) eval_ = load_dataset(config_, true, tokenizer_);
    if (train_.truncated > 0) {
        log_ << "note: " << train_.truncated
             << " training examples truncated to data.max_seq_len\n";
    }

    // A new model's memory is checked before the run folder is written or anything allocated.
    if (!resume && start_from.empty()) {
        check_memory(config_, arch_from_config(config_), true, train_, eval_);
    }

    const fs::path ckpt_root = run_dir_ / "checkpoints";
    // Rank 0 owns the run folder; the others read it once rank 0 has checked and opened it.
    std::string latest_text;
    if (dist::is_root()) {
        latest_text =
            std::to_string(open_run_folder(run_dir_, config_, kSftConfigDefaults, resume));
    }
    dist::broadcast(latest_text);
    const int64_t latest = std::stoll(latest_text);
    if (resume) {
        load_checkpoint(checkpoint_dir(latest));
        log_ << "resumed " << run_dir_.string() << " at step " << step_ << "\n";
    } else {
        const std::string path = config_.get_string("model.path");
        if (!path.empty()) {
            model_ = load_model(path, frozen_base_dtype());
        } else {
            model_ = std::make_unique<Model>(arch_from_config(config_));
            model_->init_random(Rng::mix(seed_, 0x1417),
                                (float)config_.get_double("model.init_std"));
        }
        if (!path.empty()) check_memory(config_, model_->config(), false, train_, eval_);
        const LoraConfig lora = read_lora_settings(config_);
        if (lora.rank > 0) {
            if (path.empty()) {
                throw Error("lora.rank: LoRA trains adapters on a base model: set model.path");
            }
            model_->enable_lora(lora, Rng::mix(seed_, 0x1024a));
        }
        adam_m_.assign(model_->trainable().size, 0.0f);
        adam_v_.assign(model_->trainable().size, 0.0f);
        if (dist::is_root()) write_file_durable(run_dir_ / "metrics.jsonl", "");
    }
    model_->set_matmul_dtype(parse_matmul_dtype(config_.get_string("train.dtype"), "train.dtype"));
    if (model_->config().vocab_size < tokenizer_.vocab_size) {
        throw Error("model vocab_size " + std::to_string(model_->config().vocab_size) +
                    " is smaller than the tokenizer's " + std::to_string(tokenizer_.vocab_size) +
                    " ids");
    }
    if (dist::is_root()) {
        // Drop half-written checkpoints from a killed run; they were never published.
        remove_unpublished_checkpoints(ckpt_root);
        // A resumed run forgets metrics logged after its checkpoint: those steps run again.
        if (resume) truncate_jsonl_after_step(run_dir_ / "metrics.jsonl", step_);
    }
    const int64_t params = static_cast<int64_t>(model_->num_params());
    log_ << "model: " << model_->config().model_type << ", " << params << " parameters";
    if (model_->has_lora()) {
        log_ << " (LoRA rank " << model_->lora_config().rank << ": " << model_->lora_num_params()
             << " trained)";
    }
    log_ << "; train " << train_.examples.size() << " examples, eval " << eval_.examples.size()
         << " examples; run folder " << run_dir_.string() << "\n";
}

MatmulDtype SftTrainer::frozen_base_dtype() const {
    // A LoRA run in bf16 or q8_0 never needs its base's fp32 matrices: it loads them in that
    // format alone.
    const MatmulDtype dtype = parse_matmul_dtype(config_.get_string("train.dtype"), "train.dtype");
    return read_lora_settings(config_).rank > 0 ? dtype : MatmulDtype::float32;
}

SftTrainer::~SftTrainer() = default;

fs::path SftTrainer::checkpoint_dir(int64_t step) const {
    return run_dir_ / "checkpoints" / ("step-" + std::to_string(step));
}

size_t SftTrainer::example_at(int64_t i) {
    const int64_t n = static_cast<int64_t>(train_.examples.size());
    const int64_t epoch = i / n;
    if (epoch != perm_epoch_) {
        perm_.resize(n);
        for (int64_t k = 0; k < n; k++) perm_[k] = k;
        Rng rng(Rng::mix(seed_, static_cast<uint64_t>(epoch) + 1));
        for (int64_t k = n - 1; k > 0; k--) std::swap(perm_[k], perm_[rng.below(k + 1)]);
        perm_epoch_ = epoch;
    }
    return perm_[i % n];
}

void SftTrainer::train_step() {
    const auto t0 = Clock::now();
    const float lr =
        kernels::lr_at(step_, total_steps_, hp_.warmup_steps, hp_.lr, hp_.min_lr_ratio, schedule_);
    std::vector<size_t> idx(batch_size_);
    int64_t targets = 0;
    for (int64_t b = 0; b < batch_size_; b++) {
        idx[b] = example_at(step_ * batch_size_ + b);
        targets += count_targets(train_.examples[idx[b]]);
    }
    // Token-mean over the whole step: every micro-batch weighs its tokens by 1 / targets.
    const float weight = 1.0f / static_cast<float>(std::max<int64_t>(targets, 1));
    // This rank's micro-batches: all of them alone, else its consecutive share.
    const int64_t per_rank = grad_accum_ / dist::size();
    const int64_t first = dist::rank() * per_rank;
    const int64_t micro = batch_size_ / grad_accum_;
    double loss = 0.0;
    int64_t tokens = 0;
    const Model::Trainable tr = model_->trainable();
    // Each micro-batch's gradient is computed alone and the micro-batch sums are added in order
    // (the kernels' own accumulation would round another way), so a run of N ranks with one
    // micro-batch each sums ((g0 + g1) + g2)... as one process with train.grad_accum N does.
    if (per_rank > 1) grad_sum_.resize(tr.size);
    for (int64_t a = first; a < first + per_rank; a++) {
        batch_.clear();
        for (int64_t b = a * micro; b < (a + 1) * micro; b++) {
            pack_example(train_.examples[idx[b]], weight, &batch_);
        }
        tokens += batch_.n_tokens();
        model_->zero_grads();
        loss += model_->forward(batch_);
        model_->backward();
        if (per_rank > 1 && a == first) {
            std::copy(tr.grads, tr.grads + tr.size, grad_sum_.begin());  // not 0 + g: keeps -0
        } else if (per_rank > 1) {
            for (size_t i = 0; i < tr.size; i++) grad_sum_[i] = grad_sum_[i] + tr.grads[i];
        }
    }
    if (per_rank > 1) std::copy(grad_sum_.begin(), grad_sum_.end(), tr.grads);
    dist::reset_comm_stats();
    dist::sum_in_rank_order(tr.grads, tr.size);
    dist::sum_in_rank_order(&loss, 1);
    tokens = dist::sum(tokens);
    const dist::CommStats comm = dist::comm_stats();
    const double clip = hp_.grad_clip;
    const double gnorm =
        clip > 0
            ? kernels::clip_grad_norm(model_->trainable().grads, model_->trainable().size, clip)
            : kernels::global_norm(model_->trainable().grads, model_->trainable().size);
    // A loss or gradient that went non-finite stops the run before the update reaches the
    // weights, so no checkpoint of that state is ever written (earlier ones stay).
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
        throw Error("sft: step " + std::to_string(step_ + 1) + ": the " +
                    (std::isfinite(loss) ? "gradient norm is " + std::to_string(gnorm)
                                         : "loss is " + std::to_string(loss)) +
                    "; stopped before the update, without a checkpoint of this state");
    }
    adamw_step(*model_, adam_m_, adam_v_, {lr, hp_.beta1, hp_.beta2, hp_.eps, hp_.weight_decay},
               step_ + 1);
    step_++;
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    elapsed_s_ += dt;
    tokens_per_s_ = tokens / dt;

    json line = {{"step", step_},    {"loss", loss},
                 {"lr", lr},         {"grad_norm", gnorm},
                 {"tokens", tokens}, {"target_tokens", targets},
                 {"step_s", dt},     {"tokens_per_s", tokens / dt}};
    if (dist::size() > 1) {
        line["ranks"] = dist::size();
        line["comm_s"] = comm.seconds;
        line["comm_bytes_sent"] = comm.bytes_sent;
    }
    const int64_t eval_every = hp_.eval_every;
    const bool last = step_ == total_steps_;
    // Rank 0 evaluates and writes; the others go on to the next step's sum and wait there.
    if (!dist::is_root()) return;
    if (!eval_.examples.empty() && (last || (eval_every > 0 && step_ % eval_every == 0))) {
        const EvalResult ev = evaluate();
        line["eval_loss"] = ev.loss;
        if (ev.accuracy >= 0) line["eval_accuracy"] = ev.accuracy;
        char buf[160];
        std::snprintf(buf, sizeof buf, "eval  step %lld | eval loss %.4f", (long long)step_,
                      ev.loss);
        log_ << buf;
        if (ev.accuracy >= 0) {
            std::snprintf(buf, sizeof buf, " | greedy accuracy %.1f%% of %lld held-out prompts",
                          100.0 * ev.accuracy, (long long)ev.n_generated);
            log_ << buf;
        }
        log_ << "\n";
    }
    // A line that cannot be written (a full disk) stops the run here, before the next step
    // or checkpoint: the last checkpoint and the log agree, and --resume continues from them.
    append_jsonl(run_dir_ / "metrics.jsonl", line);
    const int64_t log_every = hp_.log_every;
    const double eta = (total_steps_ - step_) * (elapsed_s_ / std::max<int64_t>(1, step_));
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "step %lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s",
                  (long long)step_, (long long)total_steps_, loss, lr, gnorm, tokens_per_s_,
                  format_duration(eta).c_str());
    if (step_ % log_every == 0 || last || step_ == 1) {
        log_ << buf << "\n" << std::flush;
    } else if (isatty(STDERR_FILENO)) {
        std::fprintf(stderr, "\r%s\r", buf);
    }
}

void SftTrainer::run(int64_t until_step) {
    if (until_step < 0 || until_step > total_steps_) until_step = total_steps_;
    const int64_t every = hp_.checkpoint_every;
    while (step_ < until_step) {
        train_step();
        if (step_ == total_steps_ || (every > 0 && step_ % every == 0)) {
            if (dist::is_root()) save_checkpoint();
        }
    }
}

EvalResult SftTrainer::evaluate() {
    EvalResult r;
    int64_t targets = 0;
    for (const SftExample& ex : eval_.examples) targets += count_targets(ex);
    const float weight = 1.0f / static_cast<float>(std::max<int64_t>(targets, 1));
    PackedBatch batch;
    for (size_t i = 0; i < eval_.examples.size(); i += batch_size_) {
        batch.clear();
        for (size_t j = i; j < std::min(eval_.examples.size(), i + batch_size_); j++) {
            pack_example(eval_.examples[j], weight, &batch);
        }
        r.loss += model_->forward(batch);
    }
    const int64_t n_gen =
        std::min<int64_t>(config_.get_int("train.eval_generate"), eval_.examples.size());
    if (n_gen <= 0) return r;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < n_gen; i++) {
        const SftExample& ex = eval_.examples[i];
        if (ex.prompt.empty()) break;  // chat data: loss only
        prompts.push_back(tokenizer_.encode(ex.prompt));
    }
    if (prompts.empty()) return r;
    // Greedy, batched through the engine (its greedy tokens equal the full-recompute
    // reference's: Engine.GreedyMatchesReferenceGenerationBatchedOrOneAtATime).
    std::vector<GenerationRequest> requests(prompts.size());
    for (size_t i = 0; i < prompts.size(); i++) {
        requests[i].prompt = std::move(prompts[i]);
        requests[i].params.temperature = 0.0f;
        requests[i].params.max_tokens = static_cast<int>(config_.get_int("train.max_new_tokens"));
        requests[i].params.stop_ids = {tokenizer_.eos};
    }
    const auto outs = Engine(*model_).generate(requests);
    double correct = 0;
    for (size_t i = 0; i < outs.size(); i++) {
        std::vector<int32_t> ids = outs[i][0].tokens;
        if (!ids.empty() && ids.back() == tokenizer_.eos) ids.pop_back();
        const std::string text = tokenizer_.decode(ids);
        const SftExample& ex = eval_.examples[i];
        correct += eval_.task == "countdown" ? countdown_reward(ex.prompt, text)
                                             : (text == ex.completion ? 1.0 : 0.0);
    }
    r.n_generated = static_cast<int64_t>(outs.size());
    r.accuracy = correct / r.n_generated;
    return r;
}

void SftTrainer::save_checkpoint() {
    TrainerCheckpoint c;
    c.model = model_.get();
    c.adam_m = &adam_m_;
    c.adam_v = &adam_v_;
    c.lora_base = config_.get_string("model.path");
    c.write_tokenizer = [&](const fs::path& to) {
        if (tokenizer_.byte_level) {
            ByteTokenizer::save_hf_files(to, model_->config().max_position_embeddings);
        } else {  // the folder's own tokenizer files travel with the weights
            copy_tokenizer_files(config_.get_string("model.path"), to);
        }
    };
    c.config_yaml = config_.dump();
    c.state = {{"format", "crucible-sft-state-1"},
               {"step", step_},
               {"seed", seed_},
               {"examples_seen", step_ * batch_size_},
               {"data_epoch", (step_ * batch_size_) / (int64_t)train_.examples.size()},
               {"data_hash", std::to_string(dataset_hash(train_))},
               {"adam_step", step_}};
    write_trainer_checkpoint(checkpoint_dir(step_), c, "sft", step_, log_);
}

void SftTrainer::load_checkpoint(const fs::path& dir) {
    const json state = read_trainer_state(dir, "crucible-sft-state-1", {"step"}, "SFT");
    const fs::path state_path = dir / "trainer_state.json";
    if (state.value("data_hash", "") != std::to_string(dataset_hash(train_))) {
        throw Error(state_path.string() +
                    ": the training data differs from the data this run "
                    "was trained on; resuming would not continue it exactly");
    }
    model_ = load_model(dir, frozen_base_dtype());
    load_optimizer_state(*model_, dir / "optimizer.safetensors", &adam_m_, &adam_v_);
    step_ = state["step"].get<int64_t>();
}

}  // namespace crucible
