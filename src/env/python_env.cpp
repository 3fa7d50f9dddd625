#include "env/python_env.h"

#include <cstdio>

#include "core/error.h"
#include "env/search_index.h"
#include "sandbox/sandbox.h"

namespace crucible::env {

PythonEnvironment::PythonEnvironment(PythonEnvOptions options, VerdictFn verdict,
                                     std::vector<std::string> task_stop_strings)
    : ToolEnvironment(
          ToolEnvOptions{options.max_turns, ToolSyntax::hermes, ToolEnvOptions::ScoreOn::last_turn},
          {"python"}, std::move(verdict), std::move(task_stop_strings)),
      options_(options) {
    if (!(options_.timeout_s > 0)) throw Error("python environment: timeout_s must be > 0");
    if (options_.max_output_chars < 1)
        throw Error("python environment: max_output_chars must be >= 1");
}

std::string python_tool_output(const std::string& stdout_text, const std::string& stderr_text,
                               int exit_code, int signal, bool timed_out, double timeout_s,
                               size_t max_output_chars) {
    std::string text = stdout_text;
    if (!stderr_text.empty()) {
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += stderr_text;
    }
    bool cut = false;
    text = cap_utf8_chars(text, max_output_chars, &cut);
    if (cut) text += "\n[output cut at " + std::to_string(max_output_chars) + " characters]";
    while (!text.empty() && text.back() == '\n') text.pop_back();
    std::string status;
    if (timed_out) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "error: timed out after %g s", timeout_s);
        status = buf;
    } else if (signal != 0) {
        status = "[killed by signal " + std::to_string(signal) + "]";
    } else if (exit_code != 0) {
        status = "[exit code " + std::to_string(exit_code) + "]";
    }
    if (!status.empty()) text += (text.empty() ? "" : "\n") + status;
    return text.empty() ? "(no output)" : text;
}

ToolOutput PythonEnvironment::run_tool(const ToolCall& call, nlohmann::json& info) {
    const auto it = call.arguments.find("code");
    if (it == call.arguments.end()) return {"", "missing \"code\""};
    if (!it->is_string()) return {"", "\"code\" must be a string"};
    const std::string code = it->get<std::string>();
    if (code.find_first_not_of(" \t\r\n") == std::string::npos) return {"", "empty code"};
    SandboxOptions so;
    so.wall_s = options_.timeout_s;
    so.cpu_s = options_.timeout_s;
    so.mem_mb = options_.memory_mb;
    so.procs = 16;
    so.disk_mb = 16;
    so.max_output_bytes = options_.max_output_chars * 4 + 64;  // UTF-8: 4 bytes a character
    so.copy_back = false;
    so.env = {{"PYTHONHASHSEED", "0"}};
    // Throws when no sandbox can be made: ToolEnvironment turns it into an error observation.
    const SandboxResult r = run_sandboxed(so, {"python3", "-I", "-c", code});
    info["exit_code"] = r.exit_code;
    if (r.timed_out || r.cpu_limit) info["tool_error"] = "timeout";
    return {
        python_tool_output(r.stdout_text, r.stderr_text, r.exit_code,
                           r.timed_out || r.cpu_limit ? 0 : r.signal, r.timed_out || r.cpu_limit,
                           options_.timeout_s, options_.max_output_chars),
        std::nullopt};
}

}  // namespace crucible::env
