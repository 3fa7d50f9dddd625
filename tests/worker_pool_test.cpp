// core/worker_pool: every item once, the calling thread working too, order with one worker,
// exceptions after every worker has stopped, and a stop that no new item passes.
#include "core/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace crucible {
namespace {

TEST(WorkerPool, EveryItemRunsExactlyOnce) {
    for (const size_t workers : {1, 2, 3, 8, 100}) {
        std::vector<std::atomic<int>> runs(1000);
        run_parallel(runs.size(), workers, [&](size_t i) { runs[i]++; });
        for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].load(), 1) << i;
    }
}

TEST(WorkerPool, UsesUpToNWorkersIncludingTheCaller) {
    std::mutex mutex;
    std::set<std::thread::id> seen;
    std::atomic<int> running{0}, most{0};
    run_parallel(64, 4, [&](size_t) {
        const int now = ++running;
        int m = most.load();
        while (now > m && !most.compare_exchange_weak(m, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        --running;
        std::lock_guard<std::mutex> lock(mutex);
        seen.insert(std::this_thread::get_id());
    });
    EXPECT_LE(most.load(), 4);
    EXPECT_LE(seen.size(), 4u);
    EXPECT_GE(seen.size(), 2u);  // 64 sleeps of 2 ms: more than one thread takes part
}

TEST(WorkerPool, OneWorkerRunsInOrderOnTheCallingThread) {
    std::vector<size_t> order;
    const std::thread::id me = std::this_thread::get_id();
    bool other_thread = false;
    run_parallel(50, 1, [&](size_t i) {
        order.push_back(i);
        if (std::this_thread::get_id() != me) other_thread = true;
    });
    ASSERT_EQ(order.size(), 50u);
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
    EXPECT_FALSE(other_thread);

    order.clear();
    run_parallel(5, 0, [&](size_t i) { order.push_back(i); });  // 0 workers: one, the caller
    EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(WorkerPool, ZeroItemsRunNothing) {
    int calls = 0;
    run_parallel(0, 8, [&](size_t) { ++calls; });
    run_parallel_until(0, 8, [&](size_t) {
        ++calls;
        return true;
    });
    EXPECT_EQ(calls, 0);
}

TEST(WorkerPool, ExceptionPropagatesAfterAllWorkersStop) {
    std::atomic<int> running{0}, finished_after_throw{0};
    std::atomic<bool> thrown{false};
    try {
        run_parallel(1000, 4, [&](size_t i) {
            ++running;
            if (i == 3) {
                thrown = true;
                --running;
                throw std::runtime_error("item 3 failed");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            if (thrown) ++finished_after_throw;
            --running;
        });
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "item 3 failed");
    }
    EXPECT_EQ(running.load(), 0);  // every worker had finished when it came back
    // Each of the 3 other workers finishes the item it was running, and at most one more it may
    // have taken in the instant between the throw and the pool's stop: far from 1000.
    EXPECT_LE(finished_after_throw.load(), 6);
}

TEST(WorkerPool, FirstExceptionWinsWithOneWorker) {
    std::vector<size_t> ran;
    EXPECT_THROW(run_parallel(10, 1,
                              [&](size_t i) {
                                  ran.push_back(i);
                                  if (i >= 2) throw std::logic_error("item " + std::to_string(i));
                              }),
                 std::logic_error);
    EXPECT_EQ(ran, (std::vector<size_t>{0, 1, 2}));  // nothing started after the throw
}

TEST(WorkerPool, UntilStopsHandingOutItems) {
    std::vector<size_t> ran;
    run_parallel_until(100, 1, [&](size_t i) {
        ran.push_back(i);
        return i < 4;
    });
    EXPECT_EQ(ran, (std::vector<size_t>{0, 1, 2, 3, 4}));

    std::atomic<int> calls{0};
    run_parallel_until(1000, 4, [&](size_t) {
        ++calls;
        return false;
    });
    EXPECT_LE(calls.load(), 4);  // each worker ran at most the one item it had taken
}

}  // namespace
}  // namespace crucible
