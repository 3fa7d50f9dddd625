#include "tokenizer/byte_tokenizer.h"

#include "core/error.h"

namespace crucible {

namespace {
constexpr std::string_view kSpecials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
}

std::string_view ByteTokenizer::special_text(int32_t id) {
    if (id < kEndOfText || id >= kVocabSize) return {};
    return kSpecials[id - kEndOfText];
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        bool matched = false;
        if (text[i] == '<') {
            for (int32_t s = 0; s < 3; s++) {
                if (text.substr(i, kSpecials[s].size()) == kSpecials[s]) {
                    ids.push_back(kEndOfText + s);
                    i += kSpecials[s].size();
                    matched = true;
                    break;
                }
            }
        }
        if (!matched) ids.push_back(static_cast<uint8_t>(text[i++]));
    }
    return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (id >= 0 && id < 256) {
            out.push_back(static_cast<char>(id));
        } else if (id < kVocabSize) {
            out += special_text(id);
        } else {
            throw Error("byte tokenizer: id " + std::to_string(id) + " out of range");
        }
    }
    return out;
}

}  // namespace crucible
