#include "env/calculator_env.h"

#include <algorithm>

#include "env/calculator.h"
#include "env/tool_call.h"

namespace crucible::env {

std::string calculator_observation(const std::string& content) {
    std::string text = "\n";
    text += render_observation(ToolSyntax::hermes, content);
    text += '\n';
    return text;
}

CalculatorEnvironment::CalculatorEnvironment(CalculatorEnvOptions options, VerdictFn verdict,
                                             std::vector<std::string> task_stop_strings)
    : options_(options), verdict_(std::move(verdict)) {
    stop_strings_ = {"</tool_call>", "</answer>"};
    for (std::string& s : task_stop_strings) {
        if (std::find(stop_strings_.begin(), stop_strings_.end(), s) == stop_strings_.end())
            stop_strings_.push_back(std::move(s));
    }
}

Prompt CalculatorEnvironment::reset(const Item& item) {
    turns_ = 0;
    last_text_.clear();
    return {item.prompt, item.prompt_ids};
}

StepResult CalculatorEnvironment::step(const Turn& turn) {
    turns_++;
    last_text_ = turn.text;
    StepResult r;
    const auto end = [&](const char* why) {
        r.done = true;
        r.info["end"] = why;
        return r;
    };
    if (turn.eos) return end("eos");
    if (turn.truncated) return end("truncated");
    size_t answer_at = 0;
    const bool answered = extract_answer(turn.text, &answer_at).has_value();
    const ParsedToolCall call = parse_tool_call(turn.text, ToolSyntax::hermes, {"calculator"});
    if (call.kind == ParsedToolCall::Kind::none) return end(answered ? "answer" : "no_call");
    if (answered && answer_at < call.begin) return end("answer");
    if (turns_ >= options_.max_turns) return end("max_turns");
    if (call.ignored_calls > 0) r.info["ignored_calls"] = call.ignored_calls;
    std::string reason = call.reason;
    if (call.kind == ParsedToolCall::Kind::call) {
        const auto it = call.call.arguments.find("expression");
        if (it == call.call.arguments.end()) {
            reason = "missing \"expression\"";
        } else if (!it->is_string()) {
            reason = "\"expression\" must be a string";
        } else {
            const std::string expression = it->get<std::string>();
            r.info["tool"] = "calculator";
            r.info["expression"] = expression;
            r.observation = calculator_observation(calculator_tool(expression));
            return r;
        }
    }
    r.info["malformed"] = reason;
    r.observation = calculator_observation(malformed_call_message(reason));
    return r;
}

}  // namespace crucible::env
