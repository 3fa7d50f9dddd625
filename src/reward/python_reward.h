// Reward functions written in Python, run out of process: a pool of persistent `python3`
// workers (any Python on PATH; nothing embedded) that import the user's file once and answer
// JSON lines over pipes. Two calling conventions, the field's habits:
//
//   trl:   f(prompts=[...], completions=[...], **columns) -> [float, ...]   (one call per batch;
//          each extra dataset column is a list over the batch, as TRL passes them)
//   verl:  f(data_source, solution_str, ground_truth, extra_info) -> float or {"score": float}
//          (one call per sample)
//
// Nothing is silently scored. A call that does not answer within timeout_s kills its worker
// (the whole process group) and restarts it; the samples of that call are then retried one
// by one, so only those that hang are marked `reward_timeout`. An exception, a value that is
// not a number, a non-finite value or a wrong-length list marks its samples with the
// exception's last line. A worker whose answer is not a JSON line is restarted and its
// samples marked. The user's prints go to this process's stderr, never into the protocol.
//
// With `sandbox`, no process persists: each call runs a fresh python3 inside `crucible
// sandbox` (src/sandbox: no network, a read-only root with the reward file's folder visible,
// an empty scratch, memory and process limits), which imports the file and answers that one
// call. The call's time limit is timeout_s plus the import time measured when the pool
// starts; the rest (per-sample retry after a timeout, marking) is the same.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace crucible::reward {

struct PythonRewardOptions {
    std::string file;      // the .py file
    std::string function;  // the function's name in it
    enum class Signature { trl, verl };
    Signature signature = Signature::trl;
    double timeout_s = 5.0;  // per call
    int workers = 2;         // processes; a batch is split among them
    std::string python = "python3";
    bool sandbox = false;          // each call in a fresh sandboxed python3 (see above)
    size_t sandbox_mem_mb = 1024;  // memory of one sandboxed call
};

// Parses "trl" or "verl"; throws Error naming `what` otherwise.
PythonRewardOptions::Signature parse_python_signature(const std::string& value,
                                                      const std::string& what);

struct PythonRewardSample {
    std::string prompt;
    std::string completion;
    std::string answer;                                 // verl: ground_truth
    nlohmann::json columns = nlohmann::json::object();  // the item's other fields
};

struct PythonRewardResult {
    std::optional<double> score;  // a finite number, or none with `error`
    std::string error;            // "reward_timeout: ..." or the exception's last line
    bool timeout = false;
};

struct PythonRewardStats {
    int64_t calls = 0, samples = 0, failed = 0, timeouts = 0, restarts = 0;
};

class PythonRewardPool {
  public:
    // Starts the workers; each imports the file and finds the function. Throws Error naming
    // the file (and the Python error's last line) when it cannot.
    explicit PythonRewardPool(PythonRewardOptions options);
    ~PythonRewardPool();
    PythonRewardPool(const PythonRewardPool&) = delete;
    PythonRewardPool& operator=(const PythonRewardPool&) = delete;

    // One result per sample, in order. Thread-safe (calls are serialized).
    std::vector<PythonRewardResult> score(const std::vector<PythonRewardSample>& samples);

    PythonRewardStats stats() const;
    const PythonRewardOptions& options() const { return options_; }

  private:
    struct Worker;
    // Runs samples [begin, end) as one call on worker w; fills out[begin, end). Returns false
    // when the call timed out (the worker was restarted and nothing was filled).
    bool call(size_t w, const std::vector<PythonRewardSample>& samples, size_t begin, size_t end,
              std::vector<PythonRewardResult>* out);
    void start(size_t w);
    // The sandboxed form of call(): one fresh process for samples [begin, end).
    bool call_sandboxed(const std::string& request, size_t begin, size_t end,
                        std::vector<PythonRewardResult>* out);
    // Runs the worker in the sandbox on `request_lines` (a request per line; none: only the
    // import) within `wall_s`; returns its stdout lines, or sets *timed_out / *why.
    std::vector<std::string> run_in_sandbox(const std::string& request_lines, double wall_s,
                                            bool* timed_out, std::string* why);
    // start() after a kill; a failure leaves the worker dead (its next call fails and retries).
    void restart(size_t w);

    PythonRewardOptions options_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::mutex call_mutex_;     // one score() at a time
    mutable std::mutex mutex_;  // stats_
    PythonRewardStats stats_;
    std::string executable_;  // options_.python resolved on PATH
    double import_s_ = 0;     // sandbox: the import's wall time, measured at start
};

}  // namespace crucible::reward
