// The `search` tool's backend: a local BM25 index over a JSONL collection of passages, kept in
// SQLite's FTS5 (Debian's libsqlite3, through core/sqlite).
//
// An index is a folder holding `index.sqlite`: a table `meta` (format, version, document
// count, source file) and an FTS5 table `passages(doc_id UNINDEXED, title, text)` with the
// unicode61 tokenizer (case folded, diacritics removed). Title and text are both searched,
// with equal weight. build_search_index writes it under a temporary sibling name and renames
// the whole folder into place when every row is in and synced, so a killed build leaves no
// folder under the final name (only a `.NAME.tmp-PID` sibling, removed by the next build).
//
// Queries are text from a user or a model, never FTS5 syntax: the query is cut into words
// (runs of ASCII letters and digits, and of non-ASCII characters) and each word is matched as
// a quoted string, the words joined by OR, so `"`, `AND OR NOT (`, `col:x`, `*` or `NEAR(`
// are only words (or nothing) and cannot fail or match everything. The first
// kSearchMaxQueryTerms distinct words are used. A query with no words returns no passages.
// Ranking is FTS5's bm25() (k1 = 1.2, b = 0.75); `score` is -bm25, so higher is better.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

inline constexpr size_t kSearchMaxQueryTerms = 32;
inline constexpr int kSearchMaxK = 1000;
inline constexpr size_t kSearchNoCap = static_cast<size_t>(-1);

struct SearchBuildStats {
    int64_t documents = 0;
};

// Reads `docs_jsonl` (one JSON object per line: "id", "title", "text", all strings, the id
// non-empty and unique; other keys ignored) and writes an index folder at `out_dir`. Errors
// name FILE:LINE and the field; an empty file (no documents) is an error. An existing
// `out_dir` is an error unless `replace` is set and it is an index (it is then swapped for
// the new one in one rename; a folder that is not an index is never removed).
SearchBuildStats build_search_index(const std::filesystem::path& docs_jsonl,
                                    const std::filesystem::path& out_dir, bool replace = false);

struct SearchHit {
    std::string id;
    std::string title;
    std::string text;        // capped to max_chars characters (code points)
    bool truncated = false;  // text was cut
    double score = 0;        // -bm25: higher ranks first
};

class SearchIndex {
  public:
    // Opens the index folder read-only. Throws Error naming `dir` when it is missing or is
    // not an index built by build_search_index.
    static SearchIndex open(const std::filesystem::path& dir);
    ~SearchIndex();
    SearchIndex(SearchIndex&&) noexcept;
    SearchIndex& operator=(SearchIndex&&) noexcept;

    // The top `k` passages for `query` (fewer when fewer match), best first; ties keep the
    // collection's order. Each text is cut to at most `max_chars` Unicode characters (never
    // inside a UTF-8 sequence). k is clamped to [0, kSearchMaxK]. Safe to call from several
    // threads (calls are serialized on the one connection).
    std::vector<SearchHit> search(std::string_view query, int k,
                                  size_t max_chars = kSearchNoCap) const;

    int64_t size() const;  // documents in the index
    const std::filesystem::path& dir() const;

  private:
    struct Impl;
    explicit SearchIndex(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The words of `query` that search() matches, each as an FTS5 quoted string, joined by " OR "
// ("" when there are none). Exposed for tests.
std::string search_fts_query(std::string_view query);

// `text` cut to at most `max_chars` Unicode characters at a character boundary (a byte that is
// not a UTF-8 continuation byte). Sets *truncated when it cut.
std::string cap_utf8_chars(std::string_view text, size_t max_chars, bool* truncated = nullptr);

// The passages as one observation, Search-R1's layout: "Doc 1(Title: T) TEXT\n" per hit.
std::string format_search_hits(const std::vector<SearchHit>& hits);

}  // namespace crucible
