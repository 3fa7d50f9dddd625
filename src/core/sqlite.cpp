#include "core/sqlite.h"

#include <sqlite3.h>

#include "core/error.h"

namespace crucible {

namespace {

[[noreturn]] void fail(sqlite3* db, const std::string& path, const char* what) {
    throw Error(std::string(path) + ": SQLite " + what + ": " +
                (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

}  // namespace

SqliteDb::SqliteDb(const std::string& path) : path_(path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
        std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw Error(path + ": cannot open SQLite database: " + message);
    }
    sqlite3_busy_timeout(db_, 10000);
    try {
        exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
    } catch (const Error&) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

SqliteDb::~SqliteDb() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
}

SqliteDb::SqliteDb(SqliteDb&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}

SqliteDb& SqliteDb::operator=(SqliteDb&& other) noexcept {
    if (this != &other) {
        if (db_ != nullptr) sqlite3_close_v2(db_);
        db_ = std::exchange(other.db_, nullptr);
        path_ = std::move(other.path_);
    }
    return *this;
}

void SqliteDb::exec(std::string_view sql) {
    char* message = nullptr;
    std::string text(sql);
    // SQLite returns SQLITE_BUSY without waiting in the busy handler where waiting could
    // deadlock — as when processes that open one new database at once (the ranks of an mpirun
    // job sharing a judge cache) race to switch it to WAL or to create its tables. Outside a
    // transaction the statement that met the lock took no effect, so `sql` is run again for
    // about as long as the busy timeout (its earlier statements too: see sqlite.h); inside a
    // transaction the caller decides.
    int code = SQLITE_OK;
    for (int attempt = 0; attempt <= 1000; attempt++) {
        code = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
        const bool busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
        if (!busy || sqlite3_get_autocommit(db_) == 0) break;
        sqlite3_free(message);
        message = nullptr;
        sqlite3_sleep(10);
    }
    if (code != SQLITE_OK) {
        std::string error = message != nullptr ? message : sqlite3_errmsg(db_);
        sqlite3_free(message);
        throw Error(path_ + ": SQLite: " + error);
    }
}

SqliteStatement SqliteDb::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK) {
        fail(db_, path_, "prepare");
    }
    return SqliteStatement(db_, stmt, path_);
}

int64_t SqliteDb::last_insert_rowid() const {
    return sqlite3_last_insert_rowid(db_);
}
int SqliteDb::changes() const {
    return sqlite3_changes(db_);
}

SqliteStatement::~SqliteStatement() {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), path_(std::move(other.path_)) {}

void SqliteStatement::check(int rc, const char* what) {
    if (rc != SQLITE_OK) fail(db_, path_, what);
}

SqliteStatement& SqliteStatement::bind(int index, int64_t value) {
    check(sqlite3_bind_int64(stmt_, index, value), "bind");
    return *this;
}
SqliteStatement& SqliteStatement::bind(int index, double value) {
    check(sqlite3_bind_double(stmt_, index, value), "bind");
    return *this;
}
SqliteStatement& SqliteStatement::bind(int index, std::string_view text) {
    check(
        sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        "bind");
    return *this;
}
SqliteStatement& SqliteStatement::bind_blob(int index, const void* data, size_t bytes) {
    check(sqlite3_bind_blob64(stmt_, index, data, bytes, SQLITE_TRANSIENT), "bind");
    return *this;
}
SqliteStatement& SqliteStatement::bind_null(int index) {
    check(sqlite3_bind_null(stmt_, index), "bind");
    return *this;
}

bool SqliteStatement::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(db_, path_, "step");
}

void SqliteStatement::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

bool SqliteStatement::is_null(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}
int64_t SqliteStatement::column_int(int column) const {
    return sqlite3_column_int64(stmt_, column);
}
double SqliteStatement::column_double(int column) const {
    return sqlite3_column_double(stmt_, column);
}
std::string SqliteStatement::column_text(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (text == nullptr) return {};
    return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}
std::optional<std::string> SqliteStatement::column_text_or_null(int column) const {
    if (is_null(column)) return std::nullopt;
    return column_text(column);
}

SqliteTransaction::SqliteTransaction(SqliteDb& db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
}
SqliteTransaction::~SqliteTransaction() {
    if (!done_) {
        try {
            db_.exec("ROLLBACK");
        } catch (...) {
        }
    }
}
void SqliteTransaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

}  // namespace crucible
