#include "env/calculator_env.h"

#include "env/calculator.h"

namespace crucible::env {

std::string calculator_observation(const std::string& content) {
    return tool_observation(ToolSyntax::hermes, content);
}

CalculatorEnvironment::CalculatorEnvironment(CalculatorEnvOptions options, VerdictFn verdict,
                                             std::vector<std::string> task_stop_strings)
    : ToolEnvironment(
          ToolEnvOptions{options.max_turns, ToolSyntax::hermes, ToolEnvOptions::ScoreOn::last_turn},
          {"calculator"}, std::move(verdict), std::move(task_stop_strings)) {}

ToolOutput CalculatorEnvironment::run_tool(const ToolCall& call, nlohmann::json& info) {
    const auto it = call.arguments.find("expression");
    if (it == call.arguments.end()) return {"", "missing \"expression\""};
    if (!it->is_string()) return {"", "\"expression\" must be a string"};
    const std::string expression = it->get<std::string>();
    info["expression"] = expression;
    return {calculator_tool(expression), std::nullopt};
}

}  // namespace crucible::env
