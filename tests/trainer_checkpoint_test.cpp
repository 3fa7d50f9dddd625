// run/trainer_checkpoint: the run folder both trainers open and the trainer state they read.
// (Writing and resuming whole checkpoints is tested through the trainers: SftResume.*,
// RlTrainer.ResumeAfterAStopIsBitIdentical.)
#include "run/trainer_checkpoint.h"

#include <gtest/gtest.h>

#include "core/file_io.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using testutil::error_of;
using testutil::TempDir;

const char* kSchema = "a: 1\nb: x\n";

TEST(TrainerCheckpoint, ANewRunWritesItsConfigAndAResumeNeedsTheSameOne) {
    TempDir dir;
    const fs::path run = dir.path() / "run";
    Config config(kSchema);
    config.set("a=2");
    EXPECT_EQ(open_run_folder(run, config, kSchema, false), -1);
    EXPECT_TRUE(fs::is_directory(run / "checkpoints"));
    EXPECT_EQ(read_file(run / "config.yaml"), config.dump());

    // Nothing to resume until a checkpoint is published (trainer_state.json written last).
    EXPECT_EQ(error_of([&] { open_run_folder(run, config, kSchema, true); }),
              run.string() + ": nothing to resume (no config.yaml or checkpoint)");
    fs::create_directories(run / "checkpoints" / "step-3");
    write_file_durable(run / "checkpoints" / "step-3" / "trainer_state.json", "{}");
    EXPECT_EQ(open_run_folder(run, config, kSchema, true), 3);

    Config changed(kSchema);
    changed.set("a=5");
    changed.set("b=y");
    EXPECT_EQ(error_of([&] { open_run_folder(run, changed, kSchema, true); }),
              (run / "config.yaml").string() +
                  ": --resume needs the run's own config; these keys differ: a b");
    // A new run never writes over a folder that holds checkpoints.
    EXPECT_NE(error_of([&] {
                  open_run_folder(run, config, kSchema, false);
              }).find("already holds checkpoints; pass --resume"),
              std::string::npos);
}

TEST(TrainerCheckpoint, TheStateMustBeAnObjectOfTheFormatWithIntegerFields) {
    TempDir dir;
    const fs::path state = dir.path() / "trainer_state.json";
    const auto read = [&] {
        return read_trainer_state(dir.path(), "crucible-x-state-1", {"step", "cursor"}, "X");
    };
    const std::string not_state = state.string() + ": not a Crucible X trainer state";
    write_file_durable(state, R"({"format": "crucible-x-state-1", "step": 4, "cursor": 9})");
    EXPECT_EQ(read()["cursor"], 9);
    write_file_durable(state, "{\"format\": ");
    EXPECT_EQ(error_of(read).rfind(state.string() + ": not valid JSON: ", 0), 0u);
    write_file_durable(state, "[1, 2]");
    EXPECT_EQ(error_of(read), not_state);
    write_file_durable(state, R"({"format": "crucible-y-state-1", "step": 4, "cursor": 9})");
    EXPECT_EQ(error_of(read), not_state);
    write_file_durable(state, R"({"format": "crucible-x-state-1", "step": 4})");
    EXPECT_EQ(error_of(read), not_state);
    write_file_durable(state, R"({"format": "crucible-x-state-1", "step": 4.5, "cursor": 9})");
    EXPECT_EQ(error_of(read), not_state);
}

}  // namespace
}  // namespace crucible
