#include "rl/agent_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "core/file_io.h"
#include "serve/server.h"

extern char** environ;

namespace crucible::rl {

namespace fs = std::filesystem;

SessionSequence session_sequence(const std::vector<RlTurn>& turns, int64_t policy_version) {
    SessionSequence q;
    if (turns.empty()) {
        q.error = "no completion was recorded in the session";
        return q;
    }
    std::vector<int32_t> so_far;  // prompt and completion ids, in order
    for (size_t k = 0; k < turns.size(); k++) {
        const RlTurn& t = turns[k];
        const std::string turn =
            "turn " + std::to_string(k + 1) + " of " + std::to_string(turns.size());
        if (t.policy_version != policy_version) {
            return SessionSequence{{},
                                   {},
                                   {},
                                   {},
                                   false,
                                   0,
                                   turn + " was generated with policy version " +
                                       std::to_string(t.policy_version) + ", not the step's " +
                                       std::to_string(policy_version)};
        }
        if (t.logprobs.size() != t.completion.size()) {
            return SessionSequence{
                {}, {}, {}, {}, false, 0, turn + ": the engine returned no logprob for every id"};
        }
        if (k == 0) {
            q.prompt = t.prompt;
            so_far = t.prompt;
        } else {
            size_t same = 0;
            while (same < so_far.size() && same < t.prompt.size() && so_far[same] == t.prompt[same])
                same++;
            if (same < so_far.size()) {
                return SessionSequence{
                    {},
                    {},
                    {},
                    {},
                    false,
                    0,
                    turn +
                        "'s prompt does not continue the session token-exactly: it differs "
                        "at token " +
                        std::to_string(same) + " of the " + std::to_string(so_far.size()) +
                        " so far (send earlier turns back as they were generated, e.g. "
                        "/v1/completions with token ids from return_token_ids)"};
            }
            if (t.prompt.size() > so_far.size()) {  // what the agent appended: not trained on
                const size_t b = q.completion.size();
                q.completion.insert(q.completion.end(), t.prompt.begin() + so_far.size(),
                                    t.prompt.end());
                q.spans.push_back({EpisodeSpan::Kind::tool, b, q.completion.size()});
                so_far.insert(so_far.end(), t.prompt.begin() + so_far.size(), t.prompt.end());
            }
        }
        const size_t b = q.completion.size();
        q.completion.insert(q.completion.end(), t.completion.begin(), t.completion.end());
        q.logprobs.insert(q.logprobs.end(), t.logprobs.begin(), t.logprobs.end());
        if (q.completion.size() > b)
            q.spans.push_back({EpisodeSpan::Kind::model, b, q.completion.size()});
        so_far.insert(so_far.end(), t.completion.begin(), t.completion.end());
        q.turns++;
        q.truncated = t.finish == "length";
    }
    return q;
}

AgentServer::AgentServer(const RlEnvConfig& env, Model& model, const TextTokenizer& tok,
                         std::vector<int32_t> stop_ids, const std::string& model_name,
                         bool require_correct, const SamplingParams& sampling,
                         const fs::path& run_dir, std::ostream& log)
    : env_(env),
      run_dir_(run_dir),
      hub_(std::make_shared<RlSessionHub>(require_correct, sampling)) {
    ServerOptions o;
    o.host = env.server_host;
    o.port = env.server_port;
    o.served_model_name = model_name;
    o.model = &model;
    o.tokenizer = &tok;
    o.stop_ids = std::move(stop_ids);
    o.rl_sessions = hub_;
    try {
        server_ = std::make_unique<Server>(std::move(o));
    } catch (const Error& e) {
        throw Error(std::string("config: env.server: ") + e.what());
    }
    server_->pause();  // the trainer owns the model until the first round
    serve_thread_ = std::thread([this] { server_->run(); });
    const std::string host = env.server_host.find(':') != std::string::npos
                                 ? "[" + env.server_host + "]"
                                 : env.server_host;
    url_ = "http://" + host + ":" + std::to_string(server_->port()) + "/v1";
    const nlohmann::json info = {{"url", url_}, {"port", server_->port()}, {"model", model_name}};
    fs::create_directories(run_dir_);
    write_file_durable(run_dir_ / "server.json", info.dump() + "\n");
    log << "rl: serving the policy at " << url_
        << " (episodes: POST /v1/rl/episodes, rewards: POST /v1/rl/reward)\n";
    if (env.server_agent.empty()) return;

    // The agent's environment: ours, with the server's address.
    std::vector<std::string> vars;
    for (char** e = environ; *e != nullptr; e++) {
        const std::string v = *e;
        if (v.rfind("OPENAI_BASE_URL=", 0) == 0 || v.rfind("CRUCIBLE_RL_URL=", 0) == 0) continue;
        vars.push_back(v);
    }
    vars.push_back("OPENAI_BASE_URL=" + url_);
    vars.push_back("CRUCIBLE_RL_URL=" + url_);
    if (std::getenv("OPENAI_API_KEY") == nullptr) vars.push_back("OPENAI_API_KEY=crucible");
    std::vector<char*> envp;
    for (std::string& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::string shell = "/bin/sh", dash_c = "-c", command = env.server_agent;
    char* args[] = {shell.data(), dash_c.data(), command.data(), nullptr};
    const std::string log_path = (run_dir_ / "agent.log").string();
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0) {
        if (out >= 0) ::close(out);
        if (in >= 0) ::close(in);
        throw Error(log_path + ": cannot open the agent's log: " + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid == 0) {  // only async-signal-safe calls from here
        ::setpgid(0, 0);
        ::dup2(in, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::execve(shell.c_str(), args, envp.data());
        ::_exit(127);
    }
    ::close(out);
    ::close(in);
    if (pid < 0) throw Error(std::string("env.server.agent: fork failed: ") + std::strerror(errno));
    ::setpgid(pid, pid);  // also here: no race with the signals that stop it
    agent_ = pid;
    log << "rl: started the agent (" << env.server_agent << "), output in " << log_path << "\n";
}

bool AgentServer::agent_running() {
    if (agent_ < 0) return !agent_exited_;
    int status = 0;
    if (::waitpid(agent_, &status, WNOHANG) == agent_) {
        agent_status_ = status;
        agent_exited_ = true;
        agent_ = -1;
    }
    return !agent_exited_;
}

void AgentServer::stop_agent() {
    if (agent_ < 0) return;
    // It sees "done" and should exit by itself; then it is asked, then told.
    for (int sig : {0, SIGTERM, SIGKILL}) {
        if (sig != 0) ::kill(-agent_, sig);
        for (int i = 0; i < 50 && agent_running(); i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!agent_running()) return;
    }
}

AgentServer::~AgentServer() {
    hub_->close();
    stop_agent();
    server_->resume(-1);  // a paused server cannot drain its queue
    server_->stop();
    if (serve_thread_.joinable()) serve_thread_.join();
}

std::vector<RlSessionOutcome> AgentServer::run_round(const std::vector<RlEpisodeOffer>& offers,
                                                     int64_t version) {
    hub_->offer(offers, version);
    server_->resume(version);
    const bool has_agent = !env_.server_agent.empty();
    std::vector<RlSessionOutcome> outcomes =
        hub_->collect(env_.session_timeout_s, [&] { return !has_agent || agent_running(); });
    server_->pause();
    if (has_agent && agent_exited_) {
        const int st = agent_status_;
        throw Error("rl: the agent (env.server.agent) " +
                    (WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                                   : "was killed by signal " + std::to_string(WTERMSIG(st))) +
                    " before the step's episodes were done; its output is in " +
                    (run_dir_ / "agent.log").string());
    }
    return outcomes;
}

}  // namespace crucible::rl
