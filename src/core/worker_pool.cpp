#include "core/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace crucible {

void run_parallel_until(size_t n_items, size_t n_workers, const std::function<bool(size_t)>& fn) {
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex error_mutex;
    std::exception_ptr error;  // the first one, guarded by error_mutex
    const auto work = [&] {
        while (!stop.load()) {
            const size_t i = next++;
            if (i >= n_items) return;
            try {
                if (!fn(i)) stop = true;
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                stop = true;
            }
        }
    };
    const size_t n_threads = std::min(n_items, std::max<size_t>(n_workers, 1));
    std::vector<std::thread> threads;
    threads.reserve(n_threads > 0 ? n_threads - 1 : 0);
    try {
        for (size_t k = 1; k < n_threads; ++k) threads.emplace_back(work);
    } catch (...) {  // a thread could not start: stop those that did, then report it
        stop = true;
        for (std::thread& t : threads) t.join();
        throw;
    }
    work();
    for (std::thread& t : threads) t.join();
    if (error) std::rethrow_exception(error);
}

void run_parallel(size_t n_items, size_t n_workers, const std::function<void(size_t)>& fn) {
    run_parallel_until(n_items, n_workers, [&fn](size_t i) {
        fn(i);
        return true;
    });
}

}  // namespace crucible
