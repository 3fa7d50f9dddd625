#include "tokenizer/text_tokenizer.h"

#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "tokenizer/bpe_tokenizer.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

TextTokenizer::TextTokenizer(const ByteTokenizer& byte) {
    const ByteTokenizer tok = byte;
    encode = [tok](std::string_view t) { return tok.encode(t); };
    decode = [tok](const std::vector<int32_t>& ids) {
        std::vector<int32_t> safe;  // ids of a padded vocabulary have no text
        for (int32_t id : ids) safe.push_back(id >= 0 && id < ByteTokenizer::kVocabSize ? id : '?');
        return tok.decode(safe);
    };
    eos = ByteTokenizer::kEndOfText;
    vocab_size = ByteTokenizer::kVocabSize;
    chat = ChatFormat::ChatML;
    byte_level = true;
}

namespace {

json read_json_if_exists(const fs::path& p) {
    if (!fs::exists(p)) return json();
    json j = json::parse(read_file(p), nullptr, false);
    if (j.is_discarded()) throw Error(p.string() + ": not valid JSON");
    return j;
}

}  // namespace

TextTokenizer load_text_tokenizer(const fs::path& dir) {
    auto bpe = std::make_shared<BpeTokenizer>(dir / "tokenizer.json");
    TextTokenizer t;
    t.encode = [bpe](std::string_view s) { return bpe->encode(s); };
    t.decode = [bpe](const std::vector<int32_t>& ids) { return bpe->decode(ids); };
    t.vocab_size = bpe->vocab_size();
    const fs::path cfg_path = dir / "tokenizer_config.json";
    const json cfg = read_json_if_exists(cfg_path);
    if (cfg.is_object()) {
        // eos_token is a string or an AddedToken object {"content": ...}.
        const json& e = cfg.contains("eos_token") ? cfg["eos_token"] : json();
        const std::string eos_text =
            e.is_string() ? e.get<std::string>()
            : e.is_object() && e.contains("content") && e["content"].is_string()
                ? e["content"].get<std::string>()
                : std::string();
        if (!eos_text.empty()) {
            const auto id = bpe->token_id(eos_text);
            if (!id)
                throw Error(cfg_path.string() + ": eos_token '" + eos_text + "' is not a token");
            t.eos = *id;
        }
        if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) {
            t.chat = detect_chat_format(cfg["chat_template"].get<std::string>(), cfg_path.string());
        }
    }
    if (t.eos < 0) {
        const json gen = read_json_if_exists(dir / "generation_config.json");
        if (gen.is_object() && gen.contains("eos_token_id")) {
            const json& e = gen["eos_token_id"];
            if (e.is_number_integer()) t.eos = e.get<int32_t>();
            if (e.is_array() && !e.empty() && e[0].is_number_integer()) t.eos = e[0].get<int32_t>();
        }
    }
    if (t.eos < 0) {
        throw Error(dir.string() +
                    ": no end-of-sequence token (tokenizer_config.json eos_token or "
                    "generation_config.json eos_token_id)");
    }
    return t;
}

ChatFormat folder_chat_format(const fs::path& dir) {
    const fs::path cfg = dir / "tokenizer_config.json";
    if (!fs::exists(cfg)) return ChatFormat::ChatML;
    const json j = json::parse(read_file(cfg), nullptr, false);
    if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
        return ChatFormat::ChatML;
    return detect_chat_format(j["chat_template"].get<std::string>(), cfg.string(), "--chat-format");
}

std::vector<int32_t> generation_eos_ids(const fs::path& dir) {
    std::vector<int32_t> ids;
    const fs::path gen = dir / "generation_config.json";
    if (!fs::exists(gen)) return ids;
    const json j = json::parse(read_file(gen), nullptr, false);
    if (!j.is_object() || !j.contains("eos_token_id")) return ids;
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
    if (e.is_array()) {
        for (const json& x : e)
            if (x.is_number_integer()) ids.push_back(x.get<int32_t>());
    }
    return ids;
}

}  // namespace crucible
