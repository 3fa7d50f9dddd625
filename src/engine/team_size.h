// The OpenMP team size for an engine step, chosen from the step's work and measured step times.
//
// Why. A decode step of a small model is dozens of parallel regions of a few microseconds each;
// every region ends at a barrier that waits for the slowest thread of the team. When another
// process shares the cores, a team thread is often descheduled and the whole step waits for it
// (on two cores with two busy neighbours, a 2-layer model's step took 1.8 ms with two threads
// against 0.06 ms with one: docs/PERFORMANCE.md, "Serving latency under CPU contention"). So:
// - a step whose regions are too small to pay for a second thread runs on one (`team_cap`);
// - otherwise the sizer keeps, per batch size (rows, in powers of two), a moving estimate of
//   the time per unit of work for each team size it may use (1, 2, 4, ... up to the caller's
//   omp_get_max_threads()), uses the fastest, and re-tries another size every kExploreEvery
//   seconds, so it follows a neighbour that comes and goes.
// The team size never changes results: every kernel of a step of up to kMaxRows rows gives
// each output to one thread and sums in a fixed order (kernels/small_batch_linear.h).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace crucible {

class TeamSizer {
  public:
    // Rows up to which a step's team is chosen here (above it, OpenBLAS's sgemm runs part of the
    // step, and the caller's team is used as it is).
    static constexpr int kMaxRows = 128;
    // A thread should get at least this many multiply-adds in an average matmul region of a step
    // (a few microseconds of work: less does not pay for waking and meeting a second thread).
    static constexpr double kMinMacsPerThread = 32768;
    static constexpr double kExploreEvery = 0.5;  // seconds between tries of another size
    static constexpr double kStale = 0.25;  // an estimate older than this is replaced, not averaged

    // The largest useful team for a step whose matmul regions do `macs_per_region`
    // multiply-adds on average: between 1 and max_threads.
    static int team_cap(double macs_per_region, int max_threads);

    // The team for a step of `rows` rows (1..kMaxRows), `macs_per_region` as above and `macs`
    // in all, with at most max_threads threads; `now` in seconds (any monotonic origin).
    int choose(int rows, double macs_per_region, double macs, int max_threads, double now);
    // Reports that the step chose() last answered for took `seconds`, done at `now`.
    void record(double seconds, double now);

  private:
    struct Estimate {
        double per_mac = 0;  // seconds per multiply-add, moving average
        double at = -1;      // when last measured; < 0: never
    };
    struct Bucket {
        std::map<int, Estimate> by_team;
        double last_explore = -1;
    };
    std::vector<Bucket> buckets_ = std::vector<Bucket>(8);  // rows 1, 2-3, 4-7, ..., 128
    int last_bucket_ = -1, last_team_ = 1;
    double last_macs_ = 0;
};

}  // namespace crucible
