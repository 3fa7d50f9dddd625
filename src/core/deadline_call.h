// A call with a time limit, for in-process code that must not hang its caller: the built-in
// verifiers score text a model wrote, and a pathological input must cost one sample, never
// the run. A C++ computation cannot be stopped safely from outside, so a call past its limit
// is abandoned: its thread is left to finish alone, and the caller gets "timed out" at once.
// Abandoned calls still use a core, so at most kMaxAbandonedCalls may be running at one time;
// past that, calls are refused with an Error that says so (a verifier that hangs on many
// inputs stops the run with a clear message instead of filling the machine with threads).
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "core/error.h"

namespace crucible {

inline constexpr int kMaxAbandonedCalls = 16;

// Calls abandoned by call_with_deadline that are still running.
inline std::atomic<int>& abandoned_calls() {
    static std::atomic<int> n{0};
    return n;
}

// fn() on its own thread, waited for at most `seconds` (<= 0: no limit, called on this
// thread). Its value, or its exception rethrown, when it ends in time; nullopt when it does
// not. fn must own what it touches (capture by value): it may outlive the caller's frame.
// `what` names the call in the Error thrown when too many abandoned calls are still running.
template <typename T>
std::optional<T> call_with_deadline(std::function<T()> fn, double seconds,
                                    const std::string& what) {
    if (!(seconds > 0)) return fn();
    if (abandoned_calls().load() >= kMaxAbandonedCalls) {
        throw Error(what + ": " + std::to_string(kMaxAbandonedCalls) +
                    " earlier calls are still running past their time limit; it hangs on "
                    "these inputs (stopped rather than piling up threads)");
    }
    struct Shared {
        std::promise<T> result;
        // The thread's end and the caller's giving up each add 1: whichever comes second (sees
        // 1) takes the call off the abandoned count.
        std::atomic<int> ends{0};
    };
    auto shared = std::make_shared<Shared>();
    std::future<T> done = shared->result.get_future();
    std::thread([shared, fn = std::move(fn)]() mutable {
        try {
            shared->result.set_value(fn());
        } catch (...) {
            shared->result.set_exception(std::current_exception());
        }
        if (shared->ends.fetch_add(1) == 1) abandoned_calls()--;
    }).detach();
    if (done.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready) {
        return done.get();
    }
    abandoned_calls()++;
    if (shared->ends.fetch_add(1) == 1) abandoned_calls()--;  // it ended in between
    return std::nullopt;
}

}  // namespace crucible
