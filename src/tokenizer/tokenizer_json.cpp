// parse_tokenizer_json: tokenizer.json's fields into a TokenizerJson, each checked where it is
// read so an error names the file and the field.
#include "tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace {

using nlohmann::json;

bool get_bool(const json& obj, const char* key, bool fallback) {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? fallback : it->get<bool>();
}

class Parser {
  public:
    explicit Parser(TokenizerJson& out) : out_(out) {}

    void parse(const json& j) {
        if (!j.is_object()) fail("(top level)", "expected a JSON object");
        const json& model = parse_model(j);
        parse_added_tokens(j);
        parse_merges(model);
        parse_normalizer(j);
        if (const auto pit = j.find("pre_tokenizer"); pit != j.end() && !pit->is_null()) {
            out_.has_pre_tokenizer = true;
            parse_pre_tokenizer(*pit, "pre_tokenizer");
        }
    }

  private:
    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw Error(out_.file.string() + ": " + field + ": " + what);
    }

    const json& parse_model(const json& j) {
        const auto mit = j.find("model");
        if (mit == j.end() || mit->is_null()) fail("model", "missing");
        const json& model = *mit;
        if (!model.is_object()) fail("model", "expected an object");
        const std::string type = model.value("type", std::string("BPE"));
        if (type != "BPE") fail("model.type", "unsupported model \"" + type + "\" (only BPE)");
        if (!model.value("continuing_subword_prefix", json()).is_null() &&
            !model["continuing_subword_prefix"].get<std::string>().empty()) {
            fail("model.continuing_subword_prefix", "only an empty prefix is supported");
        }
        if (!model.value("end_of_word_suffix", json()).is_null() &&
            !model["end_of_word_suffix"].get<std::string>().empty()) {
            fail("model.end_of_word_suffix", "only an empty suffix is supported");
        }
        if (!model.value("dropout", json()).is_null() && model["dropout"].get<double>() != 0.0) {
            fail("model.dropout", "BPE dropout is not supported");
        }
        out_.ignore_merges = get_bool(model, "ignore_merges", false);
        out_.fuse_unk = get_bool(model, "fuse_unk", false);

        const auto vit = model.find("vocab");
        if (vit == model.end() || !vit->is_object())
            fail("model.vocab", "missing or not an object");
        out_.vocab.reserve(vit->size());
        for (const auto& [tok, idj] : vit->items()) {
            if (!idj.is_number_integer() || idj.get<int64_t>() < 0 ||
                idj.get<int64_t>() > INT32_MAX) {
                fail("model.vocab[\"" + tok + "\"]", "expected a non-negative integer id");
            }
            out_.vocab.emplace_back(tok, idj.get<int32_t>());
        }
        if (const auto u = model.find("unk_token"); u != model.end() && !u->is_null()) {
            out_.unk_token = u->get<std::string>();
        }
        return model;
    }

    void parse_added_tokens(const json& j) {
        const auto ait = j.find("added_tokens");
        if (ait == j.end() || ait->is_null()) return;
        if (!ait->is_array()) fail("added_tokens", "expected an array");
        for (size_t i = 0; i < ait->size(); i++) {
            const json& a = (*ait)[i];
            if (!a.is_object() || !a.contains("id") || !a.contains("content") ||
                !a["id"].is_number_integer() || !a["content"].is_string() ||
                a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > INT32_MAX) {
                fail("added_tokens[" + std::to_string(i) + "]",
                     "expected {\"id\": integer in 0..2^31-1, \"content\": string, ...}");
            }
            TokenizerJson::AddedToken t;
            t.id = a["id"].get<int32_t>();
            t.content = a["content"].get<std::string>();
            t.single_word = get_bool(a, "single_word", false);
            t.lstrip = get_bool(a, "lstrip", false);
            t.rstrip = get_bool(a, "rstrip", false);
            t.normalized = get_bool(a, "normalized", true);
            t.special = get_bool(a, "special", false);
            out_.added_tokens.push_back(std::move(t));
        }
    }

    // "a b" strings or ["a", "b"] pairs; rank = index.
    void parse_merges(const json& model) {
        const auto git = model.find("merges");
        if (git == model.end() || !git->is_array()) fail("model.merges", "missing or not an array");
        out_.merges.reserve(git->size());
        for (size_t i = 0; i < git->size(); i++) {
            const json& m = (*git)[i];
            TokenizerJson::Merge merge;
            merge.index = i;
            if (m.is_string()) {
                const std::string s = m.get<std::string>();
                if (s.starts_with("#version")) continue;
                const size_t sp = s.find(' ');
                if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
                    fail("model.merges[" + std::to_string(i) + "]",
                         "expected \"left right\" (two tokens separated by one space), got \"" + s +
                             "\"");
                }
                merge.left = s.substr(0, sp);
                merge.right = s.substr(sp + 1);
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                merge.left = m[0].get<std::string>();
                merge.right = m[1].get<std::string>();
            } else {
                fail("model.merges[" + std::to_string(i) + "]",
                     "expected \"left right\" or [\"left\", \"right\"]");
            }
            out_.merges.push_back(std::move(merge));
        }
    }

    // null, NFC, or a Sequence of NFCs.
    void parse_normalizer(const json& j) {
        const auto nit = j.find("normalizer");
        if (nit == j.end() || nit->is_null()) return;
        const auto check = [&](const json& x, const std::string& f) {
            if (!x.is_object() || x.value("type", std::string()) != "NFC") {
                fail(f, "unsupported normalizer (supported: null, NFC, Sequence of NFC)");
            }
            out_.nfc = true;
        };
        if (nit->is_object() && nit->value("type", std::string()) == "Sequence") {
            const json& seq = nit->value("normalizers", json::array());
            for (size_t i = 0; i < seq.size(); i++) {
                check(seq[i], "normalizer.normalizers[" + std::to_string(i) + "]");
            }
        } else {
            check(*nit, "normalizer");
        }
    }

    void parse_pre_tokenizer(const json& p, const std::string& field) {
        if (!p.is_object() || !p.contains("type"))
            fail(field, "expected an object with a \"type\"");
        const std::string type = p["type"].get<std::string>();
        if (type == "Sequence") {
            const auto it = p.find("pretokenizers");
            if (it == p.end() || !it->is_array()) {
                fail(field + ".pretokenizers", "expected an array");
            }
            for (size_t i = 0; i < it->size(); i++) {
                parse_pre_tokenizer((*it)[i], field + ".pretokenizers[" + std::to_string(i) + "]");
            }
        } else if (type == "ByteLevel") {
            TokenizerJson::PreTokenizerStep s;
            s.byte_level = true;
            s.add_prefix_space = get_bool(p, "add_prefix_space", false);
            s.use_regex = get_bool(p, "use_regex", true);
            s.field = field;
            out_.pre_tokenizer.push_back(std::move(s));
        } else if (type == "Split") {
            const auto pat = p.find("pattern");
            if (pat == p.end() || !pat->is_object() || !pat->contains("Regex")) {
                fail(field + ".pattern",
                     "expected {\"Regex\": ...} (String patterns are not supported)");
            }
            if (p.value("behavior", std::string()) != "Isolated") {
                fail(field + ".behavior", "only \"Isolated\" is supported");
            }
            if (get_bool(p, "invert", false)) fail(field + ".invert", "only false is supported");
            TokenizerJson::PreTokenizerStep s;
            s.pattern = (*pat)["Regex"].get<std::string>();
            s.field = field;
            out_.pre_tokenizer.push_back(std::move(s));
        } else {
            fail(field + ".type", "unsupported pre-tokenizer \"" + type +
                                      "\" (supported: Sequence, Split, ByteLevel)");
        }
    }

    TokenizerJson& out_;
};

}  // namespace

TokenizerJson parse_tokenizer_json(const std::filesystem::path& file) {
    TokenizerJson out;
    out.file = file;
    const std::string text = read_file(file);
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(file.string() + ": not valid JSON: " + e.what());
    }
    try {
        Parser(out).parse(j);
    } catch (const json::exception& e) {
        throw Error(file.string() + ": unexpected value type: " + e.what());
    }
    return out;
}

}  // namespace crucible
