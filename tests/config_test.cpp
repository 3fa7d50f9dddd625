// crucible::Config: the SFT schema's defaults, YAML files and --set overrides merged over
// them with key and type checks, errors naming file:line and the dotted key, and dump/diff.
// Expected values come from the schema text in train/sft_config.h and from the YAML written
// in each test.
#include "core/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "rl/rl_config.h"
#include "test_util.h"
#include "train/sft_config.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::slurp;
using testutil::TempDir;

namespace fs = std::filesystem;

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

Config sft() {
    return Config(kSftConfigDefaults);
}

// ---- defaults -------------------------------------------------------------------------------

TEST(ConfigDefaults, SftDefaultsReadableWithEachGetter) {
    const Config c = sft();
    EXPECT_EQ(c.get_int("seed"), 1);
    EXPECT_EQ(c.get_int("train.steps"), 1000);
    EXPECT_EQ(c.get_int("train.batch_size"), 64);
    EXPECT_EQ(c.get_int("model.arch.hidden_size"), 192);
    EXPECT_EQ(c.get_int("model.arch.vocab_size"), 264);
    EXPECT_EQ(c.get_int("data.max_seq_len"), 64);
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 1.0e-3);
    EXPECT_DOUBLE_EQ(c.get_double("model.arch.rms_norm_eps"), 1.0e-6);
    EXPECT_DOUBLE_EQ(c.get_double("model.init_std"), 0.02);
    EXPECT_DOUBLE_EQ(c.get_double("train.beta2"), 0.95);
    EXPECT_EQ(c.get_string("run.name"), "");
    EXPECT_EQ(c.get_string("run.dir"), "runs");
    EXPECT_EQ(c.get_string("model.path"), "");
    EXPECT_EQ(c.get_string("model.arch.model_type"), "qwen2");
    EXPECT_EQ(c.get_string("data.train"), "builtin:countdown_lite");
    EXPECT_EQ(c.get_string("train.schedule"), "cosine");
    EXPECT_TRUE(c.get_bool("model.arch.tie_word_embeddings"));
}

TEST(ConfigDefaults, IntegerIsReadableAsDouble) {
    const Config c = sft();
    EXPECT_DOUBLE_EQ(c.get_double("train.steps"), 1000.0);
}

TEST(ConfigDefaults, GetterErrorsNameTheKey) {
    const Config c = sft();
    EXPECT_NE(error_of([&] { c.get_int("train.nope"); }).find("train.nope"), std::string::npos);
    EXPECT_NE(error_of([&] { c.get_int("nope.steps"); }).find("nope.steps"), std::string::npos);
    // A path through a leaf is not a key either.
    EXPECT_NE(error_of([&] { c.get_int("seed.x"); }).find("seed.x"), std::string::npos);
    EXPECT_NE(error_of([&] { c.get_int("train.lr"); }).find("train.lr"), std::string::npos);
    EXPECT_NE(error_of([&] { c.get_bool("train.steps"); }).find("train.steps"), std::string::npos);
    EXPECT_NE(error_of([&] { c.get_double("run.name"); }).find("run.name"), std::string::npos);
}

// ---- merge_file -----------------------------------------------------------------------------

TEST(ConfigMergeFile, OverridesNestedKeysAndKeepsTheRest) {
    TempDir dir;
    const std::string path = dir.write("run.yaml",
                                       "# a comment\n"
                                       "train:\n"
                                       "  steps: 20\n"
                                       "  lr: 0.01\n"
                                       "  schedule: constant\n"
                                       "model:\n"
                                       "  arch:\n"
                                       "    hidden_size: 64\n"
                                       "    tie_word_embeddings: false\n"
                                       "data:\n"
                                       "  train: /data/sft.jsonl\n");
    Config c = sft();
    c.merge_file(path);
    EXPECT_EQ(c.get_int("train.steps"), 20);
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 0.01);
    EXPECT_EQ(c.get_string("train.schedule"), "constant");
    EXPECT_EQ(c.get_int("model.arch.hidden_size"), 64);
    EXPECT_FALSE(c.get_bool("model.arch.tie_word_embeddings"));
    EXPECT_EQ(c.get_string("data.train"), "/data/sft.jsonl");
    // Siblings of overridden keys keep their defaults.
    EXPECT_EQ(c.get_int("train.batch_size"), 64);
    EXPECT_DOUBLE_EQ(c.get_double("train.beta1"), 0.9);
    EXPECT_EQ(c.get_int("model.arch.intermediate_size"), 512);
    EXPECT_EQ(c.get_string("data.eval"), "builtin:countdown_lite");
    EXPECT_EQ(c.get_string("run.dir"), "runs");
}

TEST(ConfigMergeFile, LaterFilesOverrideEarlierOnes) {
    TempDir dir;
    Config c = sft();
    c.merge_file(dir.write("a.yaml", "train:\n  steps: 10\n  batch_size: 8\n"));
    c.merge_file(dir.write("b.yaml", "train:\n  steps: 30\n"));
    EXPECT_EQ(c.get_int("train.steps"), 30);
    EXPECT_EQ(c.get_int("train.batch_size"), 8);
}

TEST(ConfigMergeFile, EmptyFileChangesNothing) {
    TempDir dir;
    Config c = sft();
    c.merge_file(dir.write("empty.yaml", ""));
    c.merge_file(dir.write("comment.yaml", "# nothing here\n"));
    EXPECT_TRUE(Config::diff(c, sft()).empty());
}

TEST(ConfigMergeFile, UnknownKeyNamesFileLineAndDottedKey) {
    TempDir dir;
    const std::string path = dir.write("typo.yaml",
                                       "train:\n"
                                       "  steps: 20\n"
                                       "  stpes: 5\n");
    Config c = sft();
    const std::string msg = error_of([&] { c.merge_file(path); });
    EXPECT_NE(msg.find(path + ":3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'train.stpes'"), std::string::npos) << msg;
}

TEST(ConfigMergeFile, UnknownKeyDeepInTheTree) {
    TempDir dir;
    const std::string path = dir.write("deep.yaml",
                                       "seed: 3\n"
                                       "model:\n"
                                       "  init_std: 0.01\n"
                                       "  arch:\n"
                                       "    hidden_size: 64\n"
                                       "    hiden_size: 32\n");
    Config c = sft();
    const std::string msg = error_of([&] { c.merge_file(path); });
    EXPECT_NE(msg.find(path + ":6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.arch.hiden_size"), std::string::npos) << msg;
}

TEST(ConfigMergeFile, UnknownTopLevelKey) {
    TempDir dir;
    const std::string path = dir.write("top.yaml", "\n\nopt:\n  lr: 1\n");
    Config c = sft();
    const std::string msg = error_of([&] { c.merge_file(path); });
    EXPECT_NE(msg.find(path + ":3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'opt'"), std::string::npos) << msg;
}

// A number key never takes NaN or infinity, from a file or --set: `train.lr: .nan` trained
// and published an all-NaN checkpoint, `rewards.correct=.nan` trained on nothing.
TEST(ConfigMergeFile, NonFiniteNumbersAreRefusedNamingTheKey) {
    for (const char* value : {".nan", ".NaN", ".inf", "-.inf", "+.Inf"}) {
        Config c = sft();
        const std::string e = error_of([&] { c.set(std::string("train.lr=") + value); });
        EXPECT_NE(e.find("train.lr"), std::string::npos) << value << ": " << e;
        EXPECT_NE(e.find("finite"), std::string::npos) << value << ": " << e;
        EXPECT_EQ(c.get_double("train.lr"), sft().get_double("train.lr"));
    }
    TempDir dir;
    const auto file = dir.write("nan.yaml", "train:\n  lr: .nan\n");
    Config c = sft();
    const std::string e = error_of([&] { c.merge_file(file.string()); });
    EXPECT_NE(e.find("nan.yaml:2"), std::string::npos) << e;
    c.set("train.lr=1e-300");  // tiny but finite is a number like any other
    EXPECT_EQ(c.get_double("train.lr"), 1e-300);
}

TEST(ConfigMergeFile, WrongTypesNameTheKeyAndLine) {
    TempDir dir;
    const struct {
        const char* name;
        const char* yaml;
        const char* key;
        int line;
    } cases[] = {
        {"quoted.yaml", "train:\n  steps: \"abc\"\n", "train.steps", 2},
        {"plain.yaml", "train:\n  steps: abc\n", "train.steps", 2},
        {"list.yaml", "train:\n  steps: [1, 2]\n", "train.steps", 2},
        {"map.yaml", "train:\n  steps:\n    a: 1\n", "train.steps", 3},
        {"float.yaml", "train:\n  steps: 1.5\n", "train.steps", 2},
        {"null.yaml", "train:\n  warmup_steps: 3\n  steps:\n", "train.steps", 3},
        {"quoted_num.yaml", "train:\n  lr: \"0.5\"\n", "train.lr", 2},
        {"bool.yaml", "model:\n  arch:\n    tie_word_embeddings: 1\n",
         "model.arch.tie_word_embeddings", 3},
        {"bool_word.yaml", "model:\n  arch:\n    tie_word_embeddings: maybe\n",
         "model.arch.tie_word_embeddings", 3},
        {"string_list.yaml", "run:\n  name: [a, b]\n", "run.name", 2},
    };
    for (const auto& tc : cases) {
        SCOPED_TRACE(tc.name);
        const std::string path = dir.write(tc.name, tc.yaml);
        Config c = sft();
        const std::string msg = error_of([&] { c.merge_file(path); });
        std::string quoted_key = "'";
        quoted_key.append(tc.key).append("'");
        EXPECT_NE(msg.find(quoted_key), std::string::npos) << msg;
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        // The null value of "steps:" has no position of its own, so only require the line
        // where the value is known to be.
        if (std::string(tc.name) != "null.yaml") {
            EXPECT_NE(msg.find(path + ":" + std::to_string(tc.line)), std::string::npos) << msg;
        }
    }
}

TEST(ConfigMergeFile, SectionGivenAScalarErrorsNamingTheSection) {
    TempDir dir;
    const std::string path = dir.write("section.yaml", "seed: 2\ntrain: 5\n");
    Config c = sft();
    const std::string msg = error_of([&] { c.merge_file(path); });
    EXPECT_NE(msg.find(path + ":2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'train'"), std::string::npos) << msg;
}

TEST(ConfigMergeFile, TopLevelNotAMappingErrors) {
    TempDir dir;
    for (const char* text : {"just a string\n", "- 1\n- 2\n"}) {
        SCOPED_TRACE(text);
        const std::string path = dir.write("notmap.yaml", text);
        Config c = sft();
        EXPECT_NE(error_of([&] { c.merge_file(path); }).find(path), std::string::npos);
    }
}

TEST(ConfigMergeFile, InvalidYamlNamesTheFile) {
    TempDir dir;
    for (const char* text :
         {"train: [1, 2\n", "train:\n  steps: 1\n bad: 2\n  x\n", "train: {steps: 1\n"}) {
        SCOPED_TRACE(text);
        const std::string path = dir.write("bad.yaml", text);
        Config c = sft();
        const std::string msg = error_of([&] { c.merge_file(path); });
        EXPECT_NE(msg.find(path + ":"), std::string::npos) << msg;
    }
}

// A mapping key that is not a scalar (YAML "? [a, b]") is a crucible::Error naming file:line.
TEST(ConfigMergeFile, NonScalarKeyIsACrucibleError) {
    TempDir dir;
    const std::string path = dir.write("complex_key.yaml", "seed: 2\n? [a, b]\n: 1\n");
    Config c = sft();
    const std::string msg = error_of([&] { c.merge_file(path); });
    EXPECT_NE(msg.find(path + ":2"), std::string::npos) << msg;
}

TEST(ConfigMergeFile, MissingFileNamesThePath) {
    TempDir dir;
    Config c = sft();
    const std::string path = dir.write("exists.yaml", "").string() + ".missing";
    EXPECT_NE(error_of([&] { c.merge_file(path); }).find(path), std::string::npos);
}

TEST(ConfigMergeFile, IntegerAcceptedWhereADoubleIsExpected) {
    TempDir dir;
    Config c = sft();
    c.merge_file(dir.write("lr.yaml", "train:\n  lr: 1\n  grad_clip: 0\n"));
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 1.0);
    EXPECT_DOUBLE_EQ(c.get_double("train.grad_clip"), 0.0);
}

TEST(ConfigMergeFile, ScientificNotationAndNegativeNumbers) {
    TempDir dir;
    Config c = sft();
    c.merge_file(dir.write("num.yaml", "train:\n  lr: 5e-4\n  eps: 1.5e-7\n"));
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 5e-4);
    EXPECT_DOUBLE_EQ(c.get_double("train.eps"), 1.5e-7);
    // A negative number where the key's interval allows one (SFT's numbers are all >= 0).
    Config rl(kRlConfigDefaults);
    rl.merge_file(dir.write("neg.yaml", "rewards:\n  format: -1.5\n"));
    EXPECT_DOUBLE_EQ(rl.get_double("rewards.format"), -1.5);
}

// ---- set ------------------------------------------------------------------------------------

TEST(ConfigSet, OverridesLeafValues) {
    Config c = sft();
    c.set("train.lr=0.5");
    c.set("model.arch.hidden_size=64");
    c.set("seed=42");
    c.set("run.name=my-run");
    c.set("model.arch.tie_word_embeddings=false");
    c.set("train.steps=7");
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 0.5);
    EXPECT_EQ(c.get_int("model.arch.hidden_size"), 64);
    EXPECT_EQ(c.get_int("seed"), 42);
    EXPECT_EQ(c.get_string("run.name"), "my-run");
    EXPECT_FALSE(c.get_bool("model.arch.tie_word_embeddings"));
    EXPECT_EQ(c.get_int("train.steps"), 7);
    // Everything else stays.
    EXPECT_EQ(c.get_int("model.arch.intermediate_size"), 512);
}

TEST(ConfigSet, ValueMayContainEqualsAndColonsWithoutSpaces) {
    Config c = sft();
    c.set("data.train=/data/a=b.jsonl");
    c.set("data.eval=builtin:addition");
    EXPECT_EQ(c.get_string("data.train"), "/data/a=b.jsonl");
    EXPECT_EQ(c.get_string("data.eval"), "builtin:addition");
}

TEST(ConfigSet, QuotedEmptyStringClearsAString) {
    Config c = sft();
    c.set("data.eval=\"\"");
    EXPECT_EQ(c.get_string("data.eval"), "");
}

TEST(ConfigSet, UnknownKeyErrorsNamingIt) {
    Config c = sft();
    EXPECT_NE(error_of([&] { c.set("train.stpes=3"); }).find("train.stpes"), std::string::npos);
    EXPECT_NE(error_of([&] { c.set("model.arch.hidden=3"); }).find("model.arch.hidden"),
              std::string::npos);
    EXPECT_NE(error_of([&] { c.set("bogus=1"); }).find("bogus"), std::string::npos);
    // A leaf cannot be descended into.
    EXPECT_NE(error_of([&] { c.set("train.steps.x=1"); }).find("train.steps"), std::string::npos);
    EXPECT_EQ(c.get_int("train.steps"), 1000);
}

TEST(ConfigSet, WrongTypeErrorsNamingTheKey) {
    Config c = sft();
    EXPECT_NE(error_of([&] { c.set("train.steps=abc"); }).find("train.steps"), std::string::npos);
    EXPECT_NE(error_of([&] { c.set("train.steps=[1,2]"); }).find("train.steps"), std::string::npos);
    EXPECT_NE(error_of([&] { c.set("train.lr=fast"); }).find("train.lr"), std::string::npos);
    // Setting a whole section to a scalar.
    EXPECT_NE(error_of([&] { c.set("train=1"); }).find("train"), std::string::npos);
    EXPECT_EQ(c.get_int("train.steps"), 1000);
    EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 1.0e-3);
}

TEST(ConfigSet, MissingEqualsSignErrors) {
    Config c = sft();
    const std::string msg = error_of([&] { c.set("train.lr"); });
    EXPECT_NE(msg.find("train.lr"), std::string::npos) << msg;
    EXPECT_NE(msg.find("key=value"), std::string::npos) << msg;
    EXPECT_NE(error_of([&] { c.set("=0.5"); }).find("key=value"), std::string::npos);
    EXPECT_NE(error_of([&] { c.set(""); }).find("key=value"), std::string::npos);
}

// ---- dump / diff ----------------------------------------------------------------------------

TEST(ConfigDump, DefaultsRoundTrip) {
    const Config a = sft();
    Config b = sft();
    b.merge_text(a.dump(), "saved config.yaml");
    EXPECT_TRUE(Config::diff(a, b).empty());
}

TEST(ConfigDump, ModifiedConfigRoundTripsIntoAFreshOne) {
    Config a = sft();
    a.set("train.lr=0.5");
    a.set("model.arch.hidden_size=64");
    a.set("run.name=round trip");
    a.set("data.eval=\"\"");
    a.set("model.path=\"/ckpt/step 10\"");
    a.set("model.arch.tie_word_embeddings=false");
    Config b = sft();
    b.merge_text(a.dump(), "saved config.yaml");
    EXPECT_TRUE(Config::diff(a, b).empty()) << a.dump();
    EXPECT_DOUBLE_EQ(b.get_double("train.lr"), 0.5);
    EXPECT_EQ(b.get_int("model.arch.hidden_size"), 64);
    EXPECT_EQ(b.get_string("run.name"), "round trip");
    EXPECT_EQ(b.get_string("data.eval"), "");
    EXPECT_EQ(b.get_string("model.path"), "/ckpt/step 10");
    EXPECT_FALSE(b.get_bool("model.arch.tie_word_embeddings"));
    EXPECT_EQ(b.get_string("data.train"), "builtin:countdown_lite");
    // And the dump of the reloaded config is the same text.
    EXPECT_EQ(a.dump(), b.dump());
}

TEST(ConfigDiff, ListsExactlyTheChangedKeys) {
    const Config base = sft();
    Config c = sft();
    EXPECT_TRUE(Config::diff(base, c).empty());
    c.set("train.lr=0.5");
    c.set("model.arch.hidden_size=64");
    c.set("run.name=other");
    EXPECT_EQ(sorted(Config::diff(base, c)),
              (std::vector<std::string>{"model.arch.hidden_size", "run.name", "train.lr"}));
    EXPECT_EQ(sorted(Config::diff(c, base)),
              (std::vector<std::string>{"model.arch.hidden_size", "run.name", "train.lr"}));
}

TEST(ConfigDiff, SettingTheDefaultValueIsNoChange) {
    const Config base = sft();
    Config c = sft();
    c.set("train.steps=1000");
    c.set("train.schedule=cosine");
    c.set("model.path=\"\"");
    EXPECT_TRUE(Config::diff(base, c).empty());
}

// ---- a schema of our own --------------------------------------------------------------------

constexpr const char* kSmallSchema = R"(
a: 1
b:
  c: hello
  d: 2.5
  e: false
  f:
    g: x
n: ~
)";

TEST(ConfigSmallSchema, DefaultsAndNestedSections) {
    const Config c(kSmallSchema);
    EXPECT_EQ(c.get_int("a"), 1);
    EXPECT_EQ(c.get_string("b.c"), "hello");
    EXPECT_DOUBLE_EQ(c.get_double("b.d"), 2.5);
    EXPECT_FALSE(c.get_bool("b.e"));
    EXPECT_EQ(c.get_string("b.f.g"), "x");
    EXPECT_EQ(c.get_string("n"), "");
}

TEST(ConfigSmallSchema, MergeTextAndSet) {
    Config c(kSmallSchema);
    c.merge_text("b:\n  d: 7\n  f:\n    g: y\n", "inline");
    c.set("a=-3");
    c.set("b.e=true");
    EXPECT_EQ(c.get_int("a"), -3);
    EXPECT_DOUBLE_EQ(c.get_double("b.d"), 7.0);
    EXPECT_TRUE(c.get_bool("b.e"));
    EXPECT_EQ(c.get_string("b.f.g"), "y");
    EXPECT_EQ(c.get_string("b.c"), "hello");
    EXPECT_EQ(sorted(Config::diff(Config(kSmallSchema), c)),
              (std::vector<std::string>{"a", "b.d", "b.e", "b.f.g"}));
}

TEST(ConfigSmallSchema, StringKeyAcceptsAnyScalar) {
    Config c(kSmallSchema);
    c.set("b.c=42");
    EXPECT_EQ(c.get_string("b.c"), "42");
    c.set("b.c=true");
    EXPECT_EQ(c.get_string("b.c"), "true");
    EXPECT_NE(error_of([&] { c.set("b.c=[1, 2]"); }).find("b.c"), std::string::npos);
}

TEST(ConfigSmallSchema, NullDefaultAcceptsAStringOnly) {
    Config c(kSmallSchema);
    c.set("n=somewhere");
    EXPECT_EQ(c.get_string("n"), "somewhere");
    EXPECT_NE(error_of([&] { c.set("n=5"); }).find("'n'"), std::string::npos);
}

TEST(ConfigSmallSchema, BoolOnlyTrueOrFalse) {
    Config c(kSmallSchema);
    EXPECT_NE(error_of([&] { c.set("b.e=yes"); }).find("b.e"), std::string::npos);
    EXPECT_NE(error_of([&] { c.set("b.e=0"); }).find("b.e"), std::string::npos);
    EXPECT_FALSE(c.get_bool("b.e"));
}

TEST(ConfigSmallSchema, ErrorsUseTheGivenName) {
    Config c(kSmallSchema);
    const std::string msg = error_of([&] { c.merge_text("a: 1\nb:\n  z: 1\n", "saved.yaml"); });
    EXPECT_NE(msg.find("saved.yaml:3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'b.z'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace crucible

namespace crucible {
namespace {

TEST(ConfigSet, ValueWithANewlineCannotSetOtherKeys) {
    Config c(kSftConfigDefaults);
    EXPECT_THROW(c.set("train.lr=0.5\nseed: 9"), Error);
    EXPECT_EQ(c.get_int("seed"), 1);
}

}  // namespace
}  // namespace crucible

// ---- ranges: every number of a schema has its interval -------------------------------------

namespace crucible {
namespace {

TEST(ConfigRanges, EveryNumericKeyOfTheSftAndRlSchemasHasAnInterval) {
    EXPECT_EQ(Config(kSftConfigDefaults).unranged_keys(), std::vector<std::string>{});
    EXPECT_EQ(Config(kRlConfigDefaults).unranged_keys(), std::vector<std::string>{});
}

// The issue's cases (beta2: 5, warmup_steps: -10, checkpoint_every: -1) and a few siblings:
// refused as the config merges, naming file:line, the key and the interval.
TEST(ConfigRanges, OutOfRangeNumbersAreRefusedNamingFileLineKeyAndInterval) {
    TempDir dir;
    const fs::path file = dir.write("bad.yaml", "seed: 3\ntrain:\n  lr: 0.01\n  beta2: 5\n");
    Config c = sft();
    std::string e = error_of([&] { c.merge_file(file.string()); });
    EXPECT_NE(e.find(file.string() + ":4"), std::string::npos) << e;
    EXPECT_NE(e.find("'train.beta2'"), std::string::npos) << e;
    EXPECT_NE(e.find("[0, 1)"), std::string::npos) << e;
    EXPECT_NE(e.find("got 5"), std::string::npos) << e;
    for (const char* bad :
         {"train.warmup_steps=-10", "train.checkpoint_every=-1", "train.beta1=1", "train.eps=0",
          "train.lr=-0.001", "train.steps=0", "train.batch_size=-64", "train.log_every=0",
          "model.arch.rms_norm_eps=0", "model.arch.num_hidden_layers=0", "seed=-1"}) {
        Config s = sft();
        e = error_of([&] { s.set(bad); });
        const std::string key = std::string(bad).substr(0, std::string(bad).find('='));
        EXPECT_NE(e.find("'" + key + "' must be in "), std::string::npos) << bad << ": " << e;
    }
    // The value is left as it was.
    Config s = sft();
    EXPECT_THROW(s.set("train.beta2=5"), Error);
    EXPECT_DOUBLE_EQ(s.get_double("train.beta2"), 0.95);
    Config rl(kRlConfigDefaults);
    for (const char* bad : {"algorithm.clip_low=1", "algorithm.clip_high=-0.1", "rollout.top_p=0",
                            "rollout.temperature=0", "algorithm.kl_beta=-1",
                            "train.micro_batch_tokens=0", "task.max_digits=19"}) {
        e = error_of([&] { rl.set(bad); });
        const std::string key = std::string(bad).substr(0, std::string(bad).find('='));
        EXPECT_NE(e.find("'" + key + "' must be in "), std::string::npos) << bad << ": " << e;
    }
}

TEST(ConfigRanges, BoundsAreOpenOrClosedAsWrittenAndInfIsUnbounded) {
    Config c(R"(
x: 0.5    # (0, 1] text after the interval is a comment
n: 3      # [1, inf)
m: -2     # [-5, -1)
free: 7.0 # no interval: any finite number
)");
    c.set("x=1");
    EXPECT_THROW(c.set("x=0"), Error);
    EXPECT_THROW(c.set("x=1.0000001"), Error);
    c.set("x=1e-300");
    c.set("n=1");
    c.set("n=9223372036854775807");
    EXPECT_THROW(c.set("n=0"), Error);
    c.set("m=-5");
    EXPECT_THROW(c.set("m=-1"), Error);
    c.set("free=-1e300");
    EXPECT_EQ(c.unranged_keys(), std::vector<std::string>{"free"});
}

TEST(ConfigRanges, AMalformedIntervalOrADefaultOutsideItIsASchemaError) {
    EXPECT_NE(error_of([] { Config c("a: 1  # [1, x]\n"); }).find("'a'"), std::string::npos);
    EXPECT_NE(error_of([] { Config c("a: 1  # [2, 1]\n"); }).find("'a'"), std::string::npos);
    EXPECT_NE(error_of([] { Config c("a: 1  # [0, 1\n"); }).find("'a'"), std::string::npos);
    const std::string e = error_of([] { Config c("b:\n  a: 5  # [0, 1)\n"); });
    EXPECT_NE(e.find("'b.a'"), std::string::npos) << e;
    EXPECT_NE(e.find("line 2"), std::string::npos) << e;
}

}  // namespace
}  // namespace crucible
