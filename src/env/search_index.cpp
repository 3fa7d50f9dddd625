#include "env/search_index.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/file_io.h"
#include "core/json_fields.h"
#include "core/jsonl.h"
#include "core/sqlite.h"

namespace crucible {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDbFile = "index.sqlite";
constexpr const char* kFormat = "crucible-search-index";
constexpr const char* kVersion = "1";
constexpr size_t kMaxQueryBytes = 8192;  // of the query text looked at

// The folder's name without a trailing separator, absolute ("out/" -> "/cwd/out").
fs::path normalized_dir(const fs::path& dir) {
    fs::path p = fs::absolute(dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p;
}

std::string tmp_prefix(const fs::path& final_dir) {
    std::string prefix = ".";  // (appended: GCC 12 warns falsely on "." + std::string)
    prefix += final_dir.filename().string();
    prefix += ".tmp-";
    return prefix;
}

// Removes `.NAME.tmp-PID` folders left by builds that were killed (PID no longer running).
void remove_stale_builds(const fs::path& final_dir) {
    const std::string prefix = tmp_prefix(final_dir);
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(final_dir.parent_path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(prefix, 0) != 0) continue;
        const std::string pid_text = name.substr(prefix.size());
        if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
        const bool alive = pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
        if (!alive || pid == ::getpid()) fs::remove_all(entry.path(), ec);
    }
}

void fsync_file(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
    const int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) throw Error(path.string() + ": fsync failed: " + std::strerror(errno));
}

std::string shown_id(const std::string& id) {
    return id.size() <= 80 ? id : id.substr(0, 80) + "...";
}

// The length in bytes of the valid UTF-8 sequence at s[i], or 0 when it is not one.
size_t utf8_sequence(std::string_view s, size_t i) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = byte(i);
    size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
    for (size_t k = 2; k < n; ++k)
        if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
    return n;
}

bool is_ascii_word_char(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// A read-only connection; statements go through core/sqlite's SqliteStatement.
struct ReadOnlyDb {
    sqlite3* db = nullptr;
    ~ReadOnlyDb() {
        if (db != nullptr) sqlite3_close_v2(db);
    }
};

}  // namespace

std::string search_fts_query(std::string_view query) {
    if (query.size() > kMaxQueryBytes) query = query.substr(0, kMaxQueryBytes);
    std::vector<std::string> words;
    std::vector<std::string> seen;  // ASCII-lowercased, for distinctness
    std::string word;
    const auto flush = [&]() {
        if (word.empty()) return;
        std::string key = word;
        for (char& c : key)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        bool dup = false;
        for (const std::string& s : seen) dup = dup || s == key;
        if (!dup && words.size() < kSearchMaxQueryTerms) {
            words.push_back(word);
            seen.push_back(key);
        }
        word.clear();
    };
    for (size_t i = 0; i < query.size();) {
        const unsigned char c = static_cast<unsigned char>(query[i]);
        if (c < 0x80) {
            if (is_ascii_word_char(c)) {
                word += static_cast<char>(c);
            } else {
                flush();
            }
            ++i;
            continue;
        }
        const size_t n = utf8_sequence(query, i);
        if (n == 0) {  // not UTF-8: a separator
            flush();
            ++i;
            continue;
        }
        word.append(query.substr(i, n));
        i += n;
    }
    flush();
    std::string out;
    for (const std::string& w : words) {
        if (!out.empty()) out += " OR ";
        out += "\"" + w + "\"";  // words hold no '"': it is not a word character
    }
    return out;
}

std::string cap_utf8_chars(std::string_view text, size_t max_chars, bool* truncated) {
    size_t chars = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if ((c & 0xC0) == 0x80) continue;  // a continuation byte: inside a character
        if (chars == max_chars) {
            if (truncated != nullptr) *truncated = true;
            return std::string(text.substr(0, i));
        }
        ++chars;
    }
    if (truncated != nullptr) *truncated = false;
    return std::string(text);
}

std::string format_search_hits(const std::vector<SearchHit>& hits) {
    std::string out;
    for (size_t i = 0; i < hits.size(); ++i) {
        out += "Doc " + std::to_string(i + 1) + "(Title: " + hits[i].title + ") " + hits[i].text +
               "\n";
    }
    return out;
}

SearchBuildStats build_search_index(const fs::path& docs_jsonl, const fs::path& out_dir,
                                    bool replace) {
    const fs::path final_dir = normalized_dir(out_dir);
    const std::string docs_path = docs_jsonl.string();
    std::error_code ec;
    if (fs::is_directory(docs_jsonl, ec))
        throw Error(docs_path + ": is a folder, not a JSONL file of documents");
    if (fs::exists(final_dir, ec)) {
        if (!replace)
            throw Error(final_dir.string() +
                        ": already exists (replace an index with --force, or choose another "
                        "--out)");
        if (!fs::is_regular_file(final_dir / kDbFile))
            throw Error(final_dir.string() +
                        ": exists and is not a search index; not replacing it");
    }
    fs::create_directories(final_dir.parent_path(), ec);
    if (ec)
        throw Error(final_dir.parent_path().string() + ": cannot create folder: " + ec.message());
    remove_stale_builds(final_dir);
    const fs::path tmp =
        final_dir.parent_path() / (tmp_prefix(final_dir) + std::to_string(::getpid()));
    fs::remove_all(tmp, ec);
    if (!fs::create_directory(tmp, ec) || ec)
        throw Error(tmp.string() + ": cannot create folder: " + ec.message());

    SearchBuildStats stats;
    try {
        const fs::path db_path = tmp / kDbFile;
        {
            SqliteDb db(db_path.string());
            // The folder is thrown away unless the build completes, so no journal is needed
            // for safety; the file is fsynced once, before the folder is published.
            db.exec("PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF;");
            db.exec(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                "CREATE VIRTUAL TABLE passages USING fts5(doc_id UNINDEXED, title, text, "
                "tokenize = 'unicode61 remove_diacritics 2');");
            SqliteTransaction tx(db);
            SqliteStatement insert =
                db.prepare("INSERT INTO passages(doc_id, title, text) VALUES (?1, ?2, ?3)");
            std::unordered_map<std::string, int> first_line;
            for_each_jsonl_line(docs_path, "the documents", [&](const JsonlLine& line) {
                const nlohmann::json j = parse_jsonl_object(line);
                const std::string& id = string_field(j, "id", line.where());
                const std::string& title = string_field(j, "title", line.where());
                const std::string& text = string_field(j, "text", line.where());
                if (id.empty()) throw Error(line.where() + ": \"id\" is empty");
                const auto [it, fresh] = first_line.emplace(id, line.number);
                if (!fresh)
                    throw Error(line.where() + ": duplicate \"id\" \"" + shown_id(id) +
                                "\" (first on line " + std::to_string(it->second) + ")");
                insert.bind(1, id).bind(2, title).bind(3, text).run();
                insert.reset();
                ++stats.documents;
            });
            if (stats.documents == 0) throw Error(docs_path + ": no documents (the file is empty)");
            SqliteStatement meta = db.prepare("INSERT INTO meta(key, value) VALUES (?1, ?2)");
            const auto put = [&](const char* key, const std::string& value) {
                meta.bind(1, key).bind(2, value).run();
                meta.reset();
            };
            put("format", kFormat);
            put("version", kVersion);
            put("documents", std::to_string(stats.documents));
            put("source", fs::absolute(docs_jsonl).string());
            db.exec("INSERT INTO passages(passages) VALUES('optimize')");
            tx.commit();
        }
        fsync_file(db_path);
        if (fs::exists(final_dir, ec)) {
            // --force over an existing index: swap the two folders in one rename, so readers
            // see the old index or the new one, then remove the old one.
            fsync_directory(tmp);
            if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) !=
                0)
                throw Error(final_dir.string() +
                            ": cannot replace the index: " + std::strerror(errno));
            fs::remove_all(tmp, ec);
            fsync_directory(final_dir.parent_path());
        } else if (!publish_directory(tmp, final_dir)) {
            throw Error(final_dir.string() + ": created by someone else during the build");
        }
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    return stats;
}

struct SearchIndex::Impl {
    fs::path dir;
    std::string file;
    ReadOnlyDb conn;
    int64_t documents = 0;

    SqliteStatement prepare(const char* sql) const {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(conn.db, sql, -1, &stmt, nullptr) != SQLITE_OK)
            throw Error(file + ": SQLite prepare: " + sqlite3_errmsg(conn.db));
        return SqliteStatement(conn.db, stmt, file);
    }
};

SearchIndex::SearchIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SearchIndex::~SearchIndex() = default;
SearchIndex::SearchIndex(SearchIndex&&) noexcept = default;
SearchIndex& SearchIndex::operator=(SearchIndex&&) noexcept = default;

SearchIndex SearchIndex::open(const fs::path& dir) {
    const std::string where = dir.string();
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw Error(where + ": not a search index (no such folder)");
    if (!fs::is_directory(dir, ec)) throw Error(where + ": not a search index (not a folder)");
    const fs::path file = dir / kDbFile;
    if (!fs::is_regular_file(file, ec))
        throw Error(where + ": not a search index (no " + kDbFile +
                    "; build one with `crucible index build`)");
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    impl->file = file.string();
    // Read-only and never created: opening an index writes nothing into its folder.
    if (sqlite3_open_v2(impl->file.c_str(), &impl->conn.db,
                        SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
        throw Error(where + ": not a search index (" + kDbFile + ": " +
                    (impl->conn.db != nullptr ? sqlite3_errmsg(impl->conn.db) : "out of memory") +
                    ")");
    }
    sqlite3_busy_timeout(impl->conn.db, 10000);
    std::unordered_map<std::string, std::string> meta;
    try {
        SqliteStatement st = impl->prepare("SELECT key, value FROM meta");
        while (st.step()) meta[st.column_text(0)] = st.column_text(1);
        impl->prepare("SELECT doc_id, title, text FROM passages LIMIT 0").run();
    } catch (const Error& e) {
        throw Error(where + ": not a search index (" + e.what() + ")");
    }
    if (meta["format"] != kFormat) throw Error(where + ": not a search index (no format mark)");
    if (meta["version"] != kVersion)
        throw Error(where + ": search index version " + meta["version"] + ", this build reads " +
                    kVersion + " (rebuild it)");
    try {
        impl->documents = std::stoll(meta["documents"]);
    } catch (const std::exception&) {
        throw Error(where + ": not a search index (bad document count)");
    }
    return SearchIndex(std::move(impl));
}

std::vector<SearchHit> SearchIndex::search(std::string_view query, int k, size_t max_chars) const {
    std::vector<SearchHit> hits;
    if (k > kSearchMaxK) k = kSearchMaxK;
    const std::string match = search_fts_query(query);
    if (k <= 0 || match.empty()) return hits;
    SqliteStatement st = impl_->prepare(
        "SELECT doc_id, title, text, bm25(passages) FROM passages WHERE passages MATCH ?1 "
        "ORDER BY bm25(passages), rowid LIMIT ?2");
    st.bind(1, match).bind(2, k);
    while (st.step()) {
        SearchHit hit;
        hit.id = st.column_text(0);
        hit.title = st.column_text(1);
        hit.text = cap_utf8_chars(st.column_text(2), max_chars, &hit.truncated);
        hit.score = -st.column_double(3);
        hits.push_back(std::move(hit));
    }
    return hits;
}

int64_t SearchIndex::size() const {
    return impl_->documents;
}

const fs::path& SearchIndex::dir() const {
    return impl_->dir;
}

}  // namespace crucible
