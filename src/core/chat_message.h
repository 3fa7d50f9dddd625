// One message of a chat: what the chat formats render (tokenizer/chat_template.h) and what the
// OpenAI-compatible client sends (serve/openai_client.h). It lives in core so that the client
// and everything that talks HTTP (judge, eval, evolve) need not include the tokenizer.
#pragma once

#include <string>

namespace crucible {

struct ChatMessage {
    std::string role;  // "system", "user", "assistant", "tool"
    std::string content;
};

}  // namespace crucible
