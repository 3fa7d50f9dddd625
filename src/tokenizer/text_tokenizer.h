// What training and evaluation need from a tokenizer, whichever kind a model folder has:
// Crucible's byte tokenizer or a Hugging Face tokenizer.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/chat_template.h"

namespace crucible {

struct TextTokenizer {
    std::function<std::vector<int32_t>(std::string_view)> encode;
    std::function<std::string(const std::vector<int32_t>&)> decode;
    int32_t eos = -1;    // closes every trained completion
    int vocab_size = 0;  // largest id in use + 1
    ChatFormat chat = ChatFormat::chatml;
    bool byte_level = false;  // Crucible's own byte tokenizer (checkpoints write its files)

    TextTokenizer() = default;
    // The byte tokenizer (implicit, so byte-tokenizer callers need no change).
    TextTokenizer(const ByteTokenizer& byte);  // NOLINT(google-explicit-constructor)
};

// The tokenizer of a model folder: tokenizer.json (byte-level BPE), the end-of-sequence token
// from tokenizer_config.json's eos_token (else generation_config.json's eos_token_id), the chat
// format from its chat_template (ChatML when there is none). Throws Error naming the file.
TextTokenizer load_text_tokenizer(const std::filesystem::path& dir);

// The chat format a model folder's tokenizer_config.json names by its chat_template; ChatML
// when the file or the template is absent or the file is not JSON. Throws Error (naming the
// file and suggesting --chat-format) for a template it does not recognise.
ChatFormat folder_chat_format(const std::filesystem::path& dir);

// generation_config.json's eos_token_id in the model folder `dir` (a number or a list of
// numbers), in order: the ids that end generation. Empty when the file or the field is absent;
// a file that is not JSON counts as absent, entries that are not integers are skipped.
std::vector<int32_t> generation_eos_ids(const std::filesystem::path& dir);

}  // namespace crucible
