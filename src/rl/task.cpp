#include "rl/task.h"

#include <cstdio>
#include <memory>

#include "core/deadline_call.h"
#include "core/error.h"
#include "core/jsonl.h"
#include "env/builtin.h"
#include "env/calculator_env.h"
#include "env/countdown.h"
#include "env/countdown_tinyzero.h"
#include "env/dataset_item.h"
#include "env/python_env.h"
#include "env/search_env.h"
#include "reward/rubric.h"
#include "reward/rubric_format.h"
#include "reward/verify/verifiers.h"
#include "tokenizer/chat_template.h"

namespace crucible::rl {

namespace {

TaskItem make_item(const TextTokenizer& tok, std::string id, std::string prompt, std::string answer,
                   int index) {
    TaskItem item;
    item.id = std::move(id);
    item.prompt = std::move(prompt);
    item.prompt_ids = tok.encode(item.prompt);
    item.answer = std::move(answer);
    item.index = index;
    return item;
}

std::vector<TaskItem> read_jsonl(const std::string& path, const RlTaskConfig& cfg,
                                 const TextTokenizer& tok) {
    const std::string& default_verifier = cfg.verifier;
    const bool chat = cfg.chat;
    std::vector<TaskItem> items;
    for_each_jsonl_line(path, "the task's JSONL file", [&](const JsonlLine& line) {
        const std::string where = line.where();
        const DatasetItem d = parse_dataset_item(parse_jsonl_object(line), where, line.number);
        std::string prompt;
        if (d.chat) {
            prompt = render_chat_text(tok.chat, d.messages, true);
        } else if (d.has_prompt) {
            prompt = d.prompt;
            if (chat) prompt = render_chat_text(tok.chat, {{"user", prompt}}, true);
        } else {
            throw Error(where + ": needs a string \"prompt\" or a \"messages\" array");
        }
        const bool has_answer = d.answer.has_value();
        const bool has_rubric = d.fields.contains("rubric");  // this name only, not its aliases
        if (!has_answer && !has_rubric) {
            throw Error(where + ": needs \"answer\" (or a \"rubric\")");
        }
        const std::string answer = d.answer.value_or("");
        if (has_answer && answer.find_first_not_of(" \t\r\n") == std::string::npos) {
            throw Error(where + ": \"" + d.answer_key +
                        "\" is empty (leave it out for a rubric-only item)");
        }
        TaskItem item = make_item(tok, d.id.value_or(std::to_string(items.size())), prompt, answer,
                                  (int)items.size());
        item.has_gold = has_answer;
        item.verifier = d.verifier.value_or(default_verifier);
        item.columns = d.fields;
        item.columns.erase("prompt");
        item.columns.erase("messages");
        if (has_rubric) {
            item.rubric = std::make_shared<const reward::RubricItem>(
                reward::parse_rubric_item(d.fields, reward::SourceRef{path, line.number, item.id}));
        }
        bool pays_empty = false;
        try {
            eval::verify(item.verifier, "0", "0");  // names an unknown verifier now, not mid-run
            pays_empty = item.has_gold && eval::verify(item.verifier, item.answer, "");
        } catch (const Error& e) {
            throw Error(where + ": \"verifier\": " + e.what());
        }
        if (pays_empty) {  // e.g. a regex gold such as ".*" or "4?"
            throw Error(where + ": \"" + d.answer_key + "\": the " + item.verifier +
                        " verifier accepts an empty completion against it, so it would pay one");
        }
        items.push_back(std::move(item));
    });
    if (items.empty()) throw Error(path + ": no items");
    return items;
}

}  // namespace

void limit_verdict_time(Task& task, double seconds, const std::string& setting) {
    if (!(seconds > 0)) return;
    task.score = [inner = task.score, seconds, setting](const TaskItem& item,
                                                        const std::string& text) {
        const std::optional<TaskScore> v = call_with_deadline<TaskScore>(
            [inner, item, text] { return inner(item, text); }, seconds, "the task's verifier");
        if (!v) {
            char why[160];
            std::snprintf(why, sizeof why, "reward_timeout: no verdict within %g s (%s)", seconds,
                          setting.c_str());
            throw Error(why);
        }
        return *v;
    };
}

std::shared_ptr<env::Environment> make_environment(const RlEnvConfig& env, const Task& task,
                                                   const TaskItem& item) {
    return make_environment(
        env, [&task, &item](const std::string& text) { return task.score(item, text); },
        task.stop_strings);
}

std::shared_ptr<env::Environment> make_environment(const RlEnvConfig& env, env::VerdictFn verdict,
                                                   std::vector<std::string> stop_strings) {
    switch (env.name) {
        case EnvKind::calculator:
            return std::make_shared<env::CalculatorEnvironment>(
                env::CalculatorEnvOptions{env.max_turns}, std::move(verdict),
                std::move(stop_strings));
        case EnvKind::search:
            return std::make_shared<env::SearchEnvironment>(
                env::SearchEnvOptions{env.max_turns, env.syntax, env.top_k,
                                      static_cast<size_t>(env.max_passage_chars)},
                env.search_index, std::move(verdict), std::move(stop_strings));
        case EnvKind::python:
            return std::make_shared<env::PythonEnvironment>(
                env::PythonEnvOptions{env.max_turns, env.tool_timeout_s,
                                      static_cast<size_t>(env.python_memory_mb),
                                      static_cast<size_t>(env.max_output_chars)},
                std::move(verdict), std::move(stop_strings));
        case EnvKind::single_turn:
        case EnvKind::server:  // the agent runs the episodes; held-out items run one turn here
            break;
    }
    return std::make_shared<env::OneTurnEnvironment>(std::move(verdict), std::move(stop_strings));
}

Task load_task(const Config& config, const TextTokenizer& tok) {
    return load_task(read_rl_task_config(config), static_cast<uint64_t>(config.get_int("seed")),
                     tok);
}

Task load_task(const RlTaskConfig& cfg, uint64_t seed, const TextTokenizer& tok) {
    Task task;
    task.name = cfg.name;
    const int n_train = cfg.train_examples;
    const int n_eval = cfg.eval_examples;
    if (is_builtin_task(task.name)) {
        BuiltinSplits splits = builtin_task_items(task.name, n_train, n_eval, cfg.max_digits, seed);
        if (task.name == "countdown_lite") {
            task.score = [](const TaskItem& item, const std::string& completion) {
                return TaskScore{countdown_reward(item.prompt, completion), 0.0};
            };
        } else {
            task.score = [](const TaskItem& item, const std::string& completion) {
                const size_t nl = completion.find('\n');
                return TaskScore{completion.substr(0, nl) == item.answer ? 1.0 : 0.0, 0.0};
            };
        }
        for (auto [split, items] :
             {std::pair{&splits.train, &task.train}, std::pair{&splits.eval, &task.eval}}) {
            for (size_t i = 0; i < split->size(); i++) {
                DatasetItem& d = (*split)[i];
                items->push_back(make_item(tok, *d.id, std::move(d.prompt), *d.answer, (int)i));
            }
        }
    } else if (task.name == "countdown") {
        auto train = std::make_shared<std::vector<CountdownProblem>>();
        auto eval = std::make_shared<std::vector<CountdownProblem>>();
        countdown_tinyzero_split(n_train, n_eval, seed, train.get(), eval.get());
        const bool chat = cfg.chat;
        auto prompt_of = [&](const CountdownProblem& p) {
            return chat ? render_chat_text(tok.chat, {{"user", countdown_question(p)}}, true)
                        : countdown_base_prompt(p);
        };
        for (size_t i = 0; i < train->size(); i++)
            task.train.push_back(make_item(tok, "train-" + std::to_string(i),
                                           prompt_of((*train)[i]),
                                           std::to_string((*train)[i].target), (int)i));
        for (size_t i = 0; i < eval->size(); i++)
            task.eval.push_back(make_item(tok, "eval-" + std::to_string(i), prompt_of((*eval)[i]),
                                          std::to_string((*eval)[i].target), (int)i));
        // Items carry their split position; the problem is looked up by it.
        task.score = [train, eval](const TaskItem& item, const std::string& completion) {
            const auto& split = item.id.rfind("eval-", 0) == 0 ? *eval : *train;
            const CountdownVerdict v = countdown_tinyzero_verdict(split.at(item.index), completion);
            return TaskScore{v.correct ? 1.0 : 0.0,
                             v.answered && !v.correct ? kCountdownFormatCredit : 0.0};
        };
        task.has_format_credit = true;
        task.stop_strings = {"</answer>"};
    } else if (task.name == "jsonl") {
        const std::string& data = cfg.data;
        if (data.empty()) throw Error("config: task.data: task jsonl needs a JSONL file");
        task.train = read_jsonl(data, cfg, tok);
        const std::string& eval_data = cfg.eval_data;
        if (!eval_data.empty()) task.eval = read_jsonl(eval_data, cfg, tok);
        task.score = [](const TaskItem& item, const std::string& completion) {
            // A rubric-only item has no gold answer: it has no `correct` (not a 0, not a 1).
            if (!item.has_gold) return TaskScore{};
            return TaskScore{eval::verify(item.verifier, item.answer, completion) ? 1.0 : 0.0, 0.0};
        };
    } else {
        throw Error("config: task.name: unknown task '" + task.name +
                    "' (expected countdown_lite, countdown, addition or jsonl)");
    }
    return task;
}

}  // namespace crucible::rl
