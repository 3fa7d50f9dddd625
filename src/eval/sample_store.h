// The durable record of an eval run: RUN_DIR/samples.sqlite holds the run's settings, its
// items and one row per (item, sample index). Each sample is committed as it completes, so a
// killed run loses at most the samples in flight; a re-run generates only the (item, sample)
// pairs that are absent or failed, and every statistic is recomputed from this table.
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
};

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
    std::vector<EvalItem> items();  // prompt/messages are not stored; answer, verifier, cluster

    // Inserts or replaces one sample, committed before returning.
    void put(const SampleRecord& s);
    // Every stored sample, ordered by item insertion order then sample index.
    std::vector<SampleRecord> samples();
    // The (item id, sample) pairs stored without an error.
    std::map<std::string, std::vector<int>> done();

    const std::string& path() const { return db_.path(); }

  private:
    SqliteDb db_;
};

}  // namespace crucible::eval
