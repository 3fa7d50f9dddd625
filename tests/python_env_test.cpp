// The python environment (env/python_env.h): the model's code runs in the sandbox and its
// output is the observation; a failing program, a hanging one (killed at the limit, the
// episode going on), one that prints too much, one that looks for the host's files, malformed
// calls, a tool that throws, and the RL config's python keys.
#include "env/python_env.h"

#include <gtest/gtest.h>

#include <string>

#include "core/config.h"
#include "rl/episodes.h"
#include "rl/rl_config.h"
#include "rl/task.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

using env::PythonEnvironment;
using env::PythonEnvOptions;
using env::StepResult;
using env::Turn;

Turn turn_of(const std::string& text) {
    Turn t;
    t.text = text;
    for (unsigned char c : text) t.ids.push_back(c);
    return t;
}

std::string call(const std::string& code) {
    return "<tool_call>" +
           nlohmann::json{{"name", "python"}, {"arguments", {{"code", code}}}}.dump() +
           "</tool_call>";
}

struct Py {
    std::shared_ptr<PythonEnvironment> env;
    explicit Py(PythonEnvOptions o = {}) {
        env = std::make_shared<PythonEnvironment>(
            o, [](const std::string&) { return env::Verdict{}; }, std::vector<std::string>{});
        env::Item item;
        item.prompt = "Q";
        env->reset(item);
    }
    StepResult run(const std::string& code) { return env->step(turn_of(call(code))); }
};

TEST(PythonEnvironment, TheProgramsOutputIsTheObservation) {
    Py p;
    const StepResult r = p.run("print(sum(range(10)))");
    EXPECT_FALSE(r.done);
    EXPECT_EQ(*r.observation, "\n<tool_response>\n45\n</tool_response>\n");
    EXPECT_EQ(r.info["tool"], "python");
    EXPECT_EQ(r.info["exit_code"], 0);
    EXPECT_FALSE(r.info.contains("tool_error"));
    // Exceptions: the traceback's last line and the exit status reach the model.
    const StepResult bad = p.run("print('a')\n1/0");
    EXPECT_FALSE(bad.done);
    EXPECT_EQ(bad.observation->rfind("\n<tool_response>\na\nTraceback", 0), 0u) << *bad.observation;
    EXPECT_NE(bad.observation->find("ZeroDivisionError: division by zero\n[exit code 1]\n"),
              std::string::npos)
        << *bad.observation;
    EXPECT_EQ(p.env->tool_calls(), 2);
}

TEST(PythonEnvironment, AHangingProgramIsKilledAndTheEpisodeGoesOn) {
    PythonEnvOptions o;
    o.timeout_s = 0.5;
    Py p(o);
    const StepResult r = p.run("print('started', flush=True)\nwhile True: pass");
    EXPECT_FALSE(r.done);
    EXPECT_EQ(*r.observation,
              "\n<tool_response>\nstarted\nerror: timed out after 0.5 s\n</tool_response>\n");
    EXPECT_EQ(r.info["tool_error"], "timeout");
    // The next call runs as usual.
    EXPECT_EQ(*p.run("print(7)").observation, "\n<tool_response>\n7\n</tool_response>\n");
}

TEST(PythonEnvironment, OutputIsCutAndTheHostIsOutOfReach) {
    PythonEnvOptions o;
    o.max_output_chars = 10;
    Py p(o);
    EXPECT_EQ(*p.run("print('x' * 100000)").observation,
              "\n<tool_response>\nxxxxxxxxxx\n[output cut at 10 characters]\n</tool_response>\n");
    // The code cannot read the project's files (what scores it) nor reach the network.
    Py q;
    const std::string here = std::filesystem::current_path().string();
    const StepResult files =
        q.run("import os\nprint(os.path.exists(" + nlohmann::json(here).dump() + "))");
    EXPECT_EQ(*files.observation, "\n<tool_response>\nFalse\n</tool_response>\n");
    const StepResult net = q.run(
        "import socket\ns = socket.socket()\ns.settimeout(1)\n"
        "try:\n    s.connect(('1.1.1.1', 53)); print('connected')\n"
        "except OSError as e:\n    print('refused')");
    EXPECT_EQ(*net.observation, "\n<tool_response>\nrefused\n</tool_response>\n");
}

TEST(PythonEnvironment, MalformedCallsAndTheOutputLayout) {
    Py p;
    for (const auto& [args, reason] : std::vector<std::pair<std::string, std::string>>{
             {"{}", "missing \"code\""},
             {"{\"code\": 1}", "\"code\" must be a string"},
             {"{\"code\": \" \"}", "empty code"}}) {
        const StepResult r = p.env->step(
            turn_of("<tool_call>{\"name\": \"python\", \"arguments\": " + args + "}</tool_call>"));
        ASSERT_TRUE(r.info.contains("malformed")) << args;
        EXPECT_NE(r.observation->find(reason), std::string::npos) << *r.observation;
    }
    EXPECT_EQ(p.env->tool_calls(), 0);
    // The layout, worked by hand: stdout, stderr on its own line, the status.
    EXPECT_EQ(env::python_tool_output("out", "err\n", 2, 0, false, 5, 100),
              "out\nerr\n[exit code 2]");
    EXPECT_EQ(env::python_tool_output("", "", 0, 0, false, 5, 100), "(no output)");
    EXPECT_EQ(env::python_tool_output("", "", -1, 9, false, 5, 100), "[killed by signal 9]");
    EXPECT_EQ(env::python_tool_output("héllo", "", 0, 0, false, 5, 2),
              "hé\n[output cut at 2 characters]");
    EXPECT_THROW(PythonEnvironment({4, 0.0, 512, 10}, {}, {}), Error);
}

TEST(PythonEnvironment, TheRlConfigBuildsItWithItsLimits) {
    Config c(kRlConfigDefaults);
    c.set("model.path=m");
    c.set("env.name=python");
    c.set("env.tool_timeout_s=0.5");
    c.set("env.max_output_chars=3");
    EXPECT_THROW(c.set("env.tool_timeout_s=0"), Error);
    const rl::RlConfig r = rl::read_rl_config(c);
    EXPECT_EQ(r.env.name, rl::EnvKind::python);
    const auto e =
        rl::make_environment(r.env, [](const std::string&) { return env::Verdict{}; }, {});
    ASSERT_NE(dynamic_cast<PythonEnvironment*>(e.get()), nullptr);
    env::Item item;
    e->reset(item);
    EXPECT_EQ(*e->step(turn_of(call("print(12345)"))).observation,
              "\n<tool_response>\n123\n[output cut at 3 characters]\n</tool_response>\n");
}

// A tool that fails on every call (as a broken index or a missing sandbox would).
class FailingTool : public env::ToolEnvironment {
  public:
    FailingTool()
        : ToolEnvironment({3, ToolSyntax::hermes, env::ToolEnvOptions::ScoreOn::last_turn},
                          {"python"}, [](const std::string&) { return env::Verdict{}; }, {}) {}

  protected:
    env::ToolOutput run_tool(const ToolCall&, nlohmann::json&) override {
        throw std::runtime_error("index gone");
    }
};

TEST(ToolEnvironment, AToolThatThrowsIsAnErrorObservationCountedInTheEpisode) {
    auto env = std::make_shared<FailingTool>();
    env::Item item;
    item.prompt = "Q";
    env->reset(item);
    const StepResult r = env->step(turn_of(call("1")));
    EXPECT_FALSE(r.done);
    EXPECT_EQ(*r.observation,
              "\n<tool_response>\nerror: tool failed: index gone\n</tool_response>\n");
    EXPECT_EQ(r.info["tool_error"], "index gone");
    // In an episode: counted, and the episode goes on to its answer.
    const ByteTokenizer bytes;
    const TextTokenizer tok(bytes);
    rl::EpisodeGroup g;
    g.item = &item;
    g.envs = {std::make_shared<FailingTool>()};
    std::vector<rl::EpisodeGroup> groups{g};
    int turn = 0;
    const rl::Generator policy = [&](const std::vector<GenerationRequest>& requests, const auto&) {
        const std::string text = turn++ == 0 ? call("1") : "<answer>4</answer>";
        GeneratedSequence s;
        for (unsigned char ch : text) s.tokens.push_back(ch);
        s.finish_reason = "stop";
        return std::vector<std::vector<GeneratedSequence>>(requests.size(), {s});
    };
    const auto episodes = rl::run_episodes(groups, policy, tok, rl::EpisodeLimits{400, 0});
    const rl::Episode& e = episodes.at(0).at(0);
    EXPECT_EQ(e.tool_errors, 1);
    EXPECT_EQ(e.tool_calls, 1);
    EXPECT_EQ(e.turns, 2);
    EXPECT_EQ(e.end, "answer");
}

}  // namespace
}  // namespace crucible
