// Chat formats against the exact strings their Jinja templates produce, worked out by hand
// from the template text (Qwen2.5-Instruct's, Qwen2-Instruct's and Llama-3-Instruct's).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace crucible {
namespace {

const std::vector<ChatMessage> kUserOnly = {{"user", "What is 2+2?"}};
const std::vector<ChatMessage> kWithSystem = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};

TEST(ChatTemplate, Qwen25AddsItsDefaultSystemPrompt) {
    EXPECT_EQ(render_chat_text(ChatFormat::qwen25, kUserOnly, true),
              "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
              "assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
              "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Qwen2DefaultSystemPromptAndAGivenSystemReplacesIt) {
    EXPECT_EQ(render_chat_text(ChatFormat::qwen2, kUserOnly, false),
              "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    EXPECT_EQ(render_chat_text(ChatFormat::qwen25, kWithSystem, true),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
              "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
              "<|im_start|>assistant\n");
}

TEST(ChatTemplate, PlainChatMLHasNoDefaultSystem) {
    EXPECT_EQ(render_chat_text(ChatFormat::chatml, kUserOnly, true),
              "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3HeadersTrimmedContentAndEot) {
    const std::vector<ChatMessage> m = {{"system", "  Be brief. "}, {"user", "Hi\n"}};
    EXPECT_EQ(render_chat_text(ChatFormat::llama3, m, true),
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, OnlyAssistantTurnsAreTrained) {
    for (ChatFormat f : {ChatFormat::chatml, ChatFormat::qwen25, ChatFormat::llama3}) {
        std::string trained;
        for (const TextSegment& s : render_chat(f, kWithSystem, false)) {
            if (s.train) trained += s.text;
        }
        EXPECT_EQ(trained, f == ChatFormat::llama3 ? "Hello!<|eot_id|>" : "Hello!<|im_end|>");
    }
}

TEST(ChatTemplate, DetectsTheFamilyFromTheJinjaText) {
    // Excerpts of the real templates' distinguishing text.
    EXPECT_EQ(detect_chat_format("{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by "
                                 "Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}",
                                 "t"),
              ChatFormat::qwen25);
    EXPECT_EQ(detect_chat_format("{{ '<|im_start|>system\\nYou are a helpful assistant.' }}", "t"),
              ChatFormat::qwen2);
    EXPECT_EQ(detect_chat_format("{% for m in messages %}<|im_start|>{{ m['role'] }}", "t"),
              ChatFormat::chatml);
    EXPECT_EQ(
        detect_chat_format("'<|start_header_id|>' + message['role'] + '<|end_header_id|>'", "t"),
        ChatFormat::llama3);
}

TEST(ChatTemplate, UnknownTemplateNamesTheFileAndTheOption) {
    try {
        detect_chat_format("[INST] {{ m }} [/INST]", "model/tokenizer_config.json",
                           "--chat-format");
        FAIL();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model/tokenizer_config.json"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--chat-format"), std::string::npos) << msg;
    }
    EXPECT_THROW(parse_chat_format("mistral"), Error);
    EXPECT_EQ(parse_chat_format("qwen2.5"), ChatFormat::qwen25);
}

}  // namespace
}  // namespace crucible
