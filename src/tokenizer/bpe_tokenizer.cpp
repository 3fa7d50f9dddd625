// BpeTokenizer: the lookup tables built from a parsed tokenizer.json (tokenizer_json.h), the
// encoder over them (added tokens, normalizer, pre-tokenizer, BPE merges) and the decoders.
#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/unicode.h"

namespace crucible {

namespace {

using AddedToken = TokenizerJson::AddedToken;

// Added tokens found by leftmost-longest search, like Hugging Face's Aho-Corasick matcher.
class AddedMatcher {
  public:
    void add(const AddedToken& t, std::string content) {
        if (content.empty()) return;
        const auto first = static_cast<uint8_t>(content[0]);
        by_first_[first].push_back({std::move(content), t});
        auto& bucket = by_first_[first];
        std::stable_sort(bucket.begin(), bucket.end(), [](const Entry& a, const Entry& b) {
            return a.content.size() > b.content.size();
        });
        any_ = true;
    }
    bool empty() const { return !any_; }

    struct Match {
        size_t start, end;  // bytes covered, lstrip/rstrip whitespace included
        int32_t id;
    };
    // The next match in text[from..], or nullopt. `floor` bounds how far lstrip may reach back.
    std::optional<Match> find(std::string_view text, size_t from) const {
        for (size_t i = from; i < text.size(); i++) {
            const auto& bucket = by_first_[static_cast<uint8_t>(text[i])];
            for (const Entry& e : bucket) {
                if (text.compare(i, e.content.size(), e.content) != 0) continue;
                size_t start = i, end = i + e.content.size();
                if (e.token.single_word &&
                    (ends_with_word(text.substr(0, start)) || starts_with_word(text.substr(end)))) {
                    continue;
                }
                if (e.token.lstrip) start = std::max(from, start - trailing_space(text, start));
                if (e.token.rstrip) end += leading_space(text.substr(end));
                return Match{start, end, e.token.id};
            }
        }
        return std::nullopt;
    }

  private:
    struct Entry {
        std::string content;
        AddedToken token;
    };
    static bool ends_with_word(std::string_view s) {
        if (s.empty()) return false;
        size_t i = s.size() - 1;
        while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) i--;
        return is_word_char(utf8_next(s, i));
    }
    static bool starts_with_word(std::string_view s) {
        size_t i = 0;
        return !s.empty() && is_word_char(utf8_next(s, i));
    }
    // Bytes of whitespace ending at text[end).
    static size_t trailing_space(std::string_view text, size_t end) {
        size_t n = 0;
        while (end - n > 0) {
            size_t i = end - n - 1;
            while (i > 0 && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80) i--;
            size_t j = i;
            if (!is_unicode_whitespace(utf8_next(text, j))) break;
            n = end - i;
        }
        return n;
    }
    static size_t leading_space(std::string_view s) {
        size_t i = 0;
        while (i < s.size()) {
            size_t j = i;
            if (!is_unicode_whitespace(utf8_next(s, j))) break;
            i = j;
        }
        return i;
    }
    std::array<std::vector<Entry>, 256> by_first_;
    bool any_ = false;
};

// Merge ranks keyed by the pair of ids: open addressing, linear probing.
class MergeTable {
  public:
    void reserve(size_t n) {
        size_t cap = 16;
        while (cap < 2 * n) cap *= 2;
        keys_.assign(cap, kEmpty);
        vals_.assign(cap, 0);
        mask_ = cap - 1;
    }
    // Later entries for the same pair replace earlier ones, as in Hugging Face's HashMap.
    void insert(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
        const uint64_t k = key(a, b);
        size_t h = hash(k);
        while (keys_[h] != kEmpty && keys_[h] != k) h = (h + 1) & mask_;
        keys_[h] = k;
        vals_[h] = (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(merged);
    }
    // (rank << 32 | merged id) of the pair, or kNone.
    uint64_t find(int32_t a, int32_t b) const {
        const uint64_t k = key(a, b);
        for (size_t h = hash(k);; h = (h + 1) & mask_) {
            if (keys_[h] == k) return vals_[h];
            if (keys_[h] == kEmpty) return kNone;
        }
    }
    static constexpr uint64_t kNone = ~0ull;

  private:
    static constexpr uint64_t kEmpty = ~0ull;
    static uint64_t key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    size_t hash(uint64_t k) const {
        return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 17) & mask_;
    }
    std::vector<uint64_t> keys_, vals_;
    size_t mask_ = 0;
};

struct PreStep {
    bool byte_level = false;               // ByteLevel step (else Split)
    bool add_prefix_space = false;         // ByteLevel only
    std::unique_ptr<RegexSplitter> regex;  // Split's regex, or ByteLevel's GPT-2 regex
};

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordCache =
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>;

constexpr size_t kCacheMaxWord = 256;     // longer pieces are not cached (as in HF)
constexpr size_t kCacheCapacity = 65536;  // entries; the cache stops growing when full

}  // namespace

struct BpeTokenizer::Impl {
    std::filesystem::path file;
    std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab;  // model vocab
    std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> added_by_content;
    std::vector<std::string> id_token;  // vocabulary form per id
    std::vector<std::string> id_bytes;  // decoded bytes per id
    std::vector<uint8_t> id_special;
    std::string empty;
    std::array<int32_t, 256> byte_id{};  // id of each byte's ByteLevel char, -1 if absent
    std::array<std::string, 256> byte_char;
    MergeTable merges;
    AddedMatcher raw_added, normalized_added;
    bool nfc = false;
    bool ignore_merges = false;
    int32_t unk_id = -1;
    bool fuse_unk = false;
    std::vector<PreStep> steps;
    mutable std::mutex cache_mu;
    mutable WordCache cache;

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw Error(file.string() + ": " + field + ": " + what);
    }
    void load(TokenizerJson&& tj);
    void encode_segment(std::string_view seg, std::vector<int32_t>& out) const;
    void encode_normalized(std::string_view seg, std::vector<int32_t>& out) const;
    void encode_word(std::string_view piece, std::vector<int32_t>& out) const;
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
};

void BpeTokenizer::Impl::load(TokenizerJson&& tj) {
    ignore_merges = tj.ignore_merges;
    fuse_unk = tj.fuse_unk;
    nfc = tj.nfc;

    // Vocabulary.
    int32_t max_id = -1;
    std::string max_field;  // where the largest id is, for the density check below
    vocab.reserve(tj.vocab.size());
    for (const auto& [tok, id] : tj.vocab) {
        vocab.emplace(tok, id);
        if (id > max_id) {
            max_id = id;
            max_field = "model.vocab[\"" + tok + "\"]";
        }
    }
    const std::vector<AddedToken>& added = tj.added_tokens;
    for (size_t i = 0; i < added.size(); i++) {
        if (added[i].id > max_id) {
            max_id = added[i].id;
            max_field = "added_tokens[" + std::to_string(i) + "].id";
        }
    }

    // Ids index tables of max_id + 1 entries: a stray huge id (2^31 - 1) would allocate
    // gigabytes. Real tokenizers number their tokens densely; allow generous gaps only.
    const int64_t entries = static_cast<int64_t>(vocab.size() + added.size());
    if (max_id >= 2 * entries + 65536) {
        fail(max_field, "id " + std::to_string(max_id) + " is far beyond the " +
                            std::to_string(entries) + " tokens the file defines (ids are dense)");
    }
    const size_t n = static_cast<size_t>(max_id + 1);
    id_token.assign(n, std::string());
    id_bytes.assign(n, std::string());
    id_special.assign(n, 0);
    for (const auto& [tok, id] : vocab) id_token[id] = tok;
    for (const AddedToken& t : added) {
        id_token[t.id] = t.content;
        id_special[t.id] = t.special ? 1 : 0;
        added_by_content[t.content] = t.id;
    }

    // The ByteLevel maps.
    std::unordered_map<uint32_t, uint8_t> char_byte;
    for (int b = 0; b < 256; b++) {
        byte_char[b] = byte_level_char(static_cast<uint8_t>(b));
        size_t k = 0;
        char_byte[utf8_next(byte_char[b], k)] = static_cast<uint8_t>(b);
        const auto it = vocab.find(byte_char[b]);
        byte_id[b] = it == vocab.end() ? -1 : it->second;
    }
    // ByteLevel decoding: a token whose every char is in the map becomes those bytes; any
    // other token is kept as its own UTF-8 (Hugging Face's ByteLevel decoder does the same).
    for (size_t id = 0; id < n; id++) {
        const std::string& tok = id_token[id];
        std::string bytes;
        bool all = true;
        for (size_t i = 0; i < tok.size() && all;) {
            const auto it = char_byte.find(utf8_next(tok, i));
            if (it == char_byte.end())
                all = false;
            else
                bytes.push_back(static_cast<char>(it->second));
        }
        id_bytes[id] = all ? bytes : tok;
    }

    // Unknown token.
    if (tj.unk_token) {
        const auto it = vocab.find(*tj.unk_token);
        if (it == vocab.end())
            fail("model.unk_token", "\"" + *tj.unk_token + "\" is not in model.vocab");
        unk_id = it->second;
    }

    // Merges: rank = index in model.merges.
    merges.reserve(tj.merges.size());
    for (const TokenizerJson::Merge& m : tj.merges) {
        const std::string f = "model.merges[" + std::to_string(m.index) + "]";
        const std::string& a = m.left;
        const std::string& b = m.right;
        const auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
        if (ia == vocab.end()) fail(f, "token \"" + a + "\" is not in model.vocab");
        if (ib == vocab.end()) fail(f, "token \"" + b + "\" is not in model.vocab");
        if (iab == vocab.end()) fail(f, "merged token \"" + a + b + "\" is not in model.vocab");
        merges.insert(ia->second, ib->second, static_cast<uint32_t>(m.index), iab->second);
    }

    if (!tj.has_pre_tokenizer)
        fail("pre_tokenizer", "missing (a ByteLevel pre-tokenizer is required)");
    for (const TokenizerJson::PreTokenizerStep& p : tj.pre_tokenizer) {
        PreStep s;
        s.byte_level = p.byte_level;
        s.add_prefix_space = p.add_prefix_space;
        if (p.byte_level) {
            if (p.use_regex) s.regex = std::make_unique<RegexSplitter>(kGpt2Pattern);
        } else {
            try {
                s.regex = std::make_unique<RegexSplitter>(p.pattern);
            } catch (const Error& e) {
                fail(p.field + ".pattern.Regex", e.what());
            }
        }
        steps.push_back(std::move(s));
    }
    if (std::none_of(steps.begin(), steps.end(), [](const PreStep& s) { return s.byte_level; })) {
        fail("pre_tokenizer", "no ByteLevel step: only byte-level BPE is supported");
    }

    for (const AddedToken& t : added) {
        if (t.normalized && nfc) {
            normalized_added.add(t, nfc_normalize(t.content));
        } else if (t.normalized) {
            normalized_added.add(t, t.content);
        } else {
            raw_added.add(t, t.content);
        }
    }
}

BpeTokenizer::BpeTokenizer(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
    impl_->file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
    impl_->load(parse_tokenizer_json(impl_->file));
}

BpeTokenizer::~BpeTokenizer() = default;
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    size_t at = 0;
    while (at < text.size()) {
        const auto m = impl_->raw_added.empty() ? std::nullopt : impl_->raw_added.find(text, at);
        const size_t seg_end = m ? m->start : text.size();
        if (seg_end > at) impl_->encode_segment(text.substr(at, seg_end - at), out);
        if (!m) break;
        out.push_back(m->id);
        at = m->end;
    }
    return out;
}

void BpeTokenizer::Impl::encode_segment(std::string_view seg, std::vector<int32_t>& out) const {
    std::string normalized;
    if (nfc && !is_ascii(seg)) {
        normalized = nfc_normalize(seg);
        seg = normalized;
    }
    size_t at = 0;
    while (at < seg.size()) {
        const auto m = normalized_added.empty() ? std::nullopt : normalized_added.find(seg, at);
        const size_t seg_end = m ? m->start : seg.size();
        if (seg_end > at) encode_normalized(seg.substr(at, seg_end - at), out);
        if (!m) break;
        out.push_back(m->id);
        at = m->end;
    }
}

void BpeTokenizer::Impl::encode_normalized(std::string_view seg, std::vector<int32_t>& out) const {
    using Pieces = std::vector<std::pair<uint32_t, uint32_t>>;
    thread_local Pieces pieces, next;
    std::string buf;  // holds pieces that gained a prefix space, after `seg`'s bytes
    const auto view = [&](std::pair<uint32_t, uint32_t> p) {
        return p.first < seg.size()
                   ? seg.substr(p.first, p.second - p.first)
                   : std::string_view(buf).substr(p.first - seg.size(), p.second - p.first);
    };
    pieces.clear();
    pieces.emplace_back(0, static_cast<uint32_t>(seg.size()));
    for (const PreStep& step : steps) {
        if (!step.regex && !step.add_prefix_space) continue;
        next.clear();
        for (auto p : pieces) {
            if (step.add_prefix_space && view(p).substr(0, 1) != " ") {
                const std::string piece(view(p));
                const auto start = static_cast<uint32_t>(seg.size() + buf.size());
                buf += ' ';
                buf += piece;
                p = {start, static_cast<uint32_t>(seg.size() + buf.size())};
            }
            if (step.regex) {
                step.regex->split(view(p), p.first, next);
            } else {
                next.push_back(p);
            }
        }
        std::swap(pieces, next);
    }
    for (const auto& p : pieces) encode_word(view(p), out);
}

void BpeTokenizer::Impl::encode_word(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (ignore_merges) {
        std::string mapped;
        for (char c : piece) mapped += byte_char[static_cast<uint8_t>(c)];
        const auto it = vocab.find(mapped);
        if (it != vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }
    if (piece.size() == 1) {  // a single byte needs no merges
        const int32_t id = byte_id[static_cast<uint8_t>(piece[0])];
        if (id >= 0)
            out.push_back(id);
        else if (unk_id >= 0)
            out.push_back(unk_id);
        return;
    }
    if (piece.size() > kCacheMaxWord) {
        bpe(piece, out);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(cache_mu);
        const auto it = cache.find(piece);
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t before = out.size();
    bpe(piece, out);
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() < kCacheCapacity) {
        cache.emplace(std::string(piece), std::vector<int32_t>(out.begin() + before, out.end()));
    }
}

void BpeTokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    thread_local std::vector<int32_t> ids, prev, next;
    thread_local std::vector<uint64_t> heap;  // (rank << 32 | position), smallest first
    ids.clear();
    for (char c : piece) {
        const int32_t id = byte_id[static_cast<uint8_t>(c)];
        if (id >= 0) {
            ids.push_back(id);
        } else if (unk_id >= 0 && !(fuse_unk && !ids.empty() && ids.back() == unk_id)) {
            ids.push_back(unk_id);
        }
    }
    const auto n = static_cast<int32_t>(ids.size());
    prev.resize(n);
    next.resize(n);
    heap.clear();
    for (int32_t i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
        if (i + 1 < n) {
            const uint64_t m = merges.find(ids[i], ids[i + 1]);
            if (m != MergeTable::kNone) heap.push_back((m >> 32) << 32 | static_cast<uint32_t>(i));
        }
    }
    const auto cmp = std::greater<uint64_t>();
    std::make_heap(heap.begin(), heap.end(), cmp);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), cmp);
        const uint64_t top = heap.back();
        heap.pop_back();
        const auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
        const auto rank = static_cast<uint32_t>(top >> 32);
        if (ids[pos] < 0) continue;
        const int32_t right = next[pos];
        if (right < 0) continue;
        const uint64_t m = merges.find(ids[pos], ids[right]);
        if (m == MergeTable::kNone || static_cast<uint32_t>(m >> 32) != rank) continue;
        ids[pos] = static_cast<int32_t>(m & 0xFFFFFFFFu);
        ids[right] = -1;
        next[pos] = next[right];
        if (next[pos] >= 0) prev[next[pos]] = pos;
        if (prev[pos] >= 0) {
            const uint64_t l = merges.find(ids[prev[pos]], ids[pos]);
            if (l != MergeTable::kNone) {
                heap.push_back((l >> 32) << 32 | static_cast<uint32_t>(prev[pos]));
                std::push_heap(heap.begin(), heap.end(), cmp);
            }
        }
        if (next[pos] >= 0) {
            const uint64_t r = merges.find(ids[pos], ids[next[pos]]);
            if (r != MergeTable::kNone) {
                heap.push_back((r >> 32) << 32 | static_cast<uint32_t>(pos));
                std::push_heap(heap.begin(), heap.end(), cmp);
            }
        }
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = next[i]) out.push_back(ids[i]);
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string bytes;
    for (int32_t id : ids) {
        if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size()) continue;
        if (skip_special && impl_->id_special[id]) continue;
        bytes += impl_->id_bytes[id];
    }
    return utf8_lossy(bytes);
}

const std::string& BpeTokenizer::token_bytes(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size()) return impl_->empty;
    return impl_->id_bytes[id];
}

int BpeTokenizer::vocab_size() const {
    return static_cast<int>(impl_->id_token.size());
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view token) const {
    if (const auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) {
        return it->second;
    }
    if (const auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
    return std::nullopt;
}

const std::string& BpeTokenizer::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_token.size()) return impl_->empty;
    return impl_->id_token[id];
}

bool BpeTokenizer::is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[id];
}

const std::filesystem::path& BpeTokenizer::path() const {
    return impl_->file;
}

BpeStreamDecoder::BpeStreamDecoder(const BpeTokenizer& tokenizer, bool skip_special)
    : tok_(tokenizer), skip_special_(skip_special) {}

std::string BpeStreamDecoder::push(int32_t id) {
    if (skip_special_ && tok_.is_special(id)) return {};
    pending_ += tok_.token_bytes(id);
    const size_t n = utf8_complete_prefix(pending_);
    if (n == 0) return {};
    std::string out = utf8_lossy(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
}

std::string BpeStreamDecoder::finish() {
    std::string out = utf8_lossy(pending_);
    pending_.clear();
    return out;
}

}  // namespace crucible
