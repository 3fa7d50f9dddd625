#include "eval/prompt_mode.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "core/yaml_reader.h"

namespace crucible::eval {

namespace fs = std::filesystem;

namespace {

// The first non-blank line of a JSONL file holds "messages" (chat data); nullopt-like -1 when
// the file cannot be read.
int first_line_is_chat(const fs::path& file) {
    std::ifstream in(file);
    if (!in) return -1;
    for (std::string line; std::getline(in, line);) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_object()) return -1;
        return j.contains("messages") ? 1 : 0;
    }
    return -1;
}

}  // namespace

PromptMode default_prompt_mode(const std::string& model_dir) {
    const fs::path dir(model_dir);
    const fs::path run_config = dir / "config.yaml";
    if (fs::exists(run_config)) {
        try {
            const YAML::Node y = parse_yaml(read_file(run_config), run_config.string());
            if (y["task"] && y["task"]["chat"]) {
                const bool chat = y["task"]["chat"].as<bool>();
                return {chat, chat ? "the RL run that made it put prompts through the chat "
                                     "template (task.chat: true)"
                                   : "the RL run that made it trained on raw prompts (task.chat: "
                                     "false)"};
            }
            if (y["data"] && y["data"]["train"]) {
                const std::string train = y["data"]["train"].as<std::string>();
                if (train.rfind("builtin:", 0) == 0)
                    return {false,
                            "the SFT run that made it trained on raw prompts (" + train + ")"};
                const int chat = first_line_is_chat(train);
                if (chat >= 0)
                    return {chat == 1, chat == 1 ? "the SFT run that made it trained on chat "
                                                   "messages (" +
                                                       train + ")"
                                                 : "the SFT run that made it trained on raw "
                                                   "prompt/completion lines (" +
                                                       train + ")"};
            }
        } catch (const std::exception&) {
            // Not a config of ours: decide by the tokenizer below.
        }
    }
    const fs::path tc = dir / "tokenizer_config.json";
    bool has_template = false;
    if (fs::exists(tc)) {
        try {
            const nlohmann::json j = nlohmann::json::parse(read_file(tc), nullptr, false);
            has_template = j.is_object() && j.contains("chat_template") &&
                           j["chat_template"].is_string() &&
                           !j["chat_template"].get<std::string>().empty();
        } catch (const std::exception&) {
        }
    }
    return {has_template, has_template ? "the folder's tokenizer has a chat template"
                                       : "the folder's tokenizer has no chat template"};
}

}  // namespace crucible::eval
