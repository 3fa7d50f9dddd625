#include "serve/rl_sessions.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "serve/request_parse.h"
#include "serve/response_write.h"

namespace crucible {

using json = nlohmann::json;

namespace {

RlAnswer error_answer(int status, const std::string& message, const std::string& param) {
    const char* type = status == 404   ? "not_found_error"
                       : status == 409 ? "conflict_error"
                                       : "invalid_request_error";
    return {status, format_error(ApiError{status, message, param, type, ""})};
}

std::string random_nonce() {
    std::random_device rd;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%08x%08x", rd(), rd());
    return hex;
}

// A body that must be a JSON object; null when it is not (the answer is then in *bad).
json parse_object(const std::string& body, RlAnswer* bad) {
    json b = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (b.is_discarded() || !b.is_object()) {
        *bad = error_answer(400, "The request body must be a JSON object.", "");
        return json();
    }
    return b;
}

}  // namespace

RlSessionHub::RlSessionHub(bool require_correct, SamplingParams sampling)
    : require_correct_(require_correct), sampling_(std::move(sampling)), nonce_(random_nonce()) {}

std::vector<std::string> RlSessionHub::offer(const std::vector<RlEpisodeOffer>& offers,
                                             int64_t version) {
    std::vector<std::string> ids;
    {
        std::lock_guard<std::mutex> lock(mu_);
        version_ = version;
        for (const RlEpisodeOffer& o : offers) {
            const std::string id = "rl-" + nonce_ + "-" + std::to_string(next_++);
            Session s;
            s.offer = o;
            s.version = version;
            s.outcome.session = id;
            sessions_.emplace(id, std::move(s));
            order_.push_back(id);
            waiting_.push_back(id);
            ids.push_back(id);
        }
    }
    cv_.notify_all();
    return ids;
}

std::vector<RlSessionOutcome> RlSessionHub::collect(double timeout_s,
                                                    const std::function<bool()>& keep_waiting) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    std::unique_lock<std::mutex> lock(mu_);
    auto all_ended = [&] {
        for (const std::string& id : order_)
            if (!sessions_.at(id).ended) return false;
        return true;
    };
    std::string why;
    while (!all_ended()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            char text[128];
            std::snprintf(text, sizeof text,
                          "session_timeout: no reward was posted within %g s "
                          "(env.server.session_timeout_s)",
                          timeout_s);
            why = text;
            break;
        }
        lock.unlock();
        const bool go_on = !keep_waiting || keep_waiting();
        lock.lock();
        if (!go_on) {
            why = "the trainer stopped waiting for the session";
            break;
        }
        cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
    std::vector<RlSessionOutcome> out;
    for (const std::string& id : order_) {
        Session& s = sessions_.at(id);
        if (!s.ended) {
            s.ended = true;
            s.outcome.error = why;
            timed_out_++;
        }
        ended_[id] = s.outcome.reward                                   ? "its reward was posted"
                     : s.outcome.error.rfind("session_timeout", 0) == 0 ? "it timed out"
                                                                        : "it ended with an error";
        out.push_back(std::move(s.outcome));
    }
    sessions_.clear();
    order_.clear();
    waiting_.clear();
    return out;
}

void RlSessionHub::close() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        closed_ = true;
    }
    cv_.notify_all();
}

RlAnswer RlSessionHub::take(const std::string& body) {
    RlAnswer bad;
    double wait_s = 10;
    if (!body.empty()) {
        const json b = parse_object(body, &bad);
        if (b.is_null()) return bad;
        if (b.contains("wait_s") && !b["wait_s"].is_null()) {
            if (!b["wait_s"].is_number() || !(b["wait_s"].get<double>() >= 0) ||
                !(b["wait_s"].get<double>() <= 60)) {
                return error_answer(
                    400, "Invalid 'wait_s': expected a number of seconds in [0, 60].", "wait_s");
            }
            wait_s = b["wait_s"].get<double>();
        }
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::duration<double>(wait_s),
                 [&] { return closed_ || !waiting_.empty(); });
    if (closed_ || waiting_.empty()) {
        return {200, json{{"session", nullptr}, {"done", closed_}}.dump()};
    }
    const std::string id = waiting_.front();
    waiting_.pop_front();
    Session& s = sessions_.at(id);
    s.taken = true;
    const json answer = {{"session", id},
                         {"item", s.offer.item},
                         {"group", s.offer.group},
                         {"sample", s.offer.sample},
                         {"policy_version", s.version},
                         {"done", false}};
    return {200, answer.dump()};
}

RlAnswer RlSessionHub::post_reward(const std::string& body) {
    RlAnswer bad;
    const json b = parse_object(body, &bad);
    if (b.is_null()) return bad;
    if (!b.contains("session") || !b["session"].is_string()) {
        return error_answer(
            400, "Missing or invalid 'session': expected the session id (a string).", "session");
    }
    const std::string id = b["session"].get<std::string>();
    const bool has_reward = b.contains("reward") && !b["reward"].is_null();
    const bool has_error = b.contains("error") && !b["error"].is_null();
    if (has_reward == has_error) {
        return error_answer(
            400,
            "Post exactly one of 'reward' (a number) and 'error' (a string: why the "
            "episode has no reward).",
            has_reward ? "error" : "reward");
    }
    if (has_reward && (!b["reward"].is_number() || !std::isfinite(b["reward"].get<double>()))) {
        return error_answer(
            400, "Invalid 'reward': " + b["reward"].dump() + " is not a finite number.", "reward");
    }
    if (has_error && !b["error"].is_string()) {
        return error_answer(400, "Invalid 'error': expected a string.", "error");
    }
    std::optional<bool> correct;
    if (b.contains("correct") && !b["correct"].is_null()) {
        if (!b["correct"].is_boolean()) {
            return error_answer(400, "Invalid 'correct': expected true or false.", "correct");
        }
        correct = b["correct"].get<bool>();
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = sessions_.find(id);
        if (it == sessions_.end()) {
            auto e = ended_.find(id);
            if (e != ended_.end()) {
                return error_answer(409,
                                    "The RL session '" + id + "' has ended (" + e->second +
                                        "); a reward can be posted once.",
                                    "session");
            }
            return error_answer(
                404, "Unknown RL session '" + id + "' (sessions come from POST /v1/rl/episodes).",
                "session");
        }
        Session& s = it->second;
        if (s.ended) {
            return error_answer(
                409, "The RL session '" + id + "' has ended: its reward was already posted.",
                "session");
        }
        if (has_reward && require_correct_ && !correct) {
            return error_answer(400,
                                "This run's dynamic sampling filters groups on accuracy "
                                "(algorithm.dynamic_sampling_metric: accuracy): post 'correct' "
                                "(true or false) with the reward.",
                                "correct");
        }
        s.ended = true;
        s.outcome.correct = correct;
        if (has_reward) {
            s.outcome.reward = b["reward"].get<double>();
            rewards_posted_++;
        } else {
            s.outcome.error = "agent: " + b["error"].get<std::string>().substr(0, 500);
            errors_posted_++;
        }
        if (has_reward && s.outcome.turns.empty()) {
            s.outcome.reward.reset();
            s.outcome.error = "no completion was recorded in the session";
        }
        drop_waiting(id);
    }
    cv_.notify_all();
    return {200, json{{"session", id}, {"accepted", true}}.dump()};
}

RlAnswer RlSessionHub::status() const {
    std::lock_guard<std::mutex> lock(mu_);
    int open = 0;
    for (const auto& [id, s] : sessions_) open += !s.ended;
    const json answer = {{"policy_version", version_},
                         {"open_sessions", open},
                         {"waiting_sessions", waiting_.size()},
                         {"rewards_posted", rewards_posted_},
                         {"errors_posted", errors_posted_},
                         {"timed_out", timed_out_},
                         {"done", closed_}};
    return {200, answer.dump()};
}

void RlSessionHub::check(const std::string& session, int n, const SamplingParams& params) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session);
    if (it == sessions_.end()) {
        auto e = ended_.find(session);
        if (e != ended_.end()) {
            throw ApiError{409, "The RL session '" + session + "' has ended (" + e->second + ").",
                           "user", "conflict_error", ""};
        }
        throw ApiError{404,
                       "Unknown RL session '" + session +
                           "' (sessions come from POST /v1/rl/episodes; send the id as the "
                           "X-Session-Id header or the 'user' field).",
                       "user", "not_found_error", ""};
    }
    if (it->second.ended) {
        throw ApiError{409, "The RL session '" + session + "' has ended: its reward was posted.",
                       "user", "conflict_error", ""};
    }
    if (n != 1) {
        throw ApiError{400, "Invalid 'n': a request in an RL session generates one completion.",
                       "n", "invalid_request_error", ""};
    }
    const auto differs = [&](const char* field, double got, double want) {
        if (got == want) return;
        char text[256];
        std::snprintf(text, sizeof text,
                      "Invalid '%s' in an RL session: %g, but this run trains with %g (the "
                      "policy's own samples; rollout.%s).",
                      field, got, want, field);
        throw ApiError{400, text, field, "invalid_request_error", ""};
    };
    differs("temperature", params.temperature, sampling_.temperature);
    differs("top_p", params.top_p, sampling_.top_p);
    differs("top_k", params.top_k, sampling_.top_k);
    differs("min_p", params.min_p, 0.0);
    if (!it->second.taken) {  // used without being taken: no other agent may take it now
        it->second.taken = true;
        drop_waiting(session);
    }
}

void RlSessionHub::drop_waiting(const std::string& session) {
    for (auto w = waiting_.begin(); w != waiting_.end(); ++w) {
        if (*w == session) {
            waiting_.erase(w);
            return;
        }
    }
}

void RlSessionHub::record(const std::string& session, RlTurn turn) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session);
    if (it == sessions_.end() || it->second.ended) return;
    it->second.outcome.turns.push_back(std::move(turn));
}

}  // namespace crucible
