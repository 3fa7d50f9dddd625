// The durable record of an eval run: RUN_DIR/samples.sqlite holds the run's settings, its
// items and one row per (item, sample index). Each sample is committed as it completes, so a
// killed run loses at most the samples in flight; a re-run generates only the (item, sample)
// pairs that are absent or failed, and every statistic is recomputed from this table (rubric
// items keep their rubric, and rubric samples their per-criterion results, for that). A file
// written before the rubric columns existed opens as it is: they are added when missing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/sqlite.h"
#include "eval/dataset.h"

namespace crucible::eval {

struct SampleRecord {
    std::string item_id;
    int sample = 0;
    uint64_t seed = 0;
    std::string prompt;      // the text sent (raw prompt, rendered chat, or messages as JSON)
    std::string completion;  // as generated (before --strip-think)
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    std::string finish_reason;
    std::optional<double> score;  // absent when the sample failed (see error)
    std::string answer;           // the extracted answer used for maj@k ("" when none)
    double latency_s = 0.0;
    std::string error;  // why generation or scoring failed; "" on success
    // Rubric items: reward::RubricResult::to_json() as text, per criterion ("" otherwise), by
    // the run's judge and by the second judge (--judge-b; "" until it has scored the sample).
    std::string rubric;
    std::string rubric_b;
    // GeneratedSample::info as JSON text ("" when none): an environment episode's turns, tool
    // calls, end and the environment's summary.
    std::string info;
};

// A record as one message between ranks (a sharded eval's samples, stored by rank 0), and back:
// CBOR, so every string's bytes travel as they are (a completion need not be valid UTF-8) and
// every double exactly. record_from_message throws Error on bytes that are not one.
// `to_judge`, when given, is a rubric item's text still to be judged (rank 0 alone judges, as it
// alone stores); record_from_message returns it in *to_judge, or nullopt when none was sent.
std::string record_to_message(const SampleRecord& r, const std::string* to_judge = nullptr);
SampleRecord record_from_message(const std::string& message,
                                 std::optional<std::string>* to_judge = nullptr);

// Settings holding a run's judge totals (JudgeStats::to_json keys): each eval call adds what
// its rubric scorers spent, so the figures cover every call that worked on the run.
constexpr const char* kJudgeStatsKey = "judge_stats";
constexpr const char* kJudgeBStatsKey = "judge_b_stats";

class SampleStore {
  public:
    // Opens (creating) `run_dir`/samples.sqlite; creates run_dir if needed.
    explicit SampleStore(const std::string& run_dir);

    // The run's settings (model, sampling options, ...). On a fresh store they are recorded;
    // on an existing one every key in `settings` must equal the stored value, else throws
    // crucible::Error naming the key, both values and the run directory. The sample count K
    // is not a setting: a re-run with a larger K adds samples.
    void check_settings(const std::map<std::string, std::string>& settings);
    std::map<std::string, std::string> settings();
    void set_setting(const std::string& key, const std::string& value);

    // Replaces the run's item list (in dataset order).
    void put_items(const std::vector<EvalItem>& items);
    // prompt/messages are not stored; answer, verifier, cluster and a rubric item's rubric
    // (criteria, example tags, aggregation) are.
    std::vector<EvalItem> items();

    // Inserts or replaces one sample, committed before returning.
    void put(const SampleRecord& s);
    // Sets the second judge's result of a stored sample (a no-op when the sample is absent).
    void put_rubric_b(const std::string& item_id, int sample, const std::string& result);
    // Clears every second-judge result (the second judge changed).
    void clear_rubric_b();
    // Every stored sample, ordered by item insertion order then sample index.
    std::vector<SampleRecord> samples();
    // The (item id, sample) pairs stored without an error.
    std::map<std::string, std::vector<int>> done();

    const std::string& path() const { return db_.path(); }

  private:
    SqliteDb db_;
};

}  // namespace crucible::eval
