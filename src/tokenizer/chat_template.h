// Chat formats rendered as segments that know whether they are trained on: ChatML (Crucible's
// byte-level models), Qwen2 and Qwen2.5 (ChatML with their default system prompts) and
// Llama-3. The family of a HF model is recognised from tokenizer_config.json's chat_template.
#pragma once

#include <string>
#include <vector>

#include "core/chat_message.h"

namespace crucible {

// A piece of rendered text; `train` marks text the model should learn to produce (assistant
// content and the end-of-turn token that closes it).
struct TextSegment {
    std::string text;
    bool train;
};

enum class ChatFormat {
    chatml,  // <|im_start|>role\ncontent<|im_end|>\n, no default system prompt
    qwen2,   // ChatML; "You are a helpful assistant." when no system message is given
    qwen25,  // ChatML; "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    llama3,  // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
};

// "chatml", "qwen2", "qwen2.5", "llama3". Throws Error listing the names for anything else.
ChatFormat parse_chat_format(const std::string& name);

// Recognises the family of a Jinja chat_template (from tokenizer_config.json at `where`).
// Throws Error naming `where` and the option that selects a format when it is not one of ours.
ChatFormat detect_chat_format(const std::string& chat_template, const std::string& where,
                              const std::string& option = "chat_template");

// Renders messages as the format's own template would; with `add_generation_prompt` the text
// ends with the opening of an assistant turn.
//
// Tools (the ChatML family: Qwen2.5's and Qwen3's templates, which Hermes-style models share):
// `tools` are the tool definitions as the template's `tojson` writes them (core/python_json.h),
// listed in the system turn between <tools></tools> after the system message (or the format's
// default system prompt) with the instruction to answer calls in <tool_call> tags. A "tool"
// message is a tool's result: consecutive ones share one user turn, each in <tool_response>
// tags. An assistant turn's calls are part of its content (hermes_tool_call_text). Llama-3
// renders no tools: `tools` there, or a "tool" message, throws Error.
std::vector<TextSegment> render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt,
                                     const std::vector<std::string>& tools = {});
// The concatenated text of render_chat.
std::string render_chat_text(ChatFormat format, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt,
                             const std::vector<std::string>& tools = {});

// Whether `format` renders tools and tool messages.
bool chat_format_has_tools(ChatFormat format);

// One call as an assistant turn's content holds it: "<tool_call>\n{\"name\": \"NAME\",
// \"arguments\": ARGUMENTS}\n</tool_call>", ARGUMENTS the JSON text as `tojson` writes it.
// Calls follow the turn's text (if any) each after a newline, as the templates put them.
std::string hermes_tool_call_text(const std::string& name, const std::string& arguments);

// Plain ChatML (ChatFormat::chatml).
inline std::vector<TextSegment> render_chatml(const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) {
    return render_chat(ChatFormat::chatml, messages, add_generation_prompt);
}

}  // namespace crucible
