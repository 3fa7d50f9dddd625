// The `python` environment: the model runs Python through the Qwen/Hermes tool call
//
//   <tool_call>{"name": "python", "arguments": {"code": "print(sum(range(10)))"}}</tool_call>
//   -> \n<tool_response>\n45\n</tool_response>\n
//
// Code from a model is untrusted: each call runs `python3 -I -c CODE` inside the sandbox
// (sandbox/sandbox.h: no network, a read-only minimal root, an empty scratch, whole-tree
// memory and process caps, a wall-clock and CPU limit). The observation is its stdout, then its
// stderr, cut to max_output_chars characters, then "[exit code N]" when it failed, or
// "error: timed out after S s" when the limit killed it; the episode goes on either way. A call
// without a non-empty string "code" is malformed. score() is the task's verdict on the last
// turn's text.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "env/tool_env.h"

namespace crucible::env {

struct PythonEnvOptions {
    int max_turns = 4;
    double timeout_s = 5.0;          // wall clock and CPU per call
    size_t memory_mb = 512;          // the whole sandbox's memory
    size_t max_output_chars = 2000;  // of stdout and stderr together
};

class PythonEnvironment : public ToolEnvironment {
  public:
    PythonEnvironment(PythonEnvOptions options, VerdictFn verdict,
                      std::vector<std::string> task_stop_strings);

  protected:
    ToolOutput run_tool(const ToolCall& call, nlohmann::json& info) override;

  private:
    PythonEnvOptions options_;
};

// What a finished run shows the model (the observation's content): stdout, stderr, the cut,
// and the exit status or the timeout, as described above. Exposed for tests.
std::string python_tool_output(const std::string& stdout_text, const std::string& stderr_text,
                               int exit_code, int signal, bool timed_out, double timeout_s,
                               size_t max_output_chars);

}  // namespace crucible::env
