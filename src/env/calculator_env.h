// The `calculator` environment: a task's items answered over several turns with an exact
// calculator tool, called in the Qwen/Hermes syntax:
//
//   model:  ...<tool_call>{"name": "calculator", "arguments": {"expression":
//   "12*(3+4)"}}</tool_call> env:    \n<tool_response>\n84\n</tool_response>\n model:  ...
//   <answer>84</answer>
//
// A model turn ends at "</tool_call>", "</answer>", the task's own stop strings or the
// end-of-sequence token. step() acts on whichever of a complete <answer> and the first tool
// call comes first: a call runs (calculator_tool) and its output is the observation; a
// malformed call (unclosed tag, bad JSON, unknown tool, a missing or non-string "expression")
// gets an observation saying so and the episode goes on; an answer, a turn without a call, a
// turn ended by end-of-sequence or cut by a token limit, or the turn limit end the episode.
// score() is the task's verdict on the text of the model's last turn.
#pragma once

#include <string>
#include <vector>

#include "env/environment.h"

namespace crucible::env {

struct CalculatorEnvOptions {
    int max_turns = 4;  // model turns per episode at most (the last one gets no observation)
};

// The observation text that follows a model turn for tool output `content`:
// "\n<tool_response>\nCONTENT\n</tool_response>\n".
std::string calculator_observation(const std::string& content);

class CalculatorEnvironment : public Environment {
  public:
    // `task_stop_strings` are the task's own (e.g. Countdown's "</answer>"), kept.
    CalculatorEnvironment(CalculatorEnvOptions options, VerdictFn verdict,
                          std::vector<std::string> task_stop_strings);
    Prompt reset(const Item& item) override;
    StepResult step(const Turn& turn) override;
    Verdict score() override { return verdict_(last_text_); }
    std::vector<std::string> stop_strings() const override { return stop_strings_; }

  private:
    CalculatorEnvOptions options_;
    VerdictFn verdict_;
    std::vector<std::string> stop_strings_;
    int turns_ = 0;
    std::string last_text_;
};

}  // namespace crucible::env
