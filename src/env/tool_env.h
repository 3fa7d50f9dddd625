// The one loop of a tool-using environment: the model writes a turn, the first tool call in it
// (in the environment's syntax, env/tool_call.h) runs and its output is the observation, until
// an answer, a turn without a call, end-of-sequence, a token limit or the turn limit.
// Environments with tools (calculator, search) are this loop plus the tools they run.
//
// step() acts on whichever of a complete <answer> and the first tool call comes first (as
// Search-R1 does): a call runs (run_tool) and its output is the observation; a malformed call
// (unclosed tag, bad JSON, unknown tool, bad arguments) gets an observation saying so and the
// episode goes on; an answer, a turn without a call, a turn ended by end-of-sequence or cut by
// a token limit, or the turn limit end the episode. A model turn ends at the closing call tag,
// "</answer>", the task's own stop strings or end-of-sequence.
//
// score() is the task's verdict on the model's last turn: on its whole text (tasks that parse
// their own format, e.g. Countdown's <answer>) or, with ScoreOn::answer, on the content of its
// first complete <answer>...</answer> ("" when there is none), Search-R1's exact-match rule.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "env/environment.h"
#include "env/tool_call.h"

namespace crucible::env {

struct ToolEnvOptions {
    int max_turns = 4;  // model turns per episode at most (the last one gets no observation)
    ToolSyntax syntax = ToolSyntax::hermes;
    enum class ScoreOn { last_turn, answer };
    ScoreOn score_on = ScoreOn::last_turn;
};

// The observation text that follows a model turn for tool output `content`: hermes
// "\n<tool_response>\nCONTENT\n</tool_response>\n"; search_r1
// "\n\n<information>CONTENT</information>\n\n".
std::string tool_observation(ToolSyntax syntax, const std::string& content);

// What a tool made of a call: its output (the observation's content), or the reason the call
// is malformed (bad arguments), which the model is shown as "error: malformed tool call: ...".
struct ToolOutput {
    std::string content;
    std::optional<std::string> malformed;
};

class ToolEnvironment : public Environment {
  public:
    // `tools` are the names a call may use; `task_stop_strings` (the task's own) are kept.
    ToolEnvironment(ToolEnvOptions options, std::vector<std::string> tools, VerdictFn verdict,
                    std::vector<std::string> task_stop_strings);
    Prompt reset(const Item& item) override;
    StepResult step(const Turn& turn) override;
    Verdict score() override;
    std::vector<std::string> stop_strings() const override { return stop_strings_; }

    int tool_calls() const { return tool_calls_; }  // calls run in this episode

  protected:
    // Runs `call` (its name is one of the tools). `info` receives what the metrics and logs
    // should see (the "tool" key is set by the caller; "tool_error" when the tool failed or
    // timed out). Must not throw on what the model wrote; a throw (the tool itself failed)
    // becomes the observation "error: tool failed: WHAT" with info "tool_error", and the
    // episode goes on.
    virtual ToolOutput run_tool(const ToolCall& call, nlohmann::json& info) = 0;
    // Called by reset() for an environment's own per-episode state.
    virtual void on_reset(const Item&) {}

  private:
    ToolEnvOptions options_;
    std::vector<std::string> tools_;
    VerdictFn verdict_;
    std::vector<std::string> stop_strings_;
    int turns_ = 0;
    int tool_calls_ = 0;
    std::string last_text_;
};

}  // namespace crucible::env
