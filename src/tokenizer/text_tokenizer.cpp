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
    chat = ChatFormat::chatml;
    byte_level = true;
}

namespace {

json read_json_if_exists(const fs::path& p) {
    if (!fs::exists(p)) return json();
    json j = json::parse(read_file(p), nullptr, false);
    if (j.is_discarded()) throw Error(p.string() + ": not valid JSON");
    return j;
}

// generation_config.json's eos_token_id: one id or a list of ids, each in 0..2^31-1. Anything
// else is an error naming the file and the field (it used to be ignored silently).
std::vector<int32_t> read_eos_ids(const json& j, const fs::path& file) {
    std::vector<int32_t> ids;
    if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return ids;
    const json& e = j["eos_token_id"];
    auto take = [&](const json& x) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX) {
            throw Error(file.string() +
                        ": eos_token_id: expected a token id (an integer in "
                        "0..2^31-1) or a list of them, got " +
                        x.dump());
        }
        ids.push_back(x.get<int32_t>());
    };
    if (e.is_array()) {
        for (const json& x : e) take(x);
    } else {
        take(e);
    }
    return ids;
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
        const fs::path gen_path = dir / "generation_config.json";
        const std::vector<int32_t> ids = read_eos_ids(read_json_if_exists(gen_path), gen_path);
        if (!ids.empty()) t.eos = ids[0];
        for (int32_t id : ids) {
            if (id >= t.vocab_size) {
                throw Error(gen_path.string() + ": eos_token_id " + std::to_string(id) +
                            " is not a token of the tokenizer (" + std::to_string(t.vocab_size) +
                            " ids)");
            }
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
    if (!fs::exists(cfg)) return ChatFormat::chatml;
    const json j = json::parse(read_file(cfg), nullptr, false);
    if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
        return ChatFormat::chatml;
    return detect_chat_format(j["chat_template"].get<std::string>(), cfg.string(), "--chat-format");
}

std::vector<int32_t> generation_eos_ids(const fs::path& dir) {
    std::vector<int32_t> ids;
    const fs::path gen = dir / "generation_config.json";
    if (!fs::exists(gen)) return ids;
    const json j = json::parse(read_file(gen), nullptr, false);
    if (j.is_discarded()) throw Error(gen.string() + ": not valid JSON");
    return read_eos_ids(j, gen);
}

}  // namespace crucible
