// The `calculator` environment: a task's items answered over several turns with an exact
// calculator tool, called in the Qwen/Hermes syntax (the tool loop of env/tool_env.h):
//
//   model:  ...<tool_call>{"name": "calculator", "arguments": {"expression":
//   "12*(3+4)"}}</tool_call> env:    \n<tool_response>\n84\n</tool_response>\n model:  ...
//   <answer>84</answer>
//
// A call without a string "expression" argument is malformed. score() is the task's verdict on
// the text of the model's last turn.
#pragma once

#include <string>
#include <vector>

#include "env/tool_env.h"

namespace crucible::env {

struct CalculatorEnvOptions {
    int max_turns = 4;  // model turns per episode at most (the last one gets no observation)
};

// The observation text that follows a model turn for tool output `content`:
// "\n<tool_response>\nCONTENT\n</tool_response>\n".
std::string calculator_observation(const std::string& content);

class CalculatorEnvironment : public ToolEnvironment {
  public:
    // `task_stop_strings` are the task's own (e.g. Countdown's "</answer>"), kept.
    CalculatorEnvironment(CalculatorEnvOptions options, VerdictFn verdict,
                          std::vector<std::string> task_stop_strings);

  protected:
    ToolOutput run_tool(const ToolCall& call, nlohmann::json& info) override;
};

}  // namespace crucible::env
