// `crucible convert --to gguf IN_DIR OUT.gguf`: an HF model folder to a llama.cpp GGUF file;
// `--to hf IN_DIR OUT_DIR`: to an HF folder. `--lora ADAPTER_DIR` merges a PEFT LoRA adapter
// into the weights first.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/gguf_writer.h"
#include "model/lora_adapter.h"
#include "run/run_folder.h"

namespace crucible::cli {

namespace {

// runs/NAME/checkpoints/step-N -> "NAME-step-N"; any other folder -> its own name.
std::string default_model_name(const std::filesystem::path& dir) {
    const std::filesystem::path abs = std::filesystem::absolute(dir).lexically_normal();
    std::filesystem::path d = abs;
    if (!d.has_filename()) d = d.parent_path();  // a trailing slash
    if (d.parent_path().filename() == "checkpoints" && d.parent_path().has_parent_path()) {
        return d.parent_path().parent_path().filename().string() + "-" + d.filename().string();
    }
    return d.filename().string();
}

}  // namespace

std::function<int()> add_convert(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "convert",
        "Convert an HF model folder (config.json, model.safetensors, tokenizer.json) "
        "to another format: GGUF for llama.cpp (docs/GGUF.md) or an HF folder, merging a PEFT "
        "LoRA adapter with --lora");
    struct Options {
        std::string to;
        std::string in;
        std::string out;
        std::string type = "f16";
        std::string name;
        std::string lora;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("--to", opt->to, "output format: gguf (a file) or hf (a folder)")
        ->required()
        ->check(CLI::IsMember({"gguf", "hf"}));
    cmd->add_option("--lora", opt->lora,
                    "a PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) "
                    "to merge into the weights: W + (lora_alpha / r) B A")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("IN_DIR", opt->in, "HF model folder, e.g. runs/NAME/checkpoints/step-N")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("OUT", opt->out, "output file (gguf, e.g. model.gguf) or new folder (hf)")
        ->required();
    cmd->add_option("--type", opt->type,
                    "tensor type: f32, f16, bf16 or q8_0 (norms and biases stay f32)")
        ->capture_default_str()
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
    cmd->add_option("--name", opt->name, "general.name (default: from the folder's path)");
    return [opt]() {
        static const std::map<std::string, GgufType> kTypes = {{"f32", GgufType::f32},
                                                               {"f16", GgufType::f16},
                                                               {"bf16", GgufType::bf16},
                                                               {"q8_0", GgufType::q8_0}};
        const std::filesystem::path in(opt->in);
        const std::unique_ptr<Model> model = load_model(in);
        if (!opt->lora.empty()) load_lora_adapter(*model, opt->lora);
        // IN_DIR may itself be an adapter folder (a LoRA run's checkpoint): it loaded as base +
        // adapters, and what it computes is the merge. Either way the output is merged.
        model->merge_lora();
        if (opt->to == "hf") {
            const std::filesystem::path out(opt->out);
            if (std::filesystem::exists(out)) {
                throw Error(opt->out + ": already exists; convert writes a new folder");
            }
            std::filesystem::create_directories(out);
            save_model(*model, out);
            copy_tokenizer_files(in, out);
            std::cout << "wrote " << opt->out << " (" << model->config().model_type << ", "
                      << model->tensors().size() << " tensors"
                      << (opt->lora.empty() ? "" : ", LoRA merged from " + opt->lora) << ")\n";
            return 0;
        }
        const GgufTokenizer tok = load_gguf_tokenizer(in, model->config());
        const std::string name = opt->name.empty() ? default_model_name(in) : opt->name;
        write_gguf(*model, tok, name, kTypes.at(opt->type), opt->out);
        std::cout << "wrote " << opt->out << " (" << model->config().model_type << ", " << opt->type
                  << ", " << model->tensors().size() << " tensors, "
                  << std::filesystem::file_size(opt->out) << " bytes)\n";
        return 0;
    };
}

}  // namespace crucible::cli
