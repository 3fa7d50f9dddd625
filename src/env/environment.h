// The environment API: what an RL episode talks to. An episode starts with reset(item), which
// gives the first prompt; the model then writes a turn, step(turn) answers it with an
// observation (a tool's output) or ends the episode, and so on until done; score() gives the
// episode-level reward, the verdict of the task's verifier (or score function) on the episode.
//
//   Environment& env = ...;
//   Prompt p = env.reset(item);                   // the first prompt (text and token ids)
//   for (;;) {
//       Turn turn = <the model continues from every id so far>;
//       StepResult r = env.step(turn);            // observation text (or none), done, reward
//       if (r.done) break;
//       <the observation's ids, tokenized on their own, are appended after the turn's ids>
//   }
//   Verdict v = env.score();                      // the episode-level reward
//
// Environments only see text (and the turn's ids); the caller (rl/episodes.h) owns the token
// ids, the token budget and the engine, so a conversation is never re-tokenized from text.
// docs/ENVIRONMENTS.md describes the API and shows how to write an environment.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace crucible::reward {
struct RubricItem;
}

namespace crucible::env {

// One item of a task's data: what an episode is about. The RL task's item (rl::TaskItem)
// extends it with its verifier and rubric.
struct Item {
    std::string id;
    std::string prompt;  // the text shown to the model (after any chat template)
    std::vector<int32_t> prompt_ids;
    std::string answer;  // gold answer (or the task's own encoding of the problem)
    int index = 0;       // position in its split
};

// The task's verdict on an episode. Correctness and format credit are kept apart, so that
// accuracy means "fully correct" whatever credit the reward gives for form.
struct Verdict {
    std::optional<double> correct;  // 1 fully correct, 0 not; none: the item has no gold answer
    double format = 0.0;            // format credit (Countdown: TinyZero's 0.1 for a
                                    // well-formed wrong answer); 0 for tasks without one
};

// The verdict on a piece of model text for one item (the task's verifier bound to the item).
// May throw (a verifier's error): the sample is then invalid.
using VerdictFn = std::function<Verdict(const std::string& text)>;

// The first prompt of an episode. `ids` are the prompt's token ids; when empty the caller
// tokenizes `text` (once: later turns only ever append ids).
struct Prompt {
    std::string text;
    std::vector<int32_t> ids;
};

// One model turn: what the model wrote since the last observation.
struct Turn {
    std::string text;          // decoded, without a final end-of-sequence token
    std::vector<int32_t> ids;  // the turn's token ids (end-of-sequence included when it ended it)
    bool eos = false;          // the turn ended with the end-of-sequence token
    bool truncated = false;    // the turn was cut by a token limit (per turn or the episode's)
};

struct StepResult {
    // Text appended after the turn before the model's next one (a tool's output); none: the
    // model continues right after its own turn (unusual; only when not done).
    std::optional<std::string> observation;
    bool done = false;
    std::optional<double> reward;  // a reward for this step (summed over the episode), if any
    // What happened, as JSON. Keys the RL trainer counts: "tool" (the name of a tool that ran),
    // "malformed" (the reason, when the turn's tool call was malformed), "end" (why the
    // episode ended: "answer", "eos", "truncated", "max_turns", "no_call").
    nlohmann::json info = nlohmann::json::object();
};

class Environment {
  public:
    virtual ~Environment() = default;
    // Starts an episode on `item` and returns its first prompt.
    virtual Prompt reset(const Item& item) = 0;
    // The model's turn; returns the observation (or none), whether the episode is done, an
    // optional reward and info. Never throws on what the model wrote.
    virtual StepResult step(const Turn& turn) = 0;
    // The episode-level reward, once the episode is done (or was cut by the caller's token
    // budget): the task's verdict. May throw (a verifier's error).
    virtual Verdict score() = 0;
    // Strings that end a model turn besides the end-of-sequence token (a closing tool tag).
    virtual std::vector<std::string> stop_strings() const = 0;
    // What the episode did that the environment alone knows, for the records (an eval
    // sample's info): the search environment's queries and the documents they retrieved.
    // null: nothing to add.
    virtual nlohmann::json summary() const { return nullptr; }
};

// A task as a one-turn environment: reset gives the item's prompt, the first step ends the
// episode, and score() is the task's verdict on that turn's text. This is how every
// single-turn RL task (Countdown, addition, task JSONL) runs.
class OneTurnEnvironment : public Environment {
  public:
    OneTurnEnvironment(VerdictFn verdict, std::vector<std::string> stop_strings)
        : verdict_(std::move(verdict)), stop_strings_(std::move(stop_strings)) {}
    Prompt reset(const Item& item) override;
    StepResult step(const Turn& turn) override;
    Verdict score() override { return verdict_(text_); }
    std::vector<std::string> stop_strings() const override { return stop_strings_; }

  private:
    VerdictFn verdict_;
    std::vector<std::string> stop_strings_;
    std::string text_;
};

}  // namespace crucible::env
