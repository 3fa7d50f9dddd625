// core/yaml_reader: the parse, the strict section reader evolve's problem.yaml goes through,
// and the unknown-key words it shares with Config.
#include "core/yaml_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "evolve/problem.h"
#include "test_util.h"

namespace crucible {
namespace {

using testutil::error_of;

TEST(YamlReader, ParseErrorNamesWhereAndLine) {
    const std::string e = error_of([] { parse_yaml("a: 1\nb: [1, 2\n", "f.yaml"); });
    EXPECT_EQ(e.rfind("f.yaml:", 0), 0u) << e;
    EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
    EXPECT_TRUE(parse_yaml("", "f.yaml").IsNull());
}

TEST(YamlReader, SectionReadsTypesAndRejectsUnknownKeys) {
    const YAML::Node root =
        parse_yaml("n: 3\nx: 1.5\nname: hi\nflag: true\nlist: [a, b]\n", "f.yaml");
    YamlSection s(root, "f.yaml", "top");
    int n = 0;
    double x = 0, absent = 7;
    std::string name;
    bool flag = false;
    s.get("n", n);
    s.get("x", x);
    s.get("absent", absent);
    s.get("name", name);
    s.get("flag", flag);
    EXPECT_EQ(n, 3);
    EXPECT_EQ(x, 1.5);
    EXPECT_EQ(absent, 7);  // a missing key keeps the default
    EXPECT_EQ(name, "hi");
    EXPECT_TRUE(flag);
    EXPECT_EQ(s.strings("list"), (std::vector<std::string>{"a", "b"}));
    EXPECT_NO_THROW(s.finish());

    YamlSection t(parse_yaml("n: 1\ntypo: 2\n", "f.yaml"), "f.yaml", "top");
    t.get("n", n);
    t.get("m", n);
    EXPECT_EQ(error_of([&] { t.finish(); }), "f.yaml:2: unknown key 'top.typo' (known here: m, n)");
}

TEST(YamlReader, TypeErrorsNameFileLineKeyAndKind) {
    YamlSection s(parse_yaml("a: 1\nn: many\nu: -1\nb: maybe\nl: [1]\n", "f.yaml"), "f.yaml", "");
    int n = 0;
    uint64_t u = 0;
    bool b = false;
    std::string l;
    EXPECT_EQ(error_of([&] { s.get("n", n); }), "f.yaml:2: key 'n' must be an integer");
    EXPECT_EQ(error_of([&] { s.get("u", u); }), "f.yaml:3: key 'u' must be a non-negative integer");
    EXPECT_EQ(error_of([&] { s.get("b", b); }), "f.yaml:4: key 'b' must be true or false");
    EXPECT_EQ(error_of([&] { s.get("l", l); }), "f.yaml:5: key 'l' must be a string");
    EXPECT_EQ(error_of([&] { s.strings("a"); }), "f.yaml:1: key 'a' must be a list of strings");
    EXPECT_EQ(error_of([] { YamlSection bad(parse_yaml("[1]", "f.yaml"), "f.yaml", "x"); }),
              "f.yaml:1: expected a mapping for 'x'");
}

TEST(YamlReader, ItemsOfAList) {
    const YAML::Node root =
        parse_yaml("stages:\n  - cmd: a\n  - cmd: b\n    bad: 1\nflat: 3\n", "f.yaml");
    YamlSection s(root, "f.yaml", "ev");
    std::vector<YamlSection> items = s.items("stages");
    ASSERT_EQ(items.size(), 2u);
    std::string cmd;
    items[0].get("cmd", cmd);
    EXPECT_EQ(cmd, "a");
    items[1].get("cmd", cmd);
    EXPECT_EQ(error_of([&] { items[1].finish(); }),
              "f.yaml:4: unknown key 'ev.stages[1].bad' (known here: cmd)");
    EXPECT_EQ(error_of([&] { s.items("flat"); }), "f.yaml:5: key 'ev.flat' must be a list");
    EXPECT_TRUE(s.items("none").empty());
}

// Config (defaults + file + --set) and problem.yaml name an unknown key in the same words.
TEST(YamlReader, ConfigAndProblemShareTheUnknownKeyMessage) {
    Config c("train:\n  steps: 10\n  lr: 0.1\n");
    EXPECT_EQ(error_of([&] { c.set("train.stpes=3"); }),
              "--set train.stpes=3:2: unknown key 'train.stpes' (known here: steps, lr)");

    testutil::TempDir dir;
    dir.write("p.py", "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n");
    dir.write("problem.yaml",
              "initial_program: p.py\nevaluator:\n  command: [python3, x]\n  timeuot_s: 3\n");
    const std::string e = error_of([&] { evolve::load_problem(dir.path()); });
    EXPECT_NE(e.find("problem.yaml:4: unknown key 'evaluator.timeuot_s' (known here: "),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("timeout_s"), std::string::npos) << e;
}

}  // namespace
}  // namespace crucible
