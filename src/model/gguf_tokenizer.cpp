// load_gguf_tokenizer: an HF folder's tokenizer files (tokenizer.json through
// parse_tokenizer_json, tokenizer_config.json, generation_config.json, chat_template.jinja) turned
// into the vocabulary, merges, special ids and chat template a GGUF file carries.
#include "model/gguf_tokenizer.h"

#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "tokenizer/tokenizer_json.h"

namespace crucible {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json parse_json_file(const fs::path& p) {
    try {
        return json::parse(read_file(p));
    } catch (const json::exception& e) {
        throw Error(p.string() + ": not valid JSON: " + e.what());
    }
}

// An id given as an integer, or the first integer of an array (generation_config's eos).
int64_t id_field(const json& j, const char* key, const fs::path& where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return -1;
    const json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        throw Error(where.string() + ": field '" + key + "' must be a token id, got " + it->dump());
    }
    return v.get<int64_t>();
}

}  // namespace

GgufTokenizer load_gguf_tokenizer(const fs::path& dir, const ModelConfig& config) {
    const fs::path tj_path = dir / "tokenizer.json";
    if (!fs::exists(tj_path)) {
        throw Error(tj_path.string() + ": missing (GGUF export needs the model's tokenizer)");
    }
    const std::string where = tj_path.string();
    const TokenizerJson tj = parse_tokenizer_json(tj_path);

    std::map<int64_t, std::string> text;  // id -> token
    std::map<int64_t, int32_t> type;      // id -> token type
    std::map<std::string, int64_t> id_of;
    for (const auto& [token, id] : tj.vocab) {
        const int64_t i = id;
        if (text.count(i)) {
            throw Error(where + ": model.vocab gives id " + std::to_string(i) + " to both '" +
                        text[i] + "' and '" + token + "'");
        }
        text[i] = token;
        type[i] = 1;
        id_of[token] = i;
    }
    for (const TokenizerJson::AddedToken& a : tj.added_tokens) {
        const int64_t i = a.id;
        text[i] = a.content;
        type[i] = a.special ? 3 : 4;
        id_of[a.content] = i;
    }
    if (!text.empty() && text.rbegin()->first >= config.vocab_size) {
        throw Error(where + ": the tokenizer's largest id is " +
                    std::to_string(text.rbegin()->first) + " but the model's vocab_size is " +
                    std::to_string(config.vocab_size) + " (ids must be below vocab_size)");
    }

    GgufTokenizer tok;
    tok.tokens.resize(config.vocab_size);
    tok.token_types.assign(config.vocab_size, 5);
    for (int64_t i = 0; i < config.vocab_size; i++) {
        auto it = text.find(i);
        if (it == text.end()) {
            tok.tokens[i] = "[PAD" + std::to_string(i) + "]";
        } else {
            tok.tokens[i] = it->second;
            tok.token_types[i] = type[i];
        }
    }

    tok.merges.reserve(tj.merges.size());
    for (const TokenizerJson::Merge& m : tj.merges) tok.merges.push_back(m.left + " " + m.right);

    // Llama-3's split regex groups digits in threes (\p{N}{1,3}); Qwen2's splits every digit.
    for (const TokenizerJson::PreTokenizerStep& s : tj.pre_tokenizer) {
        if (s.pattern.find("\\p{N}{1,3}") != s.pattern.npos) tok.pre = "llama-bpe";
    }

    // Special ids: tokenizer_config.json's token strings first (as convert_hf_to_gguf.py's
    // SpecialVocab does), then generation_config.json's ids, then config.json's.
    const fs::path tc_path = dir / "tokenizer_config.json";
    if (fs::exists(tc_path)) {
        const json tc = parse_json_file(tc_path);
        if (!tc.is_object()) throw Error(tc_path.string() + ": expected a JSON object");
        auto special = [&](const char* key, int64_t& id) {
            auto it = tc.find(key);
            if (it == tc.end() || it->is_null()) return;
            const json& v = it->is_object() ? it->value("content", json()) : *it;
            if (!v.is_string()) {
                throw Error(tc_path.string() + ": field '" + key +
                            "' must be a token string, got " + it->dump());
            }
            auto found = id_of.find(v.get<std::string>());
            if (found == id_of.end()) {
                throw Error(tc_path.string() + ": " + key + " '" + v.get<std::string>() +
                            "' is not a token of tokenizer.json");
            }
            id = found->second;
        };
        special("bos_token", tok.bos_id);
        special("eos_token", tok.eos_id);
        special("pad_token", tok.pad_id);
        if (auto it = tc.find("chat_template"); it != tc.end() && !it->is_null()) {
            if (it->is_string()) {
                tok.chat_template = it->get<std::string>();
            } else if (it->is_array()) {  // [{"name": ..., "template": ...}]: the default one
                for (const json& t : *it) {
                    if (!t.is_object() || !t.value("template", json()).is_string()) continue;
                    if (tok.chat_template.empty() || t.value("name", json()) == "default") {
                        tok.chat_template = t["template"].get<std::string>();
                    }
                }
            } else {
                throw Error(tc_path.string() + ": field 'chat_template' must be a string");
            }
        }
    }
    if (tok.chat_template.empty() && fs::exists(dir / "chat_template.jinja")) {
        tok.chat_template = read_file(dir / "chat_template.jinja");
    }
    const fs::path gc_path = dir / "generation_config.json";
    if (fs::exists(gc_path)) {
        const json gc = parse_json_file(gc_path);
        if (!gc.is_object()) throw Error(gc_path.string() + ": expected a JSON object");
        if (tok.bos_id < 0) tok.bos_id = id_field(gc, "bos_token_id", gc_path);
        if (tok.eos_id < 0) tok.eos_id = id_field(gc, "eos_token_id", gc_path);
        if (tok.pad_id < 0) tok.pad_id = id_field(gc, "pad_token_id", gc_path);
    }
    if (tok.bos_id < 0) tok.bos_id = config.bos_token_id;
    if (tok.eos_id < 0) tok.eos_id = config.eos_token_id;
    for (const auto& [what, id] : {std::pair<const char*, int64_t>{"bos", tok.bos_id},
                                   {"eos", tok.eos_id},
                                   {"padding", tok.pad_id}}) {
        if (id >= config.vocab_size) {
            throw Error(dir.string() + ": the " + what + " token id " + std::to_string(id) +
                        " is >= the model's vocab_size " + std::to_string(config.vocab_size));
        }
    }
    return tok;
}

}  // namespace crucible
