// `crucible convert --to gguf IN_DIR OUT.gguf`: an HF model folder to a llama.cpp GGUF file.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/gguf_writer.h"

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
        "to another format: GGUF for llama.cpp (docs/GGUF.md)");
    struct Options {
        std::string to;
        std::string in;
        std::string out;
        std::string type = "f16";
        std::string name;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("--to", opt->to, "output format")->required()->check(CLI::IsMember({"gguf"}));
    cmd->add_option("IN_DIR", opt->in, "HF model folder, e.g. runs/NAME/checkpoints/step-N")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("OUT", opt->out, "output file, e.g. model.gguf")->required();
    cmd->add_option("--type", opt->type,
                    "tensor type: f32, f16, bf16 or q8_0 (norms and biases stay f32)")
        ->capture_default_str()
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
    cmd->add_option("--name", opt->name, "general.name (default: from the folder's path)");
    return [opt]() {
        static const std::map<std::string, GgufType> kTypes = {
            {"f32", GgufType::f32},
            {"f16", GgufType::f16},
            {"bf16", GgufType::bf16},
            {"q8_0", GgufType::q8_0}};
        const std::filesystem::path in(opt->in);
        const std::unique_ptr<Model> model = load_model(in);
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
