#include "rl/episodes.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/rng.h"

namespace crucible::rl {

std::vector<uint8_t> Episode::model_mask() const {
    if (std::all_of(spans.begin(), spans.end(),
                    [](const EpisodeSpan& s) { return s.kind == EpisodeSpan::Kind::model; }))
        return {};
    std::vector<uint8_t> mask(completion.size(), 0);
    for (const EpisodeSpan& s : spans) {
        if (s.kind != EpisodeSpan::Kind::model) continue;
        std::fill(mask.begin() + static_cast<ptrdiff_t>(s.begin),
                  mask.begin() + static_cast<ptrdiff_t>(s.end), uint8_t{1});
    }
    return mask;
}

std::vector<int32_t> cut_observation(const std::vector<int32_t>& ids, int max_tokens,
                                     const TextTokenizer& tok) {
    const int n = static_cast<int>(ids.size());
    if (max_tokens < 1 || n <= max_tokens) return ids;
    // The marker names how many ids it replaces, which depends on its own length: shrink what
    // is kept until the marker for it fits beside it.
    const auto marker_for = [&](int keep) {
        return tok.encode("\n...[" + std::to_string(n - keep) + " tokens cut]...\n");
    };
    int keep = max_tokens;
    std::vector<int32_t> marker;
    for (;;) {
        marker = marker_for(keep);
        const int fit = max_tokens - static_cast<int>(marker.size());
        if (fit < 2) return {ids.begin(), ids.begin() + max_tokens};  // too small for a marker
        if (fit >= keep) break;
        keep = fit;
    }
    const int head = (keep + 1) / 2, tail = keep - head;
    std::vector<int32_t> out(ids.begin(), ids.begin() + head);
    out.insert(out.end(), marker.begin(), marker.end());
    out.insert(out.end(), ids.end() - tail, ids.end());
    return out;
}

std::string completion_text(const TextTokenizer& tok, const std::vector<int32_t>& ids) {
    if (!ids.empty() && ids.back() == tok.eos) {
        return tok.decode(std::vector<int32_t>(ids.begin(), ids.end() - 1));
    }
    return tok.decode(ids);
}

EngineOptions episode_engine_options(const TextTokenizer& tok) {
    EngineOptions options;
    options.detokenize = tok.decode;
    return options;
}

Generator engine_generator(Model& model, const TextTokenizer& tok) {
    return [&model, &tok](const std::vector<GenerationRequest>& requests,
                          const std::function<void(size_t, const std::vector<GeneratedSequence>&)>&
                              on_request_done) {
        Engine engine(model, episode_engine_options(tok));
        return engine.generate(requests, {}, on_request_done);
    };
}

namespace {

// The environment's step; one that throws ends the episode with its error (in *error). Touches
// only `env`, so step workers call it too.
env::StepResult run_step(env::Environment& env, const env::Turn& turn, std::string* error) {
    try {
        return env.step(turn);
    } catch (const std::exception& ex) {
        *error = std::string("env: ") + ex.what();
        env::StepResult r;
        r.done = true;
        return r;
    }
}

// Threads that run environment steps while the engine decodes (EpisodeLimits::tool_workers).
// Each job touches only its own environment; results come back in the order they finish. A
// step still running after `timeout_s` (> 0) comes back as an error and its thread is left
// behind (a running step cannot be stopped safely): the job keeps its environment alive, a
// new thread takes the abandoned one's place, and whatever the step returns later is dropped.
// The threads are detached and share their state through a shared_ptr, so a step that never
// returns costs a thread, never the run.
class StepWorkers {
  public:
    struct Job {
        size_t group, sample;
        int64_t held;
        env::Turn turn;
        std::shared_ptr<env::Environment> env;
        env::StepResult result;
        std::string error;
    };

    StepWorkers(int n, double timeout_s)
        : shared_(std::make_shared<Shared>()), workers_(n), timeout_s_(timeout_s) {
        for (int i = 0; i < n; i++) start_thread();
    }
    ~StepWorkers() {
        {
            std::lock_guard<std::mutex> lock(shared_->mu);
            shared_->quit = true;
        }
        shared_->cv.notify_all();
    }
    size_t size() const { return static_cast<size_t>(workers_); }
    size_t pending() const {
        std::lock_guard<std::mutex> lock(shared_->mu);
        return shared_->pending;
    }
    void push(Job job) {
        {
            std::lock_guard<std::mutex> lock(shared_->mu);
            auto slot = std::make_shared<Slot>();
            slot->job = std::move(job);
            shared_->todo.push_back(std::move(slot));
            shared_->pending++;
        }
        shared_->cv.notify_one();
    }
    // The jobs done (or timed out) since the last call; with `wait`, blocks until there is
    // one (unless none is pending).
    std::vector<Job> take(bool wait) {
        std::unique_lock<std::mutex> lock(shared_->mu);
        for (;;) {
            expire(lock);
            if (!wait || !shared_->done.empty() || shared_->pending == 0) break;
            const auto next = next_deadline();
            if (next)
                shared_->done_cv.wait_until(lock, *next);
            else
                shared_->done_cv.wait(lock);
        }
        std::vector<Job> out;
        // An abandoned step still reads its turn and environment: hand out copies of those.
        for (auto& slot : shared_->done)
            out.push_back(slot->abandoned ? slot->job : std::move(slot->job));
        shared_->done.clear();
        shared_->pending -= out.size();
        return out;
    }

  private:
    using Clock = std::chrono::steady_clock;
    struct Slot {
        Job job;
        std::optional<Clock::time_point> started;  // when a thread took it
        bool finished = false;                     // returned, or given up on
        bool abandoned = false;                    // given up on while its step runs
    };
    struct Shared {
        std::mutex mu;
        std::condition_variable cv, done_cv;
        std::deque<std::shared_ptr<Slot>> todo;
        std::vector<std::shared_ptr<Slot>> running, done;
        size_t pending = 0;  // pushed and not yet taken
        bool quit = false;
    };

    void start_thread() {
        std::thread([shared = shared_] {
            for (;;) {
                std::shared_ptr<Slot> slot;
                {
                    std::unique_lock<std::mutex> lock(shared->mu);
                    shared->cv.wait(lock, [&] { return shared->quit || !shared->todo.empty(); });
                    if (shared->todo.empty()) return;
                    slot = std::move(shared->todo.front());
                    shared->todo.pop_front();
                    slot->started = Clock::now();
                    shared->running.push_back(slot);
                }
                std::string error;
                env::StepResult result = run_step(*slot->job.env, slot->job.turn, &error);
                std::lock_guard<std::mutex> lock(shared->mu);
                auto& running = shared->running;
                running.erase(std::find(running.begin(), running.end(), slot));
                if (slot->finished) return;  // given up on: a replacement took this place
                slot->finished = true;
                slot->job.result = std::move(result);
                slot->job.error = std::move(error);
                shared->done.push_back(slot);
                shared->done_cv.notify_one();
            }
        }).detach();
    }

    // Gives up on the steps running longer than the timeout (under the lock).
    void expire(std::unique_lock<std::mutex>&) {
        if (!(timeout_s_ > 0)) return;
        const auto now = Clock::now();
        for (auto& slot : shared_->running) {
            if (slot->finished || now - *slot->started < limit()) continue;
            slot->finished = true;
            slot->abandoned = true;
            slot->job.result = env::StepResult{};
            slot->job.result.done = true;
            char buf[96];
            std::snprintf(buf, sizeof buf, "env: the step did not return within %g s", timeout_s_);
            slot->job.error = buf;
            shared_->done.push_back(slot);
            start_thread();  // the stuck thread's replacement
        }
    }
    std::optional<Clock::time_point> next_deadline() const {
        std::optional<Clock::time_point> next;
        if (!(timeout_s_ > 0)) return next;
        for (const auto& slot : shared_->running) {
            if (slot->finished) continue;
            const auto at = *slot->started + limit();
            if (!next || at < *next) next = at;
        }
        return next;
    }
    Clock::duration limit() const {
        return std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(timeout_s_));
    }

    std::shared_ptr<Shared> shared_;
    int workers_;
    double timeout_s_;
};

// Where an episode stands between rounds.
struct Waiting {
    size_t group;
    size_t sample;
};

class Runner {
  public:
    Runner(std::vector<EpisodeGroup>& groups, const TextTokenizer& tok, const EpisodeLimits& limits,
           const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done)
        : groups_(groups), tok_(tok), limits_(limits), on_group_done_(on_group_done) {
        episodes_.resize(groups.size());
        left_.resize(groups.size());
        for (size_t g = 0; g < groups.size(); g++) {
            episodes_[g].resize(groups[g].envs.size());
            left_[g] = groups[g].envs.size();
            for (size_t s = 0; s < groups[g].envs.size(); s++)
                episodes_[g][s].env = groups[g].envs[s];
        }
    }

    // Ids episode (g, e) may still add: the budget after the prompt, and the context.
    int room(size_t g, const Episode& e) const {
        const int used = static_cast<int>(e.completion.size());
        int left = limits_.max_new_tokens - used;
        if (limits_.max_context > 0)
            left =
                std::min(left, limits_.max_context - static_cast<int>(prompts_[g].size()) - used);
        return left;
    }

    int max_tokens(size_t g, const Episode& e) const {
        const int remaining = room(g, e);
        return limits_.max_tokens_per_turn > 0 ? std::min(remaining, limits_.max_tokens_per_turn)
                                               : remaining;
    }

    // The model's turn `gs` of episode (g, s): the environment's step, then the observation or
    // the end. Returns whether the episode goes on.
    bool take_turn(size_t g, size_t s, const GeneratedSequence& gs) {
        env::Turn turn = begin_turn(g, s, gs);
        std::string error;
        env::StepResult r = run_step(*episodes_[g][s].env, turn, &error);
        return end_turn(g, s, turn, std::move(r), error);
    }

    // The turn's ids into episode (g, s); the Turn its environment steps on.
    env::Turn begin_turn(size_t g, size_t s, const GeneratedSequence& gs) {
        Episode& e = episodes_[g][s];
        const size_t begin = e.completion.size();
        e.completion.insert(e.completion.end(), gs.tokens.begin(), gs.tokens.end());
        e.spans.push_back({EpisodeSpan::Kind::model, begin, e.completion.size()});
        e.turns++;
        env::Turn turn;
        turn.ids = gs.tokens;
        turn.eos = !turn.ids.empty() && turn.ids.back() == tok_.eos;
        turn.text = completion_text(tok_, turn.ids);
        turn.truncated = gs.finish_reason == "length";
        return turn;
    }

    // The step's result into episode (g, s): its info, reward, the observation or the end.
    // Returns whether the episode goes on.
    bool end_turn(size_t g, size_t s, const env::Turn& turn, env::StepResult r,
                  const std::string& error) {
        Episode& e = episodes_[g][s];
        if (!error.empty()) e.error = error;
        if (r.info.is_object()) {
            if (r.info.contains("tool")) e.tool_calls++;
            if (r.info.contains("malformed")) e.malformed_calls++;
            if (r.info.contains("tool_error")) e.tool_errors++;
            if (r.info.contains("end") && r.info["end"].is_string()) e.end = r.info["end"];
        }
        if (r.reward) {
            e.step_reward += *r.reward;
            e.has_step_reward = true;
        }
        if (r.done) {
            e.truncated = turn.truncated;
            return false;
        }
        int remaining = room(g, e);
        if (r.observation) {
            std::vector<int32_t> obs = tok_.encode(*r.observation);
            if (limits_.max_observation_tokens > 0)
                obs = cut_observation(obs, limits_.max_observation_tokens, tok_);
            const bool cut = static_cast<int>(obs.size()) >= remaining;
            if (cut) obs.resize(static_cast<size_t>(std::max(remaining, 0)));
            const size_t ob = e.completion.size();
            e.completion.insert(e.completion.end(), obs.begin(), obs.end());
            if (!obs.empty()) e.spans.push_back({EpisodeSpan::Kind::tool, ob, e.completion.size()});
            remaining -= static_cast<int>(obs.size());
        }
        if (remaining <= 0) {
            e.end = "budget";
            e.truncated = true;
            return false;
        }
        return true;
    }

    // The first turn's requests: one per group, its samples sharing the prompt.
    void first_requests(std::vector<GenerationRequest>* requests,
                        std::vector<size_t>* request_group) {
        prompts_.resize(groups_.size());
        for (size_t g = 0; g < groups_.size(); g++) {
            EpisodeGroup& grp = groups_[g];
            if (grp.envs.empty()) continue;
            if (grp.item == nullptr) throw Error("run_episodes: a group without an item");
            std::vector<int32_t> ids;
            for (size_t s = 0; s < grp.envs.size(); s++) {
                env::Prompt p = grp.envs[s]->reset(*grp.item);
                if (p.ids.empty()) p.ids = tok_.encode(p.text);
                if (s == 0) {
                    ids = std::move(p.ids);
                } else if (p.ids != ids) {
                    throw Error("run_episodes: item '" + grp.item->id +
                                "': the episodes of one group start from different prompts");
                }
            }
            prompts_[g] = ids;
            if (max_tokens(g, episodes_[g][0]) < 1)
                throw Error("run_episodes: item '" + grp.item->id + "': its prompt of " +
                            std::to_string(ids.size()) + " ids leaves no room in the context of " +
                            std::to_string(limits_.max_context));
            GenerationRequest r;
            r.prompt = std::move(ids);
            r.params = grp.params;
            r.params.max_tokens = max_tokens(g, episodes_[g][0]);
            r.params.stop_strings = grp.envs[0]->stop_strings();
            r.n = static_cast<int>(grp.envs.size());
            requests->push_back(std::move(r));
            request_group->push_back(g);
        }
    }

    // The request of episode (g, s)'s next turn: the whole id sequence so far.
    GenerationRequest next_request(size_t g, size_t s) const {
        const EpisodeGroup& grp = groups_[g];
        const Episode& e = episodes_[g][s];
        GenerationRequest r;
        r.prompt = prompts_[g];
        r.prompt.insert(r.prompt.end(), e.completion.begin(), e.completion.end());
        r.params = grp.params;
        r.params.seed = Rng::mix(Rng::mix(grp.params.seed, s), static_cast<uint64_t>(e.turns));
        r.params.max_tokens = max_tokens(g, e);
        r.params.stop_strings = e.env->stop_strings();
        r.n = 1;
        return r;
    }

    std::vector<std::vector<Episode>> run(const Generator& generate) {
        std::vector<GenerationRequest> requests;
        std::vector<size_t> request_group;
        first_requests(&requests, &request_group);
        std::vector<char> taken(requests.size(), 0);
        const auto round0_done = [&](size_t r, const std::vector<GeneratedSequence>& samples) {
            taken.at(r) = 1;
            const size_t g = request_group[r];
            for (size_t s = 0; s < samples.size(); s++) turn_done(g, s, samples[s]);
        };
        // Results the generator did not report as it went are taken at the end.
        const auto outs = generate(requests, round0_done);
        for (size_t r = 0; r < requests.size(); r++) {
            if (!taken[r]) round0_done(r, outs.at(r));
        }
        while (!next_.empty()) {
            std::vector<Waiting> waiting;
            waiting.swap(next_);
            requests.clear();
            for (const Waiting& w : waiting) requests.push_back(next_request(w.group, w.sample));
            std::vector<char> done_now(requests.size(), 0);
            const auto done = [&](size_t r, const std::vector<GeneratedSequence>& samples) {
                done_now.at(r) = 1;
                turn_done(waiting[r].group, waiting[r].sample, samples.at(0));
            };
            const auto later = generate(requests, done);
            for (size_t r = 0; r < requests.size(); r++) {
                if (!done_now[r]) done(r, later.at(r));
            }
        }
        return std::move(episodes_);
    }

    // On one engine: every turn held, each next turn submitted as soon as its environment
    // step returns, continuing from the held KV. With limits_.tool_workers > 0 the steps run
    // on that many threads while the engine keeps stepping; else on this thread between
    // engine steps.
    std::vector<std::vector<Episode>> run(Engine& engine, bool keep_kv) {
        std::vector<GenerationRequest> requests;
        std::vector<size_t> request_group;
        first_requests(&requests, &request_group);
        struct Finished {
            size_t group, sample;  // sample: SIZE_MAX for a first turn (all its samples)
            std::vector<GeneratedSequence> results;
        };
        std::vector<Finished> finished;
        const auto submit = [&](GenerationRequest r, size_t g, size_t s) {
            r.hold = keep_kv;
            engine.submit(
                std::move(r), {},
                [&finished, g, s](std::vector<GeneratedSequence>&& out) {
                    finished.push_back({g, s, std::move(out)});
                },
                /*rescore_when_done=*/false);
        };
        // A step's result applied: the next turn submitted, or the episode ended.
        const auto stepped_turn = [&](size_t g, size_t s, int64_t held, const env::Turn& turn,
                                      env::StepResult r, const std::string& error) {
            if (end_turn(g, s, turn, std::move(r), error)) {
                GenerationRequest next = next_request(g, s);
                next.continue_from = held;
                submit(std::move(next), g, s);
            } else {
                engine.release(held);
                if (--left_[g] == 0 && on_group_done_) on_group_done_(g, episodes_[g]);
            }
        };
        StepWorkers workers(limits_.tool_workers, limits_.step_timeout_s);
        for (size_t i = 0; i < requests.size(); i++)
            submit(std::move(requests[i]), request_group[i], SIZE_MAX);
        for (;;) {
            const bool stepped = engine.step();
            std::vector<Finished> now;
            now.swap(finished);
            // In the order the engine finished them: the same order every run.
            for (Finished& f : now) {
                for (size_t i = 0; i < f.results.size(); i++) {
                    const size_t s = f.sample == SIZE_MAX ? i : f.sample;
                    const int64_t held = f.results[i].held;
                    env::Turn turn = begin_turn(f.group, s, f.results[i]);
                    if (workers.size() > 0) {
                        workers.push(
                            {f.group, s, held, std::move(turn), episodes_[f.group][s].env, {}, {}});
                        continue;
                    }
                    std::string error;
                    env::StepResult r = run_step(*episodes_[f.group][s].env, turn, &error);
                    stepped_turn(f.group, s, held, turn, std::move(r), error);
                }
            }
            const bool idle =
                !stepped && now.empty() && engine.num_running() == 0 && engine.num_waiting() == 0;
            // Steps the workers finished: with nothing left to decode, wait for one.
            for (StepWorkers::Job& j : workers.take(idle))
                stepped_turn(j.group, j.sample, j.held, j.turn, std::move(j.result), j.error);
            if (idle && workers.pending() == 0 && finished.empty() && engine.num_running() == 0 &&
                engine.num_waiting() == 0)
                break;
        }
        return std::move(episodes_);
    }

  private:
    void turn_done(size_t g, size_t s, const GeneratedSequence& gs) {
        if (take_turn(g, s, gs)) {
            next_.push_back({g, s});
            return;
        }
        if (--left_[g] == 0 && on_group_done_) on_group_done_(g, episodes_[g]);
    }

    std::vector<EpisodeGroup>& groups_;
    const TextTokenizer& tok_;
    const EpisodeLimits& limits_;
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done_;
    std::vector<std::vector<Episode>> episodes_;
    std::vector<size_t> left_;  // episodes of each group still running
    std::vector<std::vector<int32_t>> prompts_;
    std::vector<Waiting> next_;
};

}  // namespace

std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, const Generator& generate, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done) {
    if (limits.max_new_tokens < 1) throw Error("run_episodes: max_new_tokens must be >= 1");
    Runner runner(groups, tok, limits, on_group_done);
    return runner.run(generate);
}

std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, const EpisodeSource& source, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done) {
    if (source.scripted) return run_episodes(groups, source.scripted, tok, limits, on_group_done);
    if (source.model == nullptr) throw Error("run_episodes: neither a model nor a policy");
    Engine engine(*source.model, episode_engine_options(tok));
    return run_episodes(groups, engine, tok, limits, on_group_done);
}

std::vector<std::vector<Episode>> run_episodes(
    std::vector<EpisodeGroup>& groups, Engine& engine, const TextTokenizer& tok,
    const EpisodeLimits& limits,
    const std::function<void(size_t, const std::vector<Episode>&)>& on_group_done, bool keep_kv) {
    if (limits.max_new_tokens < 1) throw Error("run_episodes: max_new_tokens must be >= 1");
    Runner runner(groups, tok, limits, on_group_done);
    return runner.run(engine, keep_kv);
}

}  // namespace crucible::rl
