// `crucible train rl --env server`: RL on the traces of an external agent (AReaL's, ART's and
// verifiers' way of training unmodified agents). The trainer serves its own policy over the
// OpenAI API (serve/server.h, in process, on the very weights it trains); each step offers its
// groups' episodes as sessions (serve/rl_sessions.h); the agent takes them, talks to the
// server naming the session, and posts each episode's reward; the server records every
// completion's ids as generated, and the trainer joins a session's turns into one
// token-exact training sequence. While the trainer updates, the server is paused: requests
// that were running finish first on the old weights, new ones wait, and every answer carries
// the policy version (the step) it was generated with. docs/SERVING.md, "RL endpoints".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "rl/episodes.h"
#include "rl/rl_config.h"
#include "serve/rl_sessions.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {
class Server;
}

namespace crucible::rl {

// A session's training sequence, joined from its turns token-exactly: the first turn's prompt;
// then each turn's completion (the model's ids) and, before each later turn, the ids its prompt
// adds after everything so far (what the agent appended: a tool's output, a user turn; in the
// sequence, masked from the loss).
struct SessionSequence {
    std::vector<int32_t> prompt;
    std::vector<int32_t> completion;
    std::vector<EpisodeSpan> spans;  // cover `completion`
    std::vector<float> logprobs;     // the engine's, at the model's ids
    bool truncated = false;          // the last turn ended at its token limit
    int turns = 0;
    // Set when the turns cannot be trained on as one sequence (the sequence is then empty): a
    // turn whose prompt does not start with every id so far (the agent re-rendered or
    // re-tokenized the conversation; the first differing position is named), or a turn
    // generated with other weights than `policy_version`.
    std::string error;
};
SessionSequence session_sequence(const std::vector<RlTurn>& turns, int64_t policy_version);

// The trainer's server and, when env.server.agent names one, the agent process.
class AgentServer {
  public:
    // Starts the server on `model` (paused: the trainer owns the model until run_round) and the
    // agent; writes <run_dir>/server.json ({"url", "port"}). Sessions must sample with
    // `sampling`'s temperature, top_p and top_k. Throws Error naming the address.
    AgentServer(const RlEnvConfig& env, Model& model, const TextTokenizer& tok,
                std::vector<int32_t> stop_ids, const std::string& model_name, bool require_correct,
                const SamplingParams& sampling, const std::filesystem::path& run_dir,
                std::ostream& log);
    // Tells agents training is over, stops the agent (SIGTERM after a grace period) and the
    // server.
    ~AgentServer();
    AgentServer(const AgentServer&) = delete;
    AgentServer& operator=(const AgentServer&) = delete;

    // One generation round: offers the episodes, serves at policy version `version` until each
    // has a reward or an error (or env.server.session_timeout_s passed), then pauses the server
    // and returns the outcomes in offer order. Throws Error when the agent process exited.
    std::vector<RlSessionOutcome> run_round(const std::vector<RlEpisodeOffer>& offers,
                                            int64_t version);
    const std::string& url() const { return url_; }  // http://HOST:PORT/v1

  private:
    bool agent_running();  // false once the agent exited (its status kept)
    void stop_agent();

    RlEnvConfig env_;
    std::filesystem::path run_dir_;
    std::shared_ptr<RlSessionHub> hub_;
    std::unique_ptr<Server> server_;
    std::thread serve_thread_;
    std::string url_;
    pid_t agent_ = -1;
    int agent_status_ = 0;
    bool agent_exited_ = false;
};

}  // namespace crucible::rl
