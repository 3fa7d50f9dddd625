#include "core/sqlite.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

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
// Processes that open one new database at the same moment all get it, and every row each wrote.
// (The race on the switch to WAL that SqliteDb::exec retries showed in two ranks of
// DataParallelRl.RubricRewardsAreJudgedWhereGeneratedAndTotalsSummed under load; this test did
// not reproduce it before the retry, so it guards concurrent opening in general.)
TEST(Sqlite, ProcessesOpeningANewDatabaseAtOnceAllSucceed) {
    testutil::TempDir dir;
    for (int round = 0; round < 10; round++) {
        const std::string path = (dir.path() / ("db" + std::to_string(round))).string();
        std::vector<pid_t> children;
        for (int p = 0; p < 6; p++) {
            const pid_t pid = fork();
            ASSERT_GE(pid, 0);
            if (pid == 0) {
                int code = 0;
                try {
                    SqliteDb db(path);
                    db.exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)");
                    db.exec("INSERT OR IGNORE INTO t VALUES ('" + std::to_string(p) + "')");
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "child %d: %s\n", p, e.what());
                    code = 1;
                }
                _exit(code);
            }
            children.push_back(pid);
        }
        for (pid_t pid : children) {
            int status = 0;
            ASSERT_EQ(waitpid(pid, &status, 0), pid);
            EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
        }
        SqliteDb db(path);
        SqliteStatement s = db.prepare("SELECT count(*) FROM t");
        ASSERT_TRUE(s.step());
        EXPECT_EQ(s.column_int(0), 6) << "round " << round;
    }
}

}  // namespace crucible
