// The search tool's BM25 index (env/search_index): ranking on a corpus small enough to argue
// by hand, k and max_chars, the UTF-8 cap, queries that are never FTS5 syntax, malformed
// JSONL named by line, atomic builds (a killed build leaves nothing that loads), opening
// things that are not indexes, and the `crucible index` CLI.
#include "env/search_index.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/sqlite.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::error_of;
using testutil::TempDir;

std::string doc(const std::string& id, const std::string& title, const std::string& text) {
    return json{{"id", id}, {"title", title}, {"text", text}}.dump() + "\n";
}

// Ten documents; "zebra" is in three of them (so its IDF is positive: FTS5 floors the IDF of
// a term in more than half the documents at a tiny constant), never in a title.
//   stripes: "zebra" 3 times in 3 words      -> the highest term frequency: first
//   herd:    once in 2 words                 -> same frequency as savanna, shorter: second
//   savanna: once in 7 words                 -> third
std::string corpus() {
    return doc("savanna", "Savanna", "a zebra eats grass near the river") +
           doc("stripes", "Stripes", "zebra zebra zebra") + doc("herd", "Herd", "zebra herd") +
           doc("lion", "Lion", "lions hunt at night") +
           doc("owl", "Owl", "owls fly silently in the dark") +
           doc("bee", "Bee", "bees make honey from flowers") +
           doc("cat", "Cat", "cats sleep most of the day") +
           doc("fish", "Fish", "fish swim in cold water") +
           doc("utf8", "Ünïcödé", "héllo wörld, naïve café \xF0\x9F\x98\x80 emoji") +
           doc("frog", "Frog", "frogs jump");
}

std::vector<std::string> ids(const std::vector<SearchHit>& hits) {
    std::vector<std::string> out;
    for (const SearchHit& h : hits) out.push_back(h.id);
    return out;
}

struct Built {
    TempDir tmp;
    fs::path dir;
    explicit Built(const std::string& docs) {
        dir = tmp.path() / "index";
        build_search_index(tmp.write("docs.jsonl", docs), dir);
    }
};

TEST(SearchIndex, Bm25RanksByTermFrequencyThenLength) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    EXPECT_EQ(index.size(), 10);
    const std::vector<SearchHit> hits = index.search("zebra", 10);
    EXPECT_EQ(ids(hits), (std::vector<std::string>{"stripes", "herd", "savanna"}));
    ASSERT_EQ(hits.size(), 3u);
    EXPECT_GT(hits[0].score, hits[1].score);
    EXPECT_GT(hits[1].score, hits[2].score);
    EXPECT_GT(hits[2].score, 0);
    EXPECT_EQ(hits[0].title, "Stripes");
    EXPECT_EQ(hits[0].text, "zebra zebra zebra");
    EXPECT_FALSE(hits[0].truncated);
    // Case folded; the rarer word "river" lifts savanna, the only passage with both, to first.
    EXPECT_EQ(ids(index.search("ZEBRA", 10)), ids(hits));
    EXPECT_EQ(index.search("zebra river", 10).front().id, "savanna");
    // Titles are searched; diacritics are removed on both sides.
    EXPECT_EQ(ids(index.search("herd", 10)), (std::vector<std::string>{"herd"}));
    EXPECT_EQ(ids(index.search("unicode", 10)), (std::vector<std::string>{"utf8"}));
    EXPECT_EQ(ids(index.search("world cafe", 10)), (std::vector<std::string>{"utf8"}));
    EXPECT_TRUE(index.search("giraffe", 10).empty());
}

TEST(SearchIndex, TiesKeepTheCollectionOrder) {
    std::string docs = corpus();
    docs += doc("twin-b", "T", "quokka smiles");
    docs += doc("twin-a", "T", "quokka smiles");
    Built b(docs);
    EXPECT_EQ(ids(SearchIndex::open(b.dir).search("quokka", 5)),
              (std::vector<std::string>{"twin-b", "twin-a"}));
}

TEST(SearchIndex, KAndMaxCharsAreHonoured) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    EXPECT_EQ(ids(index.search("zebra", 2)), (std::vector<std::string>{"stripes", "herd"}));
    EXPECT_EQ(index.search("zebra", 1).size(), 1u);
    EXPECT_TRUE(index.search("zebra", 0).empty());
    EXPECT_TRUE(index.search("zebra", -5).empty());
    EXPECT_EQ(index.search("zebra", 1 << 30).size(), 3u);  // clamped to kSearchMaxK
    const std::vector<SearchHit> capped = index.search("zebra", 3, 5);
    ASSERT_EQ(capped.size(), 3u);
    EXPECT_EQ(capped[0].text, "zebra");
    EXPECT_TRUE(capped[0].truncated);
    EXPECT_EQ(capped[1].text, "zebra");  // "zebra herd" cut at 5
    EXPECT_TRUE(capped[1].truncated);
    const std::vector<SearchHit> whole = index.search("herd", 1, 10);
    EXPECT_EQ(whole[0].text, "zebra herd");  // exactly 10 characters: not cut
    EXPECT_FALSE(whole[0].truncated);
    EXPECT_EQ(index.search("zebra", 1, 0)[0].text, "");
}

TEST(SearchIndex, CapCountsCharactersAndCutsOnlyBetweenThem) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    // "héllo": the cap counts characters, and 'é' (2 bytes) is never split.
    EXPECT_EQ(index.search("hello", 1, 2)[0].text, "h\xC3\xA9");
    EXPECT_EQ(index.search("hello", 1, 1)[0].text, "h");
    // The emoji is the 25th character: 4 bytes, whole or not at all.
    EXPECT_EQ(index.search("emoji", 1, 24)[0].text,
              "h\xC3\xA9llo w\xC3\xB6rld, na\xC3\xAFve caf\xC3\xA9 ");
    EXPECT_EQ(index.search("emoji", 1, 25)[0].text,
              "h\xC3\xA9llo w\xC3\xB6rld, na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80");
    bool cut = false;
    EXPECT_EQ(cap_utf8_chars("\xE2\x82\xAC\xE2\x82\xAC", 1, &cut), "\xE2\x82\xAC");  // "€€"
    EXPECT_TRUE(cut);
    EXPECT_EQ(cap_utf8_chars("abc", 3, &cut), "abc");
    EXPECT_FALSE(cut);
    EXPECT_EQ(cap_utf8_chars("", 0, &cut), "");
    EXPECT_FALSE(cut);
}

TEST(SearchIndex, QueriesAreNeverFtsSyntax) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    // None of these throws; none matches everything. Operators, quotes, column filters,
    // prefixes and NEAR are plain words (or nothing).
    for (const std::string& q :
         std::vector<std::string>{"\"", "\"\"\"\"", "AND OR NOT (", "col:x", "*", "(", ")",
                                  "NEAR(a b)", "^", "-", "+", "'", "\\", "{title text}: x", "AND",
                                  "NOT zebra", "\xFF\xFE", std::string("a\0b", 3)}) {
        std::vector<SearchHit> hits;
        EXPECT_NO_THROW(hits = index.search(q, 100)) << q;
        EXPECT_LT(hits.size(), 10u) << q;
        for (const SearchHit& h : hits) EXPECT_NE(h.id, "owl") << q;  // unrelated to any
    }
    EXPECT_TRUE(index.search("AND OR NOT (", 10).empty());
    EXPECT_TRUE(index.search("col:x", 10).empty());
    // A column filter is two words: "title:zebra" finds the zebra passages, as "zebra" does.
    EXPECT_EQ(ids(index.search("title:zebra", 10)), ids(index.search("zebra", 10)));
    EXPECT_EQ(ids(index.search("\"zebra", 10)), ids(index.search("zebra", 10)));
    EXPECT_EQ(ids(index.search("NOT zebra", 10)), ids(index.search("zebra", 10)));
    // No prefix matching: "zeb*" is the word "zeb".
    EXPECT_TRUE(index.search("zeb*", 10).empty());
    // Invalid UTF-8 bytes separate words.
    EXPECT_EQ(ids(index.search("\xFFzebra\xC3", 10)), ids(index.search("zebra", 10)));
    EXPECT_EQ(search_fts_query("Who is AND \"x\" col:y?"),
              "\"Who\" OR \"is\" OR \"AND\" OR \"x\" OR \"col\" OR \"y\"");
    EXPECT_EQ(search_fts_query("a A a b"), "\"a\" OR \"b\"");  // distinct, case-insensitive
}

TEST(SearchIndex, EmptyOrPunctuationQueriesReturnNothing) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    for (const std::string& q :
         std::vector<std::string>{"", "   ", "!!! ???", "\"\"", "...", "\xE2\x80\x94"}) {
        std::vector<SearchHit> hits{SearchHit{}};
        EXPECT_NO_THROW(hits = index.search(q, 3)) << q;
        EXPECT_TRUE(hits.empty()) << q;
    }
    EXPECT_EQ(search_fts_query("!!! ???"), "");
}

TEST(SearchIndex, LongQueriesAreBounded) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    std::string many;
    for (int i = 0; i < 5000; ++i) {
        many += 'w';
        many += std::to_string(i);
        many += ' ';
    }
    EXPECT_NE(search_fts_query(many).find("\"w31\""), std::string::npos);
    EXPECT_EQ(search_fts_query(many).find("\"w32\""), std::string::npos);  // 32 words at most
    EXPECT_TRUE(index.search(many + "zebra", 3).empty());                  // zebra is word 5001
    EXPECT_EQ(index.search("zebra " + many, 3).size(), 3u);
    EXPECT_TRUE(index.search(std::string(1 << 20, 'z'), 3).empty());
}

TEST(SearchIndex, ConcurrentSearchesAgree) {
    Built b(corpus());
    const SearchIndex index = SearchIndex::open(b.dir);
    const std::vector<std::string> want = ids(index.search("zebra", 3));
    std::vector<std::thread> threads;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) ok[t] += ids(index.search("zebra", 3)) == want;
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 50);
}

TEST(SearchIndex, MalformedDocumentsAreNamedByLine) {
    TempDir tmp;
    const auto build_error = [&](const std::string& docs) {
        const fs::path file = tmp.write("bad.jsonl", docs);
        const std::string msg = error_of([&] { build_search_index(file, tmp.path() / "out"); });
        EXPECT_FALSE(fs::exists(tmp.path() / "out")) << msg;
        return msg;
    };
    const std::string ok = doc("a", "A", "alpha");
    const std::string f = (tmp.path() / "bad.jsonl").string();
    EXPECT_EQ(build_error(ok + "\n{\"title\": \"B\", \"text\": \"b\"}\n"),
              f + ":3: missing field 'id'");
    EXPECT_EQ(build_error(ok + "{\"id\": 7, \"title\": \"B\", \"text\": \"b\"}\n"),
              f + ":2: field 'id' must be a string, got number");
    EXPECT_EQ(build_error(ok + "{\"id\": \"b\", \"text\": \"b\"}\n"),
              f + ":2: missing field 'title'");
    EXPECT_EQ(build_error(ok + "{\"id\": \"b\", \"title\": null, \"text\": \"b\"}\n"),
              f + ":2: field 'title' must be a string, got null");
    EXPECT_EQ(build_error(ok + "{\"id\": \"b\", \"title\": \"B\"}\n"),
              f + ":2: missing field 'text'");
    EXPECT_EQ(build_error(ok + "{\"id\": \"b\", \"title\": \"B\", \"text\": [\"b\"]}\n"),
              f + ":2: field 'text' must be a string, got array");
    EXPECT_EQ(build_error(ok + "{\"id\": \"\", \"title\": \"B\", \"text\": \"b\"}\n"),
              f + ":2: \"id\" is empty");
    EXPECT_EQ(build_error(ok + doc("b", "B", "b") + doc("a", "A2", "again")),
              f + ":3: duplicate \"id\" \"a\" (first on line 1)");
    EXPECT_NE(build_error(ok + "{not json\n").find(f + ":2: not valid JSON"), std::string::npos);
    EXPECT_EQ(build_error(ok + "[1, 2]\n"), f + ":2: each line must be a JSON object");
    EXPECT_EQ(build_error(""), f + ": no documents (the file is empty)");
    EXPECT_EQ(build_error("\n  \n\r\n"), f + ": no documents (the file is empty)");
    EXPECT_EQ(error_of([&] { build_search_index(tmp.path() / "none.jsonl", tmp.path() / "o"); }),
              (tmp.path() / "none.jsonl").string() + ": cannot open the documents");
    EXPECT_EQ(error_of([&] { build_search_index(tmp.path(), tmp.path() / "o"); }),
              tmp.path().string() + ": is a folder, not a JSONL file of documents");
    // Nothing was left behind by the failed builds: no index, no temporary folder.
    for (const auto& entry : fs::directory_iterator(tmp.path()))
        EXPECT_EQ(entry.path().extension(), ".jsonl") << entry.path();
}

TEST(SearchIndex, OpenNamesTheFolderWhenItIsNotAnIndex) {
    TempDir tmp;
    const std::string d = (tmp.path() / "x").string();
    EXPECT_EQ(error_of([&] { SearchIndex::open(d); }), d + ": not a search index (no such folder)");
    tmp.write("x", "a file");
    EXPECT_EQ(error_of([&] { SearchIndex::open(d); }), d + ": not a search index (not a folder)");
    fs::remove(d);
    fs::create_directory(d);
    EXPECT_NE(
        error_of([&] { SearchIndex::open(d); }).find(d + ": not a search index (no index.sqlite"),
        std::string::npos);
    EXPECT_FALSE(fs::exists(fs::path(d) / "index.sqlite"));  // open never creates one
    tmp.write("x/index.sqlite", std::string(4096, 'g'));
    EXPECT_NE(error_of([&] { SearchIndex::open(d); }).find(d + ": not a search index ("),
              std::string::npos);
    fs::remove(fs::path(d) / "index.sqlite");
    {
        SqliteDb other((fs::path(d) / "index.sqlite").string());  // a database, not an index
        other.exec("CREATE TABLE notes(x TEXT); PRAGMA journal_mode=DELETE;");
    }
    EXPECT_NE(error_of([&] { SearchIndex::open(d); }).find(d + ": not a search index ("),
              std::string::npos);
}

TEST(SearchIndex, OpeningWritesNothingIntoTheFolder) {
    Built b(corpus());
    {
        const SearchIndex index = SearchIndex::open(b.dir);
        EXPECT_EQ(index.search("zebra", 3).size(), 3u);
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(b.dir)) names.push_back(e.path().filename());
        EXPECT_EQ(names, (std::vector<std::string>{"index.sqlite"}));
    }
    fs::permissions(b.dir, fs::perms::owner_read | fs::perms::owner_exec);
    if (::geteuid() != 0) {  // root ignores permissions
        EXPECT_EQ(SearchIndex::open(b.dir).search("zebra", 3).size(), 3u);
    }
    fs::permissions(b.dir, fs::perms::owner_all);
}

TEST(SearchIndex, ExistingOutputIsKeptUnlessReplacingAnIndex) {
    TempDir tmp;
    const fs::path docs1 = tmp.write("one.jsonl", corpus());
    const fs::path docs2 = tmp.write("two.jsonl", doc("only", "Only", "okapi"));
    const fs::path out = tmp.path() / "index";
    build_search_index(docs1, out);
    EXPECT_NE(error_of([&] { build_search_index(docs2, out); }).find("already exists"),
              std::string::npos);
    EXPECT_EQ(SearchIndex::open(out).size(), 10);
    const SearchIndex before = SearchIndex::open(out);  // open across the replacement
    build_search_index(docs2, out, /*replace=*/true);
    EXPECT_EQ(SearchIndex::open(out).size(), 1);
    EXPECT_EQ(ids(SearchIndex::open(out).search("okapi", 3)), (std::vector<std::string>{"only"}));
    EXPECT_EQ(before.search("zebra", 3).size(), 3u);  // the old files stay readable while open
    // A folder that is not an index is never replaced.
    const fs::path other = tmp.path() / "photos";
    fs::create_directory(other);
    tmp.write("photos/cat.jpg", "meow");
    EXPECT_NE(error_of([&] {
                  build_search_index(docs2, other, true);
              }).find("exists and is not a search index; not replacing it"),
              std::string::npos);
    EXPECT_EQ(testutil::slurp(other / "cat.jpg"), "meow");
    // A trailing slash names the same folder.
    build_search_index(docs1, tmp.path() / "slash/", false);
    EXPECT_EQ(SearchIndex::open(tmp.path() / "slash").size(), 10);
}

TEST(SearchIndex, StaleTemporaryFolderIsIgnoredAndReplaced) {
    TempDir tmp;
    const fs::path out = tmp.path() / "index";
    // A build killed half way (its PID long gone) left a temporary folder with a partial
    // database: it never loads under the final name, and the next build removes it.
    const fs::path stale = tmp.path() / ".index.tmp-999999999";
    fs::create_directory(stale);
    tmp.write(".index.tmp-999999999/index.sqlite", "partial");
    EXPECT_NE(error_of([&] { SearchIndex::open(out); }).find("no such folder"), std::string::npos);
    build_search_index(tmp.write("docs.jsonl", corpus()), out);
    EXPECT_FALSE(fs::exists(stale));
    EXPECT_EQ(SearchIndex::open(out).size(), 10);
}

// Runs the real binary; returns its exit status, stdout in *out.
int run_cli(const std::string& args, std::string* out, std::string* err = nullptr) {
    TempDir tmp;
    const fs::path o = tmp.path() / "out";
    const fs::path e = tmp.path() / "err";
    const std::string cmd =
        std::string(CRUCIBLE_BINARY) + " " + args + " > " + o.string() + " 2> " + e.string();
    const int status = std::system(cmd.c_str());
    *out = testutil::slurp(o);
    if (err != nullptr) *err = testutil::slurp(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(SearchIndex, KilledBuildLeavesNoIndexThatLoads) {
    TempDir tmp;
    std::string docs;
    const int n = 60000;
    for (int i = 0; i < n; ++i)
        docs += doc(std::string("d") + std::to_string(i), "Entity " + std::to_string(i),
                    "entity " + std::to_string(i) + " was born in town" + std::to_string(i % 97) +
                        " and works as a smith in the valley of the long river");
    const fs::path file = tmp.write("docs.jsonl", docs);
    const fs::path out = tmp.path() / "index";
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::execl(CRUCIBLE_BINARY, CRUCIBLE_BINARY, "index", "build", "--docs", file.c_str(), "--out",
                out.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Kill it once its temporary folder holds a database being written.
    const fs::path partial = tmp.path() / (".index.tmp-" + std::to_string(pid)) / "index.sqlite";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    bool reaped = false;
    while (!fs::exists(partial) && std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            reaped = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!reaped) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    if (WIFSIGNALED(status)) {
        EXPECT_FALSE(fs::exists(out));  // killed mid-build: nothing under the final name
        EXPECT_NE(error_of([&] { SearchIndex::open(out); }).find("not a search index"),
                  std::string::npos);
    } else {
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        EXPECT_EQ(SearchIndex::open(out).size(), n);  // it finished first: complete
    }
    std::string printed;
    ASSERT_EQ(run_cli("index build --docs " + file.string() + " --out " + out.string() + " --force",
                      &printed),
              0);
    EXPECT_EQ(json::parse(printed)["documents"], n);
    EXPECT_EQ(SearchIndex::open(out).size(), n);
    EXPECT_FALSE(fs::exists(partial.parent_path()));
    EXPECT_EQ(SearchIndex::open(out).search("entity 4242", 1)[0].id, "d4242");
}

TEST(SearchIndex, Cli) {
    TempDir tmp;
    const fs::path docs = tmp.write("docs.jsonl", corpus());
    const std::string out = (tmp.path() / "idx").string();
    std::string printed;
    std::string err;
    ASSERT_EQ(run_cli("index build --docs " + docs.string() + " --out " + out, &printed), 0);
    const json summary = json::parse(printed);
    EXPECT_EQ(summary["documents"], 10);
    EXPECT_EQ(summary["index"], out);
    ASSERT_EQ(run_cli("index search " + out + " zebra -k 2 --max-chars 5", &printed), 0);
    std::istringstream lines(printed);
    std::string line;
    std::vector<json> rows;
    while (std::getline(lines, line)) rows.push_back(json::parse(line));
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0]["rank"], 1);
    EXPECT_EQ(rows[0]["id"], "stripes");
    EXPECT_EQ(rows[0]["title"], "Stripes");
    EXPECT_EQ(rows[0]["text"], "zebra");
    EXPECT_EQ(rows[0]["truncated"], true);
    EXPECT_GT(rows[0]["score"].get<double>(), rows[1]["score"].get<double>());
    EXPECT_EQ(rows[1]["id"], "herd");
    // Default k is 3; a hostile query prints nothing and succeeds.
    ASSERT_EQ(run_cli("index search " + out + " zebra", &printed), 0);
    EXPECT_EQ(std::count(printed.begin(), printed.end(), '\n'), 3);
    ASSERT_EQ(run_cli("index search " + out + " '\" AND OR NOT ( *'", &printed), 0);
    EXPECT_EQ(printed, "");
    // Errors: one line naming the file and line, or the folder.
    const fs::path bad = tmp.write("bad.jsonl", doc("a", "A", "x") + "{\"id\": \"b\"}\n");
    EXPECT_EQ(run_cli("index build --docs " + bad.string() + " --out " + out + "2", &printed, &err),
              1);
    EXPECT_EQ(err, "error: " + bad.string() + ":2: missing field 'title'\n");
    EXPECT_EQ(run_cli("index search " + docs.string() + " zebra", &printed, &err), 1);
    EXPECT_EQ(err, "error: " + docs.string() + ": not a search index (not a folder)\n");
    EXPECT_NE(run_cli("index search " + out + " zebra -k 0", &printed, &err), 0);
}

}  // namespace
}  // namespace crucible
