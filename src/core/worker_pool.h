// The one way to run independent items on a few threads: a batch of judge calls, rubric
// generations, or an endpoint's samples. Not a long-lived pool: each call starts its threads
// and joins them before it returns. (Long-lived workers, such as the HTTP front's, or a thread
// that runs beside others, such as eval's scoring thread, keep their own loops.)
#pragma once

#include <cstddef>
#include <functional>

namespace crucible {

// Runs fn(i) once for each i in [0, n_items) on up to n_workers threads, the calling thread
// being one of them (n_workers 0 counts as 1; no more threads than items). Items are handed
// out in increasing order, so with one worker they run in order on the calling thread. When
// fn throws, no worker starts another item; after all workers have stopped, the first
// exception is rethrown.
void run_parallel(size_t n_items, size_t n_workers, const std::function<void(size_t)>& fn);

// As run_parallel, but fn returns false to stop: no worker starts another item after that
// (items already running finish).
void run_parallel_until(size_t n_items, size_t n_workers, const std::function<bool(size_t)>& fn);

}  // namespace crucible
