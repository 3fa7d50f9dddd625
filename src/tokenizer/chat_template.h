// ChatML (Qwen2's chat format) rendered as segments that know whether they are trained on.
#pragma once

#include <string>
#include <vector>

namespace crucible {

struct ChatMessage {
    std::string role;  // "system", "user", "assistant", "tool"
    std::string content;
};

// A piece of rendered text; `train` marks text the model should learn to produce (assistant
// content and its closing <|im_end|>).
struct TextSegment {
    std::string text;
    bool train;
};

// "<|im_start|>{role}\n{content}<|im_end|>\n" per message; with `add_generation_prompt`,
// a final "<|im_start|>assistant\n".
std::vector<TextSegment> render_chatml(const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt);

}  // namespace crucible
