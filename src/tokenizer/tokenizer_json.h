// The fields of a Hugging Face tokenizer.json that Crucible reads, parsed and checked in one
// place: the BPE model (vocabulary, merges, options), the added tokens with their flags, the
// normalizer and the pre-tokenizer. BpeTokenizer encodes with what it holds; the GGUF export
// (model/gguf_tokenizer) copies the vocabulary, merges and special tokens from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace crucible {

struct TokenizerJson {
    struct AddedToken {
        std::string content;
        int32_t id = 0;
        bool single_word = false, lstrip = false, rstrip = false;
        bool normalized = true, special = false;
    };
    struct Merge {
        std::string left, right;
        size_t index = 0;  // position in model.merges: the merge's rank, and its field name
    };
    // One step of the pre-tokenizer, a Sequence flattened in order.
    struct PreTokenizerStep {
        bool byte_level = false;        // ByteLevel (else Split(Regex, Isolated))
        bool add_prefix_space = false;  // ByteLevel only
        bool use_regex = true;          // ByteLevel only: split with GPT-2's pattern first
        std::string pattern;            // Split only: its regex as written in the file
        std::string field;              // where the step is, e.g. "pre_tokenizer.pretokenizers[0]"
    };

    std::filesystem::path file;
    // model.vocab in the order nlohmann::json iterates it (by token); ids are 0..2^31-1 but
    // not checked for gaps or duplicates.
    std::vector<std::pair<std::string, int32_t>> vocab;
    std::vector<Merge> merges;             // "#version" lines skipped
    std::vector<AddedToken> added_tokens;  // in file order; added_tokens[i] is entry i
    std::optional<std::string> unk_token;  // model.unk_token (not checked against the vocab)
    bool ignore_merges = false;
    bool fuse_unk = false;
    bool nfc = false;  // the normalizer is NFC (or a Sequence of NFCs) rather than null
    bool has_pre_tokenizer = false;               // a non-null pre_tokenizer, whose steps follow
    std::vector<PreTokenizerStep> pre_tokenizer;  // empty without one
};

// Reads and parses the tokenizer.json at `file` (whether merge and unk tokens are in the
// vocabulary, and whether Split regexes compile, is left to the user: BpeTokenizer checks both).
// Throws Error starting with the file's name, and naming the field ("model.merges[4]: ...") for
// anything malformed or unsupported: not JSON; a model that is not BPE or has a subword prefix,
// word suffix or dropout; vocabulary ids that are not integers in 0..2^31-1; added tokens without
// an integer id and a string content; merges not of the form "left right" or ["left", "right"]; a
// normalizer other than null, NFC or a Sequence of NFCs; a pre-tokenizer other than Sequence,
// Split(Regex, Isolated, not inverted) and ByteLevel; a field of the wrong JSON type.
TokenizerJson parse_tokenizer_json(const std::filesystem::path& file);

}  // namespace crucible
