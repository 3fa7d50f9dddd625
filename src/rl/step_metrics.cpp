#include "rl/step_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "run/run_folder.h"

namespace crucible::rl {

using json = nlohmann::json;

namespace {

// env server: episodes the agent never rewarded (or that could not be joined), and how far the
// engine's logprobs of the recorded ids are from the trainer's at the first update (the same
// weights: ~0 when the trained ids are the generated ones; packing changes only the rounding).
void add_agent_metrics(json& line, const std::vector<Rollout>& rollouts) {
    bool agent = false;
    int64_t failed = 0;
    double diff = 0.0;
    for (const Rollout& r : rollouts) {
        if (r.session.empty()) continue;
        agent = true;
        failed += !r.error.empty();
        if (!r.in_loss || r.old_logp.size() != r.behaviour_logp.size()) continue;
        for (size_t t = 0; t < r.old_logp.size(); t++)
            diff = std::max(diff, std::fabs(double(r.old_logp[t]) - r.behaviour_logp[t]));
    }
    if (!agent) return;
    line["agent/failed_episodes"] = failed;
    line["agent/logprob_diff_max"] = diff;
}

// Rewards, accuracy, lengths and the group filter's counts.
void add_rollout_metrics(json& line, const RolloutBatch& b) {
    const std::vector<Rollout>& rollouts = b.rollouts;
    double reward_sum = 0.0, reward_sq = 0.0, correct_sum = 0.0, len_sum = 0.0;
    int64_t n_valid = 0, n_invalid = 0, n_judged = 0, truncated = 0, max_len = 0;
    std::map<std::string, double> component_sum;
    std::map<std::string, int64_t> component_count;
    for (const Rollout& r : rollouts) {
        len_sum += static_cast<double>(r.completion.size());
        max_len = std::max<int64_t>(max_len, static_cast<int64_t>(r.completion.size()));
        truncated += r.truncated;
        // Correctness is the task's verdict; another component failing does not change it.
        if (r.correct) {
            n_judged++;
            correct_sum += *r.correct == 1.0;
        }
        if (!r.valid) {
            n_invalid++;
            continue;
        }
        n_valid++;
        reward_sum += r.reward;
        reward_sq += r.reward * r.reward;
        for (const auto& [name, v] : r.components) {
            component_sum[name] += v;
            component_count[name]++;
        }
    }
    const double n_all = static_cast<double>(std::max<size_t>(rollouts.size(), 1));
    const double mean = n_valid > 0 ? reward_sum / n_valid : 0.0;
    line["reward_mean"] = mean;
    line["reward_std"] =
        n_valid > 1 ? std::sqrt(std::max(0.0, (reward_sq - n_valid * mean * mean) / (n_valid - 1)))
                    : 0.0;
    // A component's mean is over the samples it applies to.
    for (const auto& [name, v] : component_sum) {
        line["reward/" + name] = v / static_cast<double>(component_count[name]);
    }
    // Accuracy: the fraction of fully correct samples among those with a gold answer (none:
    // rubric-only data). Format credit is in the reward and in reward/format, never here.
    if (n_judged > 0) line["accuracy"] = correct_sum / static_cast<double>(n_judged);
    line["frac_reward_zero_std"] =
        b.groups_total > 0 ? double(b.groups_zero_std) / b.groups_total : 0.0;
    if (b.groups_judged > 0) {
        line["frac_accuracy_all_same"] = double(b.groups_all_same_accuracy) / b.groups_judged;
    }
    line["groups_kept"] = b.kept_groups.size();
    line["generation_rounds"] = b.rounds;
    line["invalid_samples"] = n_invalid;
    line["response_length_mean"] = len_sum / n_all;
    line["response_length_max"] = max_len;
    line["truncation_rate"] = double(truncated) / n_all;
    add_agent_metrics(line, rollouts);
    if (!b.multi_turn) return;
    int64_t turns = 0, calls = 0, malformed = 0, tool_errors = 0, model = 0;
    for (const Rollout& r : rollouts) {
        turns += r.turns;
        calls += r.tool_calls;
        malformed += r.malformed_calls;
        tool_errors += r.tool_errors;
        model += static_cast<int64_t>(r.model_tokens());
    }
    line["env/turns_mean"] = double(turns) / n_all;
    line["env/tool_calls_mean"] = double(calls) / n_all;
    line["env/malformed_calls"] = malformed;
    line["env/tool_errors"] = tool_errors;
    line["env/model_tokens_mean"] = double(model) / n_all;
    line["env/observation_tokens_mean"] = (len_sum - double(model)) / n_all;
}

// The objective's statistics, averaged per token or per optimizer step.
void add_update_metrics(json& line, const UpdateStats& st, bool kl) {
    const double tok = static_cast<double>(std::max<int64_t>(st.loss_stats.tokens, 1));
    line["loss"] = st.optimizer_steps > 0 ? st.loss / st.optimizer_steps : 0.0;
    line["clip_frac_low"] = st.loss_stats.clipped_low / tok;
    line["clip_frac_high"] = st.loss_stats.clipped_high / tok;
    line["ratio_mean"] = st.loss_stats.ratio_sum / tok;
    line["entropy"] = st.entropy_tokens > 0 ? st.entropy_sum / st.entropy_tokens : 0.0;
    if (kl) line["kl"] = st.loss_stats.kl_sum / tok;
    line["grad_norm"] = st.optimizer_steps > 0 ? st.grad_norm_sum / st.optimizer_steps : 0.0;
    line["micro_batches"] = st.micro_batches;
}

}  // namespace

json step_metrics(int64_t step, const RolloutBatch& b, const UpdateStats& st,
                  int64_t optimizer_steps, float lr, bool kl, double t_train) {
    json line;
    line["step"] = step;
    add_rollout_metrics(line, b);
    add_update_metrics(line, st, kl);
    line["optimizer_steps"] = optimizer_steps;
    line["lr"] = lr;
    const double n_all = static_cast<double>(std::max<size_t>(b.rollouts.size(), 1));
    const double t_generate = b.time_generate_s, t_reward = b.time_reward_s;
    line["time_generate_s"] = t_generate;
    line["time_reward_s"] = t_reward;
    line["time_train_s"] = t_train;
    line["generate_tokens_per_s"] = t_generate > 0 ? b.generated_tokens / t_generate : 0.0;
    line["reward_samples_per_s"] = t_reward > 0 ? n_all / t_reward : 0.0;
    line["train_tokens_per_s"] = t_train > 0 ? st.train_rows / t_train : 0.0;
    return line;
}

std::string step_samples_jsonl(int64_t step, const std::vector<Rollout>& rollouts, const Task& task,
                               const TextTokenizer* spans_tok) {
    std::string lines;
    for (const Rollout& r : rollouts) {
        json s = {
            {"step", step},
            {"item", task.train[r.item].id},
            {"prompt", r.prompt.empty() || spans_tok == nullptr ? task.train[r.item].prompt
                                                                : spans_tok->decode(r.prompt)},
            {"group", r.group},
            {"sample", r.sample},
            {"completion", r.text},
            {"completion_tokens", r.completion.size()},
            {"finish_reason", r.truncated ? "length" : "stop"},
            {"reward", r.valid ? json(r.reward) : json(nullptr)},
            {"kept", r.kept},
            {"in_loss", r.in_loss},
            {"advantage", r.kept ? json(r.advantage) : json(nullptr)}};
        json comps = json::object();
        for (const auto& [name, v] : r.components) comps[name] = v;
        s["rewards"] = comps;
        if (!r.valid) s["error"] = r.error;
        if (!r.session.empty()) s["session"] = r.session;
        if (spans_tok != nullptr) {
            s["turns"] = r.turns;
            s["tool_calls"] = r.tool_calls;
            s["malformed_calls"] = r.malformed_calls;
            s["tool_errors"] = r.tool_errors;
            s["end"] = r.end;
            json spans = json::array();
            spans.push_back({{"kind", "prompt"},
                             {"tokens", r.prompt.empty() ? task.train[r.item].prompt_ids.size()
                                                         : r.prompt.size()}});
            for (const EpisodeSpan& sp : r.spans) {
                std::vector<int32_t> ids(r.completion.begin() + sp.begin,
                                         r.completion.begin() + sp.end);
                // A final end-of-sequence token counts, but is not text (as in "completion").
                if (sp.end == r.completion.size() && !ids.empty() && ids.back() == spans_tok->eos)
                    ids.pop_back();
                spans.push_back({{"kind", sp.kind == EpisodeSpan::Kind::model ? "model" : "tool"},
                                 {"tokens", sp.end - sp.begin},
                                 {"text", spans_tok->decode(ids)}});
            }
            s["spans"] = spans;
        }
        lines += s.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    return lines;
}

std::string step_console_line(const json& line, int64_t total_steps, int prompts_per_step,
                              double eta_s) {
    char buf[320];
    std::snprintf(
        buf, sizeof buf,
        "step %lld/%lld | reward %.3f | acc %.1f%% | groups %zu/%d (%d rounds) | len %.1f "
        "| clip %.3f/%.3f | entropy %.3f | grad %.3f | gen %.1fs train %.1fs | ETA %s",
        (long long)line["step"].get<int64_t>(), (long long)total_steps,
        line["reward_mean"].get<double>(), 100.0 * line.value("accuracy", std::nan("")),
        line["groups_kept"].get<size_t>(), prompts_per_step, line["generation_rounds"].get<int>(),
        line["response_length_mean"].get<double>(), line["clip_frac_low"].get<double>(),
        line["clip_frac_high"].get<double>(), line["entropy"].get<double>(),
        line["grad_norm"].get<double>(), line["time_generate_s"].get<double>(),
        line["time_train_s"].get<double>(), format_duration(eta_s).c_str());
    return buf;
}

}  // namespace crucible::rl
