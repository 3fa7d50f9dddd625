#include "tokenizer/chat_template.h"

namespace crucible {

std::vector<TextSegment> render_chatml(const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt) {
    std::vector<TextSegment> out;
    for (const ChatMessage& m : messages) {
        const bool assistant = m.role == "assistant";
        out.push_back({"<|im_start|>" + m.role + "\n", false});
        out.push_back({m.content + "<|im_end|>", assistant});
        out.push_back({"\n", false});
    }
    if (add_generation_prompt) out.push_back({"<|im_start|>assistant\n", false});
    return out;
}

}  // namespace crucible
