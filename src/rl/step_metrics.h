// What an RL step records: its metrics.jsonl line (docs/RL.md lists the keys), its
// samples.jsonl lines and its console line.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rl/rollout.h"
#include "rl/task.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible::rl {

// The metrics.jsonl record of step `step` from its rollouts and its update, but for what the
// trainer adds: judge, eval_* and step_s. `lr` is the last optimizer step's learning rate;
// `kl` whether the KL penalty is on.
nlohmann::json step_metrics(int64_t step, const RolloutBatch& batch, const UpdateStats& update,
                            int64_t optimizer_steps, float lr, bool kl, double time_train_s);

// samples.jsonl for step `step`: one line per rollout, in order. With `spans_tok` (multi-turn
// environments) each line also marks its spans (prompt / model / tool, with their token counts
// and text) and the episode's turns, tool calls, malformed calls and end.
std::string step_samples_jsonl(int64_t step, const std::vector<Rollout>& rollouts, const Task& task,
                               const TextTokenizer* spans_tok = nullptr);

// The console line of a step, from its metrics record.
std::string step_console_line(const nlohmann::json& metrics, int64_t total_steps,
                              int prompts_per_step, double eta_s);

}  // namespace crucible::rl
