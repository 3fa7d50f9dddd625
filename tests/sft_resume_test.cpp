// Exact resumption: a run interrupted between steps and resumed from its last checkpoint ends
// with byte-identical weights and optimizer state to an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir =
        fs::temp_directory_path() / ("crucible_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

// A tiny model and dataset so that a few steps take milliseconds.
std::vector<std::string> tiny_overrides(const fs::path& dir, const std::string& name) {
    return {"run.dir=" + dir.string(),
            "run.name=" + name,
            "model.arch.hidden_size=32",
            "model.arch.intermediate_size=48",
            "model.arch.num_hidden_layers=2",
            "model.arch.num_attention_heads=4",
            "model.arch.num_key_value_heads=2",
            "data.builtin_train_examples=300",
            "data.builtin_eval_examples=16",
            "train.batch_size=8",
            "train.grad_accum=2",
            "train.warmup_steps=2",
            "train.eval_every=0",
            "train.eval_generate=0",
            "train.log_every=1000"};
}

Config tiny_config(const fs::path& dir, const std::string& name, int steps, int every,
                   const std::string& dtype = "float32") {
    Config c(kSftConfigDefaults);
    for (const std::string& s : tiny_overrides(dir, name)) c.set(s);
    c.set("train.dtype=" + dtype);
    c.set("train.steps=" + std::to_string(steps));
    c.set("train.checkpoint_every=" + std::to_string(every));
    return c;
}

// In both matmul precisions: a bfloat16 run's bf16 copy is re-derived from the checkpoint's fp32
// master weights, the same copy the uninterrupted run had.
TEST(SftResume, InterruptedAndResumedRunMatchesUninterruptedByteForByte) {
    const fs::path dir = fresh_dir("resume");
    std::ostringstream log;
    for (const std::string dtype : {"float32", "bfloat16"}) {
        const fs::path a = dir / ("a-" + dtype), b = dir / ("b-" + dtype);
        {
            SftTrainer straight(tiny_config(a, "run", 9, 3, dtype), false, log);
            straight.run();
        }
        {
            SftTrainer first(tiny_config(b, "run", 9, 3, dtype), false, log);
            first.run(5);  // stops after step 5; the last checkpoint is step 3
            EXPECT_EQ(first.step(), 5);
        }  // everything in memory is gone, as after a kill
        SftTrainer resumed(tiny_config(b, "run", 9, 3, dtype), true, log);
        EXPECT_EQ(resumed.step(), 3);
        resumed.run();
        for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
            const std::string x = read_file(a / "run/checkpoints/step-9" / file);
            const std::string y = read_file(b / "run/checkpoints/step-9" / file);
            EXPECT_TRUE(x == y) << dtype << ": " << file << " differs after resume";
        }
        // The resumed run trained: its weights moved away from the step-3 checkpoint.
        EXPECT_NE(read_file(b / "run/checkpoints/step-3/model.safetensors"),
                  read_file(b / "run/checkpoints/step-9/model.safetensors"));
    }
    // The precision took effect: the two dtypes trained to different weights.
    EXPECT_NE(read_file(dir / "a-float32/run/checkpoints/step-9/model.safetensors"),
              read_file(dir / "a-bfloat16/run/checkpoints/step-9/model.safetensors"));
    fs::remove_all(dir);
}

TEST(SftResume, RefusesToOverwriteOrToResumeWithAnotherConfig) {
    const fs::path dir = fresh_dir("refuse");
    std::ostringstream log;
    {
        SftTrainer t(tiny_config(dir, "run", 2, 1), false, log);
        t.run();
    }
    const std::string before = read_file(dir / "run/checkpoints/step-2/model.safetensors");
    EXPECT_THROW(SftTrainer(tiny_config(dir, "run", 2, 1), false, log), Error);
    Config changed = tiny_config(dir, "run", 2, 1);
    changed.set("train.lr=0.5");
    try {
        SftTrainer t(changed, true, log);
        FAIL() << "resume with a changed config must fail";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("train.lr"), std::string::npos) << e.what();
    }
    EXPECT_EQ(before, read_file(dir / "run/checkpoints/step-2/model.safetensors"));
    fs::remove_all(dir);
}

// Runs the real binary, SIGKILLs it as soon as a mid-run checkpoint appears, resumes it with
// --resume, and compares the final checkpoint with an uninterrupted run's.
TEST(SftResume, KilledProcessResumesBitIdentically) {
    const fs::path dir = fresh_dir("kill");
    const int steps = 60;
    auto args_for = [&](const std::string& name, bool resume) {
        std::vector<std::string> args = {CRUCIBLE_BINARY, "train", "sft"};
        if (resume) {
            // The run's saved config.yaml is its config; nothing else is needed.
            args.push_back("--resume");
            args.push_back((dir / name).string());
            return args;
        }
        auto overrides = tiny_overrides(dir, name);
        overrides.push_back("train.steps=" + std::to_string(steps));
        overrides.push_back("train.checkpoint_every=4");
        overrides.push_back("model.arch.hidden_size=64");
        overrides.push_back("model.arch.intermediate_size=128");
        for (const std::string& o : overrides) {
            args.push_back("--set");
            args.push_back(o);
        }
        return args;
    };
    auto spawn = [](const std::vector<std::string>& args) {
        const pid_t pid = fork();
        if (pid == 0) {
            std::vector<char*> argv;
            for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            freopen("/dev/null", "w", stdout);
            execv(argv[0], argv.data());
            _exit(127);
        }
        return pid;
    };
    auto wait_ok = [](pid_t pid) {
        int status = 0;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    };
    ASSERT_TRUE(wait_ok(spawn(args_for("straight", false))));

    const pid_t victim = spawn(args_for("killed", false));
    const fs::path ckpts = dir / "killed/checkpoints";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(ckpts / "step-8/trainer_state.json") &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    kill(victim, SIGKILL);
    int status = 0;
    waitpid(victim, &status, 0);
    if (fs::exists(ckpts / ("step-" + std::to_string(steps)))) {
        GTEST_SKIP() << "the run finished before it could be killed";
    }
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run was not killed mid-way";
    ASSERT_TRUE(wait_ok(spawn(args_for("killed", true))));
    const std::string last = "step-" + std::to_string(steps);
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
        EXPECT_TRUE(read_file(dir / "straight/checkpoints" / last / file) ==
                    read_file(ckpts / last / file))
            << file << " differs after kill and resume";
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace crucible
