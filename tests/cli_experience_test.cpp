// The researcher's-experience fixes of issue 21 that make results trustworthy: compare says
// when two runs differ in settings that change what a score means and refuses a run with no
// scored sample; eval's prompt mode follows the model and is recorded with its reason; eval
// never writes into a foreign folder; a run folder given as --model means its latest
// checkpoint; typos get "did you mean", `crucible` alone prints help, --version.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/file_io.h"
#include "eval/prompt_mode.h"
#include "eval/results.h"
#include "eval/sample_store.h"
#include "model_util.h"
#include "run/run_folder.h"
#include "serve/http_front.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

struct Cli {
    int rc = 0;
    std::string out, err;
};

Cli run_cli(const TempDir& t, const std::string& args) {
    const fs::path out = t.path() / "cli.out", err = t.path() / "cli.err";
    const std::string cmd =
        std::string(CRUCIBLE_BINARY) + " " + args + " > " + out.string() + " 2> " + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testutil::slurp(out),
            testutil::slurp(err)};
}

TEST(CliExperience, TyposNameTheNearestCommandOrOption) {
    TempDir t;
    Cli c = run_cli(t, "evaluate");
    EXPECT_EQ(c.rc, 2);
    EXPECT_NE(c.err.find("error: unknown command 'evaluate' for 'crucible' (did you mean 'eval'?)"),
              std::string::npos)
        << c.err;
    c = run_cli(t, "evolve runn");
    EXPECT_NE(c.err.find("unknown command 'runn' for 'crucible evolve' (did you mean 'run'?)"),
              std::string::npos)
        << c.err;
    c = run_cli(t, "eval --temprature 0.5");
    EXPECT_NE(c.err.find("unknown option --temprature for 'crucible eval' (did you mean "
                         "--temperature?)"),
              std::string::npos)
        << c.err;
    c = run_cli(t, "");
    EXPECT_EQ(c.rc, 0);
    EXPECT_NE(c.out.find("Usage: crucible"), std::string::npos) << c.out;
    c = run_cli(t, "--version");
    EXPECT_EQ(c.rc, 0);
    EXPECT_EQ(c.out.rfind("crucible ", 0), 0u) << c.out;
}

TEST(CliExperience, TheDefaultPromptModeFollowsHowTheModelWasTrained) {
    TempDir t;
    const auto folder = [&](const std::string& name, const std::string& config_yaml,
                            const std::string& tokenizer_config) {
        const fs::path d = t.path() / name;
        fs::create_directories(d);
        if (!config_yaml.empty()) write_file_durable(d / "config.yaml", config_yaml);
        write_file_durable(d / "tokenizer_config.json", tokenizer_config);
        return d.string();
    };
    const std::string chatml = R"({"chat_template": "{% for m in messages %}...{% endfor %}"})";
    // An RL checkpoint trained raw, though its tokenizer has a template (the demo's case).
    eval::PromptMode m = eval::default_prompt_mode(folder("rl", "task:\n  chat: false\n", chatml));
    EXPECT_FALSE(m.chat);
    EXPECT_NE(m.why.find("task.chat: false"), std::string::npos) << m.why;
    EXPECT_TRUE(eval::default_prompt_mode(folder("rlc", "task:\n  chat: true\n", chatml)).chat);
    // SFT: built-in data is raw; JSONL with "messages" is chat, prompt/completion raw.
    EXPECT_FALSE(
        eval::default_prompt_mode(folder("sft", "data:\n  train: builtin:countdown\n", chatml))
            .chat);
    const fs::path msgs = t.write("m.jsonl", R"({"messages": [{"role": "user", "content": "a"}]})"
                                             "\n");
    EXPECT_TRUE(
        eval::default_prompt_mode(folder("sftm", "data:\n  train: " + msgs.string() + "\n", chatml))
            .chat);
    const fs::path pc = t.write("p.jsonl", "\n{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    EXPECT_FALSE(
        eval::default_prompt_mode(folder("sftp", "data:\n  train: " + pc.string() + "\n", chatml))
            .chat);
    // Any other folder: its tokenizer's template decides.
    EXPECT_TRUE(eval::default_prompt_mode(folder("hf", "", chatml)).chat);
    m = eval::default_prompt_mode(folder("base", "", "{}"));
    EXPECT_FALSE(m.chat);
    EXPECT_EQ(m.why, "the folder's tokenizer has no chat template");
}

TEST(CliExperience, ARunFolderMeansItsLatestCompleteCheckpoint) {
    TempDir t;
    const fs::path run = t.path() / "run";
    testutil::write_byte_model(run / "checkpoints" / "step-4", 32);
    write_file_durable(run / "checkpoints" / "step-4" / "trainer_state.json", "{}");
    fs::create_directories(run / "checkpoints" / "step-9");  // unpublished: no state file
    EXPECT_EQ(resolve_model_dir(run), run / "checkpoints" / "step-4");
    EXPECT_EQ(resolve_model_dir(run / "checkpoints" / "step-4"), run / "checkpoints" / "step-4");
    EXPECT_EQ(resolve_model_dir(t.path() / "none"), t.path() / "none");
}

TEST(CliExperience, EvalWritesOnlyIntoEvalRunsAndRecordsItsMode) {
    TempDir t;
    const fs::path model = t.path() / "model";
    testutil::write_byte_model(model, 64);
    const fs::path data = t.write("d.jsonl", R"({"id": "a", "prompt": "1+1=", "answer": "2"})"
                                             "\n");
    // A foreign, non-empty folder (a training run's) is refused before any work.
    const fs::path foreign = t.path() / "train-run";
    fs::create_directories(foreign);
    write_file_durable(foreign / "metrics.jsonl", "{}\n");
    Cli c = run_cli(t, "eval --model " + model.string() + " --data " + data.string() +
                           " --max-tokens 4 --out " + foreign.string());
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.err.find("is not an eval run (no samples.sqlite)"), std::string::npos) << c.err;
    EXPECT_FALSE(fs::exists(foreign / "samples.sqlite"));
    // A new folder: the mode and its reason are printed and recorded in results.json.
    const fs::path run = t.path() / "eval";
    c = run_cli(t, "eval --model " + model.string() + " --data " + data.string() +
                       " --max-tokens 4 --verifier exact --out " + run.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    EXPECT_NE(c.err.find("eval: chat-template prompts (the folder's tokenizer has a chat "
                         "template; --raw to change)"),
              std::string::npos)
        << c.err;
    const json r = json::parse(testutil::slurp(run / "results.json"));
    EXPECT_EQ(r["settings"]["chat"], "true");
    EXPECT_EQ(r["settings"]["chat_reason"], "the folder's tokenizer has a chat template");
    EXPECT_EQ(r["settings"]["max_tokens"], "4");
}

// Two runs that differ in the prompt mode: compare warns at the top and bottom and lists the
// setting in its JSON; a run without any scored sample is refused.
TEST(CliExperience, CompareSaysWhenSettingsDifferAndRefusesARunWithoutScores) {
    TempDir t;
    const auto make_run = [&](const std::string& name, const std::string& chat,
                              std::optional<double> score,
                              const std::string& data_hash = "0123456789abcdef") {
        const fs::path dir = t.path() / name;
        eval::SampleStore s(dir.string());
        eval::EvalItem item;
        item.id = "a";
        item.answer = "1";
        item.verifier = "exact";
        eval::EvalItem item2 = item;
        item2.id = "b";
        s.put_items({item, item2});
        s.check_settings({{"chat", chat}, {"temperature", "1"}, {"max_tokens", "16"}});
        s.set_setting("k", "1");
        s.set_setting("data", "items.jsonl");
        s.set_setting("data_hash", data_hash);
        for (const char* id : {"a", "b"}) {
            eval::SampleRecord r;
            r.item_id = id;
            r.score = score;
            if (!score) r.error = "generation failed";
            s.put(r);
        }
        return dir;
    };
    const fs::path chat = make_run("chat", "true", 0.0);
    const fs::path raw = make_run("raw", "false", 1.0);
    const json c = eval::compare_runs(eval::load_run(chat.string()), eval::load_run(raw.string()),
                                      eval::CompareOptions{});
    ASSERT_EQ(c["settings_differ"].size(), 1u);
    EXPECT_EQ(c["settings_differ"][0], (json{{"setting", "chat"}, {"a", "true"}, {"b", "false"}}));
    const std::string text = eval::comparison_text(c);
    EXPECT_EQ(text.rfind("WARNING: the runs differ in settings", 0), 0u) << text;
    EXPECT_NE(text.find("  chat: A true, B false"), std::string::npos) << text;
    const fs::path failed = make_run("failed", "true", std::nullopt);
    const std::string err = testutil::error_of([&] {
        eval::compare_runs(eval::load_run(chat.string()), eval::load_run(failed.string()), {});
    });
    EXPECT_NE(err.find("no scored sample on the shared items (2 failed"), std::string::npos) << err;
    // Same settings: no warning.
    const fs::path chat2 = make_run("chat2", "true", 1.0);
    const json same = eval::compare_runs(eval::load_run(chat.string()),
                                         eval::load_run(chat2.string()), eval::CompareOptions{});
    EXPECT_TRUE(same["settings_differ"].empty());
    EXPECT_EQ(eval::comparison_text(same).find("WARNING"), std::string::npos);
    // The same file name with other contents (edited between the runs) is a difference.
    const fs::path edited = make_run("edited", "true", 1.0, "fedcba9876543210");
    const json e = eval::compare_runs(eval::load_run(chat.string()),
                                      eval::load_run(edited.string()), eval::CompareOptions{});
    ASSERT_EQ(e["settings_differ"].size(), 1u) << e.dump();
    EXPECT_EQ(e["settings_differ"][0]["setting"], "data_hash");
}

// `serve` says why it cannot listen: the resolver's message, or the bind error.
TEST(CliExperience, ListeningFailuresSayWhy) {
    auto error_body = [](int, const std::string& m) { return m; };
    HttpFront first(HttpLimits{}, error_body);
    const int port = first.bind_and_listen("127.0.0.1", 0);
    ASSERT_GT(port, 0);
    HttpFront second(HttpLimits{}, error_body);
    std::string why;
    EXPECT_EQ(second.bind_and_listen("127.0.0.1", port, &why), -1);
    EXPECT_EQ(why, "bind: Address already in use");
    HttpFront third(HttpLimits{}, error_body);
    EXPECT_EQ(third.bind_and_listen("no-such-host.invalid", 0, &why), -1);
    EXPECT_EQ(why.rfind("cannot resolve the host: ", 0), 0u) << why;
}

TEST(CliExperience, ResumingARunWithTheOtherTrainerSaysWhichItIs) {
    TempDir t;
    const fs::path rl = t.path() / "runs" / "rl-x";
    fs::create_directories(rl);
    write_file_durable(rl / "config.yaml",
                       "run:\n  name: rl-x\n  dir: runs\ntask:\n  name: countdown\n"
                       "algorithm:\n  advantage: grpo\n");
    Cli c = run_cli(t, "train sft --resume " + rl.string());
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.err.find("this is an RL run; resume it with crucible train rl --resume"),
              std::string::npos)
        << c.err;
    EXPECT_EQ(c.err.find("unknown key"), std::string::npos) << c.err;
    const fs::path sft = t.path() / "runs" / "sft-x";
    fs::create_directories(sft);
    write_file_durable(sft / "config.yaml",
                       "run:\n  name: sft-x\n  dir: runs\ndata:\n  "
                       "train: builtin:countdown\n");
    c = run_cli(t, "train rl --resume " + sft.string());
    EXPECT_NE(c.err.find("this is an SFT run; resume it with crucible train sft --resume"),
              std::string::npos)
        << c.err;
}

TEST(CliExperience, InputIsDataEverywhereWithTheOldNamesKept) {
    TempDir t;
    const fs::path data = t.path() / "pairs.jsonl";
    write_file_durable(data, "{\"gold\": \"2\", \"pred\": \"\\\\boxed{2}\"}\n");
    for (const char* flag : {"--data", "--jsonl"}) {
        const Cli c = run_cli(t, std::string("verify ") + flag + " " + data.string());
        EXPECT_EQ(c.rc, 0) << flag << c.err;
        EXPECT_NE(c.out.find("\"equal\":true"), std::string::npos) << flag << c.out;
    }
    const Cli help = run_cli(t, "generate --help");
    EXPECT_NE(help.out.find("--data,--in"), std::string::npos) << help.out;
}

// `--json` alone prints one JSON object instead of the table (what bench/ scripts read);
// `--json FILE` prints the table and writes the object to FILE, as compare's --json does.
TEST(CliExperience, BenchJsonIsAloneStdoutOrAFile) {
    TempDir t;
    const std::string bench = "bench linear --config small --rows 1 --reps 1";
    Cli c = run_cli(t, bench + " --json");
    ASSERT_EQ(c.rc, 0) << c.err;
    const json alone = json::parse(c.out);
    EXPECT_EQ(alone["config"], "small");
    const fs::path file = t.path() / "bench.json";
    c = run_cli(t, bench + " --json " + file.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    EXPECT_NE(c.out.find("rows    1 |"), std::string::npos) << c.out;  // the table
    const json written = json::parse(testutil::slurp(file));
    EXPECT_EQ(written["config"], "small");
    EXPECT_EQ(written["rows"].size(), alone["rows"].size());
}

// Judge settings have one set of names: eval's --judge-* also work in rubric score (which keeps
// its plain names), and mean the same thing there.
TEST(CliExperience, JudgeFlagsAreNamedAlikeInEvalAndRubricScore) {
    TempDir t;
    const fs::path data = t.path() / "r.jsonl";
    write_file_durable(data,
                       "{\"id\": \"q\", \"prompt\": \"hi\", \"response\": \"see a doctor\", "
                       "\"rubric\": [{\"kind\": \"contains\", \"value\": \"doctor\", "
                       "\"points\": 3}]}\n");
    for (const std::string flags :
         {"--judge-temperature 0.3 --judge-max-tokens 9 --judge-timeout-s 5 --judge-retries 1",
          "--temperature 0.3 --max-tokens 9 --timeout-s 5 --retries 1"}) {
        const Cli c = run_cli(t, "rubric score --data " + data.string() + " --out " +
                                     (t.path() / "o.jsonl").string() + " " + flags);
        EXPECT_EQ(c.rc, 0) << flags << c.err;
        EXPECT_NE(testutil::slurp(t.path() / "o.jsonl").find("\"q\""), std::string::npos);
    }
}

// Every --help shows each option's default (CLI11 captures them for every subcommand), flags
// print none, and an option whose default comes from elsewhere says where.
TEST(CliExperience, HelpShowsDefaults) {
    TempDir t;
    Cli c = run_cli(t, "bench generate --help");
    EXPECT_NE(c.out.find("--new-tokens INT=32"), std::string::npos) << c.out;
    c = run_cli(t, "bench train --help");
    EXPECT_NE(c.out.find("--steps INT=5"), std::string::npos) << c.out;
    EXPECT_EQ(c.out.find("{false}"), std::string::npos) << c.out;
    c = run_cli(t, "evolve run --help");
    EXPECT_NE(c.out.find("(default: problem.yaml's evolve.iterations, else 100)"),
              std::string::npos)
        << c.out;
    EXPECT_EQ(c.out.find("=-1"), std::string::npos) << c.out;
}

// The benchmarks run on any model folder: timed in the process (the load reported apart), with
// the peak resident memory; a prompt that does not fit the folder's context is refused.
TEST(CliExperience, BenchesRunOnAModelFolder) {
    TempDir t;
    const fs::path dir = t.path() / "m";
    const std::unique_ptr<Model> model = testutil::write_byte_model(dir, 64, 3);
    const fs::path g = t.path() / "g.json", tr = t.path() / "t.json";
    Cli c = run_cli(t, "bench generate --model " + dir.string() +
                           " --batches 1,2 --new-tokens 4 --prompt-tokens 8 --json " + g.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    const json gen = json::parse(testutil::slurp(g))["model"];
    EXPECT_EQ(gen["params"], model->num_params());
    EXPECT_GT(gen["decode_tokens_per_s_batch_2"].get<double>(), 0.0);
    EXPECT_GT(gen["prefill_tokens_per_s"].get<double>(), 0.0);
    EXPECT_GE(
        gen.value("peak_resident_mib", gen.value("peak_resident_mib_with_bandwidth_buffers", 0.0)),
        gen["resident_mib_after_load"].get<double>());
    // Several dtypes take turns on the same requests: a row each and the ratios of every round.
    const fs::path g2 = t.path() / "g2.json";
    c = run_cli(t, "bench generate --model " + dir.string() +
                       " --batches 1 --new-tokens 4 --prompt-tokens 8 --decode-only --dtype "
                       "float32,bfloat16 --rounds 3 --json " +
                       g2.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    const json both = json::parse(testutil::slurp(g2))["model"];
    for (const char* dt : {"float32", "bfloat16"}) {
        EXPECT_EQ(both["by_dtype"][dt]["dtype"], dt);
        EXPECT_GT(both["by_dtype"][dt]["decode_tokens_per_s_batch_1"].get<double>(), 0.0);
    }
    const json ratio = both["decode_ratios"]["bfloat16_over_float32"]["batch_1"];
    ASSERT_EQ(ratio["rounds"].size(), 3u);
    std::vector<double> rounds = ratio["rounds"].get<std::vector<double>>();
    std::sort(rounds.begin(), rounds.end());
    EXPECT_EQ(ratio["median_of_rounds"].get<double>(), rounds[1]);
    c = run_cli(t, "bench generate --model " + dir.string() +
                       " --batches 1 --new-tokens 4 --prompt-tokens 8 --dtype float32,float32");
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.err.find("--dtype names float32 twice"), std::string::npos) << c.err;
    c = run_cli(t, "bench train --model " + dir.string() +
                       " --no-torch --batch 2 --seq 200 --steps 1 --warmup 0 --json " +
                       tr.string());
    ASSERT_EQ(c.rc, 0) << c.err;
    const json train = json::parse(testutil::slurp(tr))["model"];
    EXPECT_EQ(train["tokens_per_step"], 2 * 64);  // --seq capped by the context
    EXPECT_GT(train["tokens_per_s"].get<double>(), 0.0);
    c = run_cli(t, "bench generate --model " + dir.string() + " --prompt-tokens 60 --new-tokens 8");
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.err.find("exceed the model's context of 64"), std::string::npos) << c.err;
}

// SFT's built-in data has RL's task names; the old SFT name is the same data for one release.
TEST(CliExperience, BuiltInTasksHaveOneNameInSftAndRl) {
    TempDir t;
    const Cli c = run_cli(t, "train sft --print-config");
    EXPECT_NE(c.out.find("train: builtin:countdown_lite"), std::string::npos) << c.out;
    const Cli bad =
        run_cli(t, "train sft --set data.train=builtin:nope --set run.dir=" + t.path().string());
    EXPECT_NE(bad.err.find("(known: builtin:countdown_lite, builtin:addition)"), std::string::npos)
        << bad.err;
}

}  // namespace
}  // namespace crucible
