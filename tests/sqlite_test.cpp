#include "core/sqlite.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace crucible {
namespace {

TEST(Sqlite, RoundTripsValuesAndSurvivesReopen) {
    testutil::TempDir dir;
    std::string path = (dir.path() / "store.sqlite").string();
    {
        SqliteDb db(path);
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x REAL, s TEXT, n TEXT)");
        auto insert = db.prepare("INSERT INTO t (x, s, n) VALUES (?, ?, ?)");
        insert.bind(1, 2.5).bind(2, std::string("h\xC3\xA9llo\0z", 8)).bind_null(3).run();
        EXPECT_EQ(db.last_insert_rowid(), 1);
    }
    SqliteDb db(path);
    auto select = db.prepare("SELECT id, x, s, n FROM t");
    ASSERT_TRUE(select.step());
    EXPECT_EQ(select.column_int(0), 1);
    EXPECT_EQ(select.column_double(1), 2.5);
    EXPECT_EQ(select.column_text(2), std::string("h\xC3\xA9llo\0z", 8));
    EXPECT_FALSE(select.column_text_or_null(3).has_value());
    EXPECT_FALSE(select.step());
}

TEST(Sqlite, UncommittedTransactionRollsBack) {
    SqliteDb db(":memory:");
    db.exec("CREATE TABLE t (v INTEGER)");
    {
        SqliteTransaction tx(db);
        db.prepare("INSERT INTO t VALUES (1)").run();
    }
    {
        SqliteTransaction tx(db);
        db.prepare("INSERT INTO t VALUES (2)").run();
        tx.commit();
    }
    auto count = db.prepare("SELECT group_concat(v) FROM t");
    ASSERT_TRUE(count.step());
    EXPECT_EQ(count.column_text(0), "2");
}

TEST(Sqlite, ErrorsNameTheFile) {
    SqliteDb db(":memory:");
    std::string message = testutil::error_of([&] { db.exec("SELEKT 1"); });
    EXPECT_NE(message.find(":memory:"), std::string::npos) << message;
    EXPECT_NE(message.find("syntax error"), std::string::npos) << message;
    message = testutil::error_of([] { SqliteDb("/nonexistent-dir/x.sqlite"); });
    EXPECT_NE(message.find("/nonexistent-dir/x.sqlite"), std::string::npos) << message;
}

}  // namespace
}  // namespace crucible
