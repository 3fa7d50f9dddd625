#include "tokenizer/byte_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

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

std::string byte_level_char(uint8_t b) {
    auto printable = [](int x) {
        return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    };
    uint32_t cp = b;
    if (!printable(b)) {
        int n = 0;
        for (int x = 0; x < b; x++) n += printable(x) ? 0 : 1;
        cp = 256 + n;
    }
    std::string out;
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else {  // all code points here are below U+0800: two bytes
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return out;
}

void ByteTokenizer::save_hf_files(const std::filesystem::path& dir, int model_max_length) {
    using nlohmann::json;
    const json byte_level = {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"trim_offsets", false},
                             {"use_regex", false}};
    json vocab = json::object();
    for (int b = 0; b < 256; b++) vocab[byte_level_char(static_cast<uint8_t>(b))] = b;
    json added = json::array();
    json added_decoder = json::object();
    for (int32_t id = kEndOfText; id < kVocabSize; id++) {
        const json entry = {{"id", id},
                            {"content", std::string(special_text(id))},
                            {"single_word", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"normalized", false},
                            {"special", true}};
        added.push_back(entry);
        json dec = entry;
        dec.erase("id");
        added_decoder[std::to_string(id)] = dec;
    }
    const json tokenizer = {{"version", "1.0"},
                            {"truncation", nullptr},
                            {"padding", nullptr},
                            {"added_tokens", added},
                            {"normalizer", nullptr},
                            {"pre_tokenizer", byte_level},
                            {"post_processor", byte_level},
                            {"decoder", byte_level},
                            {"model",
                             {{"type", "BPE"},
                              {"dropout", nullptr},
                              {"unk_token", nullptr},
                              {"continuing_subword_prefix", ""},
                              {"end_of_word_suffix", ""},
                              {"fuse_unk", false},
                              {"byte_fallback", false},
                              {"ignore_merges", false},
                              {"vocab", vocab},
                              {"merges", json::array()}}}};
    const json config = {
        {"tokenizer_class", "PreTrainedTokenizerFast"},
        {"bos_token", nullptr},
        {"eos_token", "<|endoftext|>"},
        {"pad_token", "<|endoftext|>"},
        {"model_max_length", model_max_length},
        {"added_tokens_decoder", added_decoder},
        {"chat_template",
         "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] "
         "}}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% "
         "endif %}"}};
    const json generation = {
        {"eos_token_id", {kEndOfText, kImEnd}}, {"pad_token_id", kEndOfText}, {"do_sample", false}};
    write_file_durable(dir / "tokenizer.json", tokenizer.dump(2) + "\n");
    write_file_durable(dir / "tokenizer_config.json", config.dump(2) + "\n");
    write_file_durable(dir / "generation_config.json", generation.dump(2) + "\n");
}

}  // namespace crucible
