// RL on traces captured by the server (`crucible train rl --env server`; docs/SERVING.md, "RL
// endpoints"). The trainer offers a step's episodes as sessions; an external agent takes one
// (POST /v1/rl/episodes), runs it against the server's completions endpoints naming the
// session (the X-Session-Id header, or the request's `user` field), and posts the episode's
// reward (POST /v1/rl/reward). The server records each completion of a session exactly as
// generated: prompt ids, completion ids, the engine's logprobs and the policy version. The
// trainer collects the outcomes in offer order and builds its training sequences from them.
//
// Nothing an agent sends is trusted: an unknown session, a session that has ended, a second
// reward, a reward that is not a finite number, each gets one clear error, and an episode the
// agent never finishes ends with an error when the trainer stops waiting (never a silent 0).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace crucible {

// One completion of a session, as generated.
struct RlTurn {
    std::vector<int32_t> prompt;      // the request's prompt ids (after any chat template)
    std::vector<int32_t> completion;  // generated ids (the stop id included when it ended it)
    std::vector<float> logprobs;      // the engine's, per completion id
    std::string finish;               // "stop" or "length"
    int64_t policy_version = 0;       // the weights it was generated with
};

// An episode the trainer offers: what the agent is told about its item, and its place.
struct RlEpisodeOffer {
    nlohmann::json item;  // {"id", "prompt", "answer", ...}: the agent scores the episode
    int group = 0;
    int sample = 0;
};

// How an offered episode ended.
struct RlSessionOutcome {
    std::string session;
    std::vector<RlTurn> turns;     // in the order the completions finished
    std::optional<double> reward;  // none: no reward (see error)
    std::optional<bool> correct;   // the agent's verdict, when it posted one
    std::string error;             // why there is no reward (the agent's error, a timeout)
};

// An answer to one of the RL endpoints.
struct RlAnswer {
    int status = 200;
    std::string body;  // JSON
};

class RlSessionHub {
  public:
    // require_correct: every reward must say whether the episode was correct (a run whose
    // dynamic sampling filters on accuracy). `sampling`: the temperature, top_p and top_k the
    // run trains with (min_p 0); a session's request must sample with exactly these, or the
    // trainer would take samples of another distribution for the policy's own.
    RlSessionHub(bool require_correct, SamplingParams sampling);

    // ---- the trainer
    // Offers episodes as new sessions of policy version `version`; returns their ids. The
    // offers of an earlier call must have been collected.
    std::vector<std::string> offer(const std::vector<RlEpisodeOffer>& offers, int64_t version);
    // Waits until every offered session has ended (a reward or an error posted), timeout_s
    // seconds have passed since the offer, or keep_waiting() (asked about every 0.2 s) says
    // false; sessions still open then end with an error. Returns the outcomes in offer order.
    std::vector<RlSessionOutcome> collect(double timeout_s,
                                          const std::function<bool()>& keep_waiting);
    // No more episodes: POST /v1/rl/episodes answers done, open sessions end.
    void close();

    // ---- the server's handlers
    // POST /v1/rl/episodes {"wait_s": S}: the next offered episode (waiting up to S seconds,
    // at most 60, default 10, for one), {"session": null, "done": false} when none came, or
    // {"session": null, "done": true} once training is over.
    RlAnswer take(const std::string& body);
    // POST /v1/rl/reward {"session", "reward", "correct"?} or {"session", "error"}.
    RlAnswer post_reward(const std::string& body);
    // GET /v1/rl/status: the policy version and the sessions' counts.
    RlAnswer status() const;
    // Before a completion of `session` runs: throws ApiError (404 unknown session, 409 ended,
    // 400 n > 1 or sampling settings other than the run's); a session used before it was
    // taken is taken by this use.
    void check(const std::string& session, int n, const SamplingParams& params);
    // A completion of `session` finished (dropped when the session has ended meanwhile).
    void record(const std::string& session, RlTurn turn);

  private:
    void drop_waiting(const std::string& session);  // with mu_ held
    struct Session {
        RlEpisodeOffer offer;
        bool taken = false;
        bool ended = false;
        RlSessionOutcome outcome;
        int64_t version = 0;
    };
    const bool require_correct_;
    const SamplingParams sampling_;
    const std::string nonce_;  // a run's session ids differ from another run's
    mutable std::mutex mu_;
    std::condition_variable cv_;                // a session ended, or one was offered
    std::map<std::string, Session> sessions_;   // this offer's
    std::map<std::string, std::string> ended_;  // earlier offers' ids: why they ended
    std::vector<std::string> order_;            // this offer's ids, in offer order
    std::deque<std::string> waiting_;           // offered, not yet taken
    int64_t version_ = 0;
    int64_t next_ = 1;
    bool closed_ = false;
    int64_t rewards_posted_ = 0, errors_posted_ = 0, timed_out_ = 0;
};

}  // namespace crucible
