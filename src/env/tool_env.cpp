#include "env/tool_env.h"

#include <algorithm>

namespace crucible::env {

std::string tool_observation(ToolSyntax syntax, const std::string& content) {
    if (syntax == ToolSyntax::search_r1) return render_observation(syntax, content);
    std::string text = "\n";
    text += render_observation(syntax, content);
    text += '\n';
    return text;
}

ToolEnvironment::ToolEnvironment(ToolEnvOptions options, std::vector<std::string> tools,
                                 VerdictFn verdict, std::vector<std::string> task_stop_strings)
    : options_(options), tools_(std::move(tools)), verdict_(std::move(verdict)) {
    stop_strings_ = {options_.syntax == ToolSyntax::search_r1 ? "</search>" : "</tool_call>",
                     "</answer>"};
    for (std::string& s : task_stop_strings) {
        if (std::find(stop_strings_.begin(), stop_strings_.end(), s) == stop_strings_.end())
            stop_strings_.push_back(std::move(s));
    }
}

Prompt ToolEnvironment::reset(const Item& item) {
    turns_ = 0;
    tool_calls_ = 0;
    last_text_.clear();
    on_reset(item);
    return {item.prompt, item.prompt_ids};
}

Verdict ToolEnvironment::score() {
    if (options_.score_on == ToolEnvOptions::ScoreOn::last_turn) return verdict_(last_text_);
    return verdict_(extract_answer(last_text_).value_or(""));
}

StepResult ToolEnvironment::step(const Turn& turn) {
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
    const ParsedToolCall call = parse_tool_call(turn.text, options_.syntax, tools_);
    if (call.kind == ParsedToolCall::Kind::none) return end(answered ? "answer" : "no_call");
    if (answered && answer_at < call.begin) return end("answer");
    if (turns_ >= options_.max_turns) return end("max_turns");
    if (call.ignored_calls > 0) r.info["ignored_calls"] = call.ignored_calls;
    std::string reason = call.reason;
    if (call.kind == ParsedToolCall::Kind::call) {
        ToolOutput out;
        try {
            out = run_tool(call.call, r.info);
        } catch (const std::exception& e) {
            // A tool that fails (no sandbox, a broken index) is an error the model reads and
            // the metrics count; the episode, and the run, go on.
            r.info["tool_error"] = e.what();
            out = {std::string("error: tool failed: ") + e.what(), std::nullopt};
        }
        if (!out.malformed) {
            tool_calls_++;
            r.info["tool"] = call.call.name;
            r.observation = tool_observation(options_.syntax, out.content);
            return r;
        }
        reason = *out.malformed;
    }
    r.info["malformed"] = reason;
    r.observation = tool_observation(options_.syntax, malformed_call_message(reason));
    return r;
}

}  // namespace crucible::env
