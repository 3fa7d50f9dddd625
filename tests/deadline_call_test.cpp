// core/deadline_call.h: a call that ends in time gives its value or its exception; one that
// does not is abandoned (its thread finishes alone and leaves the abandoned count); past
// kMaxAbandonedCalls still running, calls are refused with an Error that says why.
#include "core/deadline_call.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "test_util.h"

namespace crucible {
namespace {

// Blocks until `open` is set (or 60 s pass), then returns 7.
std::function<int()> blocked_until(std::shared_ptr<std::atomic<bool>> open) {
    return [open] {
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!*open && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return 7;
    };
}

bool abandoned_reaches(int n) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (abandoned_calls().load() != n && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return abandoned_calls().load() == n;
}

TEST(DeadlineCall, ACallThatEndsInTimeGivesItsValueOrItsException) {
    EXPECT_EQ(call_with_deadline<int>([] { return 41 + 1; }, 30, "f"), 42);
    EXPECT_EQ(call_with_deadline<int>([] { return 5; }, 0, "f"), 5);  // no limit: inline
    EXPECT_EQ(testutil::error_of([] {
                  call_with_deadline<int>([]() -> int { throw Error("bad input"); }, 30, "f");
              }),
              "bad input");
    EXPECT_EQ(abandoned_calls().load(), 0);
}

TEST(DeadlineCall, ACallPastItsLimitIsAbandonedAndLeavesTheCountWhenItEnds) {
    auto open = std::make_shared<std::atomic<bool>>(false);
    EXPECT_EQ(call_with_deadline<int>(blocked_until(open), 0.05, "f"), std::nullopt);
    EXPECT_EQ(abandoned_calls().load(), 1);
    *open = true;
    EXPECT_TRUE(abandoned_reaches(0));
}

TEST(DeadlineCall, TooManyAbandonedCallsStillRunningAreRefusedWithTheReason) {
    auto open = std::make_shared<std::atomic<bool>>(false);
    for (int i = 0; i < kMaxAbandonedCalls; i++)
        EXPECT_EQ(call_with_deadline<int>(blocked_until(open), 0.01, "the verifier"), std::nullopt);
    EXPECT_EQ(abandoned_calls().load(), kMaxAbandonedCalls);
    const std::string why =
        testutil::error_of([] { call_with_deadline<int>([] { return 1; }, 30, "the verifier"); });
    EXPECT_NE(why.find("the verifier: 16 earlier calls are still running past their time limit"),
              std::string::npos)
        << why;
    *open = true;
    EXPECT_TRUE(abandoned_reaches(0));
    EXPECT_EQ(call_with_deadline<int>([] { return 1; }, 30, "the verifier"), 1);
}

}  // namespace
}  // namespace crucible
