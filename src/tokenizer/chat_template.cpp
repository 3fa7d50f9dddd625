#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "core/strings.h"

namespace crucible {

namespace {

constexpr const char* kQwen25System =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr const char* kQwen2System = "You are a helpful assistant.";

}  // namespace

ChatFormat parse_chat_format(const std::string& name) {
    if (name == "chatml") return ChatFormat::chatml;
    if (name == "qwen2") return ChatFormat::qwen2;
    if (name == "qwen2.5") return ChatFormat::qwen25;
    if (name == "llama3") return ChatFormat::llama3;
    throw Error("unknown chat format '" + name + "' (known: chatml, qwen2, qwen2.5, llama3)");
}

ChatFormat detect_chat_format(const std::string& tpl, const std::string& where,
                              const std::string& option) {
    if (tpl.find("<|im_start|>") != std::string::npos) {
        if (tpl.find(kQwen25System) != std::string::npos) return ChatFormat::qwen25;
        if (tpl.find(kQwen2System) != std::string::npos) return ChatFormat::qwen2;
        return ChatFormat::chatml;
    }
    if (tpl.find("<|start_header_id|>") != std::string::npos) return ChatFormat::llama3;
    throw Error(where +
                ": chat_template is not a format Crucible renders (ChatML/Qwen or "
                "Llama-3); choose one with " +
                option + ": chatml, qwen2, qwen2.5 or llama3");
}

std::vector<TextSegment> render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) {
    std::vector<TextSegment> out;
    if (format == ChatFormat::llama3) {
        // Llama-3-Instruct: bos, then per message a header, the trimmed content and <|eot_id|>.
        out.push_back({"<|begin_of_text|>", false});
        for (const ChatMessage& m : messages) {
            out.push_back({"<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", false});
            out.push_back({trim(m.content) + "<|eot_id|>", m.role == "assistant"});
        }
        if (add_generation_prompt) {
            out.push_back({"<|start_header_id|>assistant<|end_header_id|>\n\n", false});
        }
        return out;
    }
    const bool has_system = !messages.empty() && messages[0].role == "system";
    if (!has_system && format != ChatFormat::chatml) {
        const char* system = format == ChatFormat::qwen25 ? kQwen25System : kQwen2System;
        out.push_back({std::string("<|im_start|>system\n") + system + "<|im_end|>\n", false});
    }
    for (const ChatMessage& m : messages) {
        out.push_back({"<|im_start|>" + m.role + "\n", false});
        out.push_back({m.content + "<|im_end|>", m.role == "assistant"});
        out.push_back({"\n", false});
    }
    if (add_generation_prompt) out.push_back({"<|im_start|>assistant\n", false});
    return out;
}

std::string render_chat_text(ChatFormat format, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) {
    std::string text;
    for (const TextSegment& s : render_chat(format, messages, add_generation_prompt)) {
        text += s.text;
    }
    return text;
}

}  // namespace crucible
