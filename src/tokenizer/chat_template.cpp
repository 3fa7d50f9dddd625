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

bool chat_format_has_tools(ChatFormat format) {
    return format != ChatFormat::llama3;
}

std::string hermes_tool_call_text(const std::string& name, const std::string& arguments) {
    return "<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": " + arguments +
           "}\n</tool_call>";
}

std::vector<TextSegment> render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt,
                                     const std::vector<std::string>& tools) {
    std::vector<TextSegment> out;
    if (!chat_format_has_tools(format)) {
        if (!tools.empty())
            throw Error(
                "the llama3 chat format renders no tools (Crucible renders tools for "
                "the ChatML/Qwen formats)");
        for (const ChatMessage& m : messages)
            if (m.role == "tool")
                throw Error(
                    "the llama3 chat format renders no 'tool' messages (Crucible "
                    "renders them for the ChatML/Qwen formats)");
    }
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
    const char* default_system = format == ChatFormat::qwen25  ? kQwen25System
                                 : format == ChatFormat::qwen2 ? kQwen2System
                                                               : nullptr;
    size_t first = 0;
    if (!tools.empty()) {
        // Qwen2.5's template: the system message, or its default system prompt, then the
        // tools; Qwen3's (our plain ChatML, which has no default): the tools alone.
        std::string system;
        if (has_system) {
            system = messages[0].content + "\n\n";
            first = 1;
        } else if (default_system) {
            system = std::string(default_system) + "\n\n";
        }
        system +=
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
        for (const std::string& t : tools) system += "\n" + t;
        system +=
            "\n</tools>\n\nFor each function call, return a json object with function name and "
            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
            "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
        out.push_back({"<|im_start|>system\n" + system + "<|im_end|>\n", false});
    } else if (!has_system && default_system) {
        out.push_back(
            {std::string("<|im_start|>system\n") + default_system + "<|im_end|>\n", false});
    }
    for (size_t i = first; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        if (m.role == "tool") {
            // Consecutive tool results share one user turn.
            const bool opens = i == 0 || messages[i - 1].role != "tool";
            const bool closes = i + 1 == messages.size() || messages[i + 1].role != "tool";
            out.push_back({std::string(opens ? "<|im_start|>user" : "") + "\n<tool_response>\n" +
                               m.content + "\n</tool_response>" + (closes ? "<|im_end|>\n" : ""),
                           false});
            continue;
        }
        out.push_back({"<|im_start|>" + m.role + "\n", false});
        out.push_back({m.content + "<|im_end|>", m.role == "assistant"});
        out.push_back({"\n", false});
    }
    if (add_generation_prompt) out.push_back({"<|im_start|>assistant\n", false});
    return out;
}

std::string render_chat_text(ChatFormat format, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt, const std::vector<std::string>& tools) {
    std::string text;
    for (const TextSegment& s : render_chat(format, messages, add_generation_prompt, tools)) {
        text += s.text;
    }
    return text;
}

}  // namespace crucible
