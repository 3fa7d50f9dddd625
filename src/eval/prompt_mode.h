// Whether `crucible eval` sends a raw prompt through the chat template when neither --chat nor
// --raw is given, and why, so that the default follows the model: a checkpoint that was
// trained on raw prompts is evaluated raw (the demo's RL checkpoint scores 2.5% through the
// template and 65.6% raw), and the run's settings say which mode ran and why.
#pragma once

#include <string>

namespace crucible::eval {

struct PromptMode {
    bool chat = true;
    std::string why;  // a clause, e.g. "the RL run that made it trained on raw prompts"
};

// For a local model folder:
//  - a Crucible checkpoint (its config.yaml): an RL run's task.chat; an SFT run's data
//    (built-in tasks and prompt/completion JSONL are raw, "messages" JSONL is chat);
//  - otherwise the folder's tokenizer_config.json: chat when it has a chat_template, raw when
//    it has none.
PromptMode default_prompt_mode(const std::string& model_dir);

}  // namespace crucible::eval
