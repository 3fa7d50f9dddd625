// The eval harness: K samples per item from a generator (a local model through the engine, or
// any OpenAI-compatible endpoint), each scored by the item's verifier and committed to the
// run's SampleStore as it completes. A re-run of the same directory generates only what is
// missing (absent or failed samples, or new sample indices when K grew).
//
// Determinism: sample j of item i is drawn with seed Rng::mix(Rng::mix(seed, fnv1a(id_i)), j),
// so a sample does not depend on which other samples share its batch, on K, or on resumption.
//
// Rubric items are scored by a reward::RubricScorer on a scoring thread of their own: finished
// samples queue up while generation goes on, and each batch of them is scored with one
// score_batch call (all its judge requests in flight at once, up to the judge's concurrency).
// A judge failure is a failed sample (with the reason), never a failed run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"
#include "eval/sample_store.h"
#include "reward/python_reward.h"
#include "reward/rubric_scorer.h"

namespace crucible::eval {

struct SamplingOptions {
    double temperature = 1.0;
    double top_p = 1.0;
    int max_tokens = 1024;
    uint64_t seed = 0;
    bool chat = true;  // items with a raw prompt go through the chat template (as a user turn)
};

// One sample to generate.
struct SampleJob {
    size_t item = 0;  // index into the item list
    int sample = 0;
    uint64_t seed = 0;
};

// What a generator returns for one job. A non-empty `error` marks a failed sample.
struct GeneratedSample {
    std::string prompt;  // what was sent, as text
    std::string completion;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    std::string finish_reason;
    double latency_s = 0.0;
    std::string error;
    // The text the item's verifier scores instead of the completion: an environment episode's
    // (the completion is then the whole transcript after the prompt, the model's turns and the
    // tools' observations; the scored text what the environment's verdict reads, e.g. the
    // search environment's <answer> content).
    std::optional<std::string> scored;
    // What else the generator knows about the sample, stored with it (SampleRecord::info): an
    // episode's turns, tool calls, how it ended and the environment's summary. null: none.
    nlohmann::json info;
};

// A source of completions. generate() runs the jobs and calls `done` once per finished job,
// from any thread but never concurrently, as each completes (the harness stores it right
// away). When `done` returns false the generator starts no further job and returns soon.
class Generator {
  public:
    virtual ~Generator() = default;
    virtual std::string name() const = 0;  // recorded in the run's settings
    // The context an endpoint publishes for the model (0: unknown). A sample's max_tokens is
    // capped to fit it (recorded as the setting "endpoint_context").
    virtual int context() const { return 0; }
    virtual void generate(const std::vector<EvalItem>& items, const std::vector<SampleJob>& jobs,
                          const SamplingOptions& sampling,
                          const std::function<bool(const SampleJob&, GeneratedSample)>& done) = 0;
};

// An OpenAI-compatible endpoint: "openai:BASE_URL#MODEL". Chat items (and raw prompts when
// sampling.chat) go to /chat/completions, raw prompts otherwise to /completions; up to
// `concurrency` requests in flight. An HTTP failure after the client's retries is a failed
// sample, not a failed run. When GET /models publishes the model's max_model_len, each
// sample's max_tokens is capped so that prompt + completion fit it.
std::unique_ptr<Generator> make_openai_generator(const std::string& spec, int concurrency);

struct EvalOptions {
    std::string run_dir;
    int k = 1;  // samples per item
    SamplingOptions sampling;
    bool strip_think = false;  // score only what follows the last </think>
    // A built-in verifier's verdict on one sample past this many seconds: the sample fails
    // with reward_timeout (core/deadline_call.h); 0: no limit.
    double verifier_timeout_s = 10.0;
    std::string model;  // recorded in the settings
    std::string data;   // recorded in the settings
    // The environment episodes run in ("" : plain completions), recorded in the settings
    // ("none" for plain completions), so a run cannot mix episodes and completions or two
    // environments.
    std::string env;
    // Called after each stored sample with (done, total); the CLI prints a progress line.
    std::function<void(int64_t, int64_t)> on_progress;

    // Scores the samples of rubric items (required when there are any). The second scorer,
    // when set, scores every scored rubric sample again (those it has not scored yet, or
    // failed on) after generation, for the agreement of two judges.
    const reward::RubricScorer* rubric_scorer = nullptr;
    const reward::RubricScorer* rubric_scorer_b = nullptr;
    // The scorer's settings (judge, mode, aggregation, votes, ...), checked like the sampling
    // settings when the run has rubric items: all of a run's samples are scored alike.
    std::map<std::string, std::string> rubric_settings;
    // Names the second judge; when it differs from the stored one, its results are cleared.
    std::string judge_b;
    int rubric_batch = 64;  // most samples per score_batch call
};

struct EvalSummary {
    int64_t generated = 0;      // samples generated by this call
    int64_t failed = 0;         // of those, failed ones
    int64_t skipped = 0;        // already in the store
    int64_t rubric_failed = 0;  // of the failed, those whose rubric scoring failed (judge)
    // Stored samples whose judging had failed, judged again from their stored completion (not
    // regenerated); their failures count in `failed` and `rubric_failed` too.
    int64_t rejudged = 0;
    int64_t judged_b = 0;  // samples the second judge scored in this call
    int64_t judged_b_failed = 0;
};

// The seed of sample j of the item with id `id`.
uint64_t sample_seed(uint64_t seed, const std::string& id, int sample);

// The text that is scored: with strip_think, what follows the last "</think>" (an opened but
// unclosed <think> leaves nothing, so it scores as wrong); else the completion.
std::string scored_text(const std::string& completion, bool strip_think);

// Scores `text` against the item: 1 or 0, and the extracted answer used for majority voting
// (math/numeric: the normalised final answer; mc: the letter; exact/regex: the normalised
// text). Throws crucible::Error for a bad gold (e.g. an invalid regex), and for a rubric item
// (those are scored by a RubricScorer).
double score_sample(const EvalItem& item, const std::string& text, std::string* answer);

// The Python function a "python:FILE:FUNCTION[:verl]" verifier names (one worker, the default
// timeout). A sample it cannot score (timeout, exception, a value outside [0, 1]) is a failed
// sample that a re-run scores again, never a 0. Throws Error for a malformed kind.
reward::PythonRewardOptions python_verifier_options(const std::string& kind);

// Generates and stores every missing sample of `items` (the dataset's excluded lines are
// recorded in the run's settings by the caller). Throws crucible::Error when the directory
// holds a run made with other settings, when there are rubric items and no rubric scorer, or
// when the first kMaxFailuresBeforeSuccess generations all failed (a dead endpoint: the run
// stops instead of failing every sample; what was stored stays, and a re-run retries it).
// A failed sample (generation or judge) is generated and scored again by a re-run.
constexpr int kMaxFailuresBeforeSuccess = 16;
EvalSummary run_eval(const std::vector<EvalItem>& items, Generator& generator,
                     const EvalOptions& options);

}  // namespace crucible::eval
