// A small RAII layer over SQLite for Crucible's durable stores (eval samples, the evolution
// program database, the judge cache). Every failure throws crucible::Error naming the file and
// SQLite's message. Databases open in WAL mode with a busy timeout, so a reader never blocks
// the writer and a killed process loses at most the transaction it was in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

struct sqlite3;
struct sqlite3_stmt;

namespace crucible {

class SqliteStatement;

class SqliteDb {
  public:
    // Opens (creating if needed) the database at `path`; ":memory:" for a private in-memory one.
    explicit SqliteDb(const std::string& path);
    ~SqliteDb();
    SqliteDb(const SqliteDb&) = delete;
    SqliteDb& operator=(const SqliteDb&) = delete;
    SqliteDb(SqliteDb&& other) noexcept;
    SqliteDb& operator=(SqliteDb&& other) noexcept;

    // Runs one or more statements that return no rows (schema, pragmas, BEGIN/COMMIT). Outside
    // a transaction, a lock that SQLite will not wait on (SQLITE_BUSY) runs `sql` again, whole,
    // for up to about 10 s: give it one statement, or statements that may run twice
    // (CREATE ... IF NOT EXISTS, pragmas).
    void exec(std::string_view sql);
    SqliteStatement prepare(std::string_view sql);
    int64_t last_insert_rowid() const;
    int changes() const;
    const std::string& path() const { return path_; }
    sqlite3* handle() const { return db_; }

  private:
    sqlite3* db_ = nullptr;
    std::string path_;
};

// A prepared statement. Bind indices start at 1 (SQLite's convention); column indices at 0.
class SqliteStatement {
  public:
    SqliteStatement(sqlite3* db, sqlite3_stmt* stmt, std::string path)
        : db_(db), stmt_(stmt), path_(std::move(path)) {}
    ~SqliteStatement();
    SqliteStatement(const SqliteStatement&) = delete;
    SqliteStatement& operator=(const SqliteStatement&) = delete;
    SqliteStatement(SqliteStatement&& other) noexcept;

    SqliteStatement& bind(int index, int64_t value);
    SqliteStatement& bind(int index, int value) { return bind(index, int64_t{value}); }
    SqliteStatement& bind(int index, double value);
    SqliteStatement& bind(int index, std::string_view text);
    SqliteStatement& bind(int index, const char* text) {
        return bind(index, std::string_view(text));
    }
    SqliteStatement& bind(int index, const std::string& text) {
        return bind(index, std::string_view(text));
    }
    SqliteStatement& bind_blob(int index, const void* data, size_t bytes);
    SqliteStatement& bind_null(int index);

    // Advances to the next row: true when a row is available, false when done.
    bool step();
    // Runs a statement that returns no rows.
    void run() {
        while (step()) {
        }
    }
    void reset();  // rewinds and clears the bindings, for reuse

    bool is_null(int column) const;
    int64_t column_int(int column) const;
    double column_double(int column) const;
    std::string column_text(int column) const;
    std::optional<std::string> column_text_or_null(int column) const;

  private:
    void check(int rc, const char* what);
    sqlite3* db_;
    sqlite3_stmt* stmt_;
    std::string path_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless commit() ran.
class SqliteTransaction {
  public:
    explicit SqliteTransaction(SqliteDb& db);
    ~SqliteTransaction();
    SqliteTransaction(const SqliteTransaction&) = delete;
    SqliteTransaction& operator=(const SqliteTransaction&) = delete;
    void commit();

  private:
    SqliteDb& db_;
    bool done_ = false;
};

}  // namespace crucible
