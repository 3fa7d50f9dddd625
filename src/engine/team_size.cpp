#include "engine/team_size.h"

#include <algorithm>

namespace crucible {

int TeamSizer::team_cap(double macs_per_region, int max_threads) {
    if (max_threads <= 1 || !(macs_per_region >= kMinMacsPerThread)) return 1;
    const double fit = macs_per_region / kMinMacsPerThread;
    return fit >= max_threads ? max_threads : std::max(1, static_cast<int>(fit));
}

int TeamSizer::choose(int rows, double macs_per_region, double macs, int max_threads, double now) {
    last_bucket_ = -1;
    if (rows < 1 || rows > kMaxRows) return std::max(max_threads, 1);
    const int cap = team_cap(macs_per_region, max_threads);
    if (cap == 1) return 1;
    // The sizes it may use: 1, 2, 4, ... below the cap, and the cap.
    std::vector<int> sizes;
    for (int t = 1; t < cap; t *= 2) sizes.push_back(t);
    sizes.push_back(cap);
    int b = 0;
    while ((2 << b) <= rows) b++;
    Bucket& bucket = buckets_[b];
    last_bucket_ = b;
    last_macs_ = macs;
    // Measure every size once, the largest (what an untuned program runs) first.
    for (auto t = sizes.rbegin(); t != sizes.rend(); ++t) {
        if (bucket.by_team[*t].at < 0) return last_team_ = *t;
    }
    int best = sizes[0];
    for (int t : sizes) {
        if (bucket.by_team[t].per_mac < bucket.by_team[best].per_mac) best = t;
    }
    if (bucket.last_explore < 0) bucket.last_explore = now;
    if (now - bucket.last_explore >= kExploreEvery) {
        bucket.last_explore = now;
        int oldest = -1;
        for (int t : sizes) {
            if (t != best && (oldest < 0 || bucket.by_team[t].at < bucket.by_team[oldest].at))
                oldest = t;
        }
        return last_team_ = oldest;
    }
    return last_team_ = best;
}

void TeamSizer::record(double seconds, double now) {
    if (last_bucket_ < 0) return;
    Estimate& e = buckets_[last_bucket_].by_team[last_team_];
    const double x = seconds / std::max(last_macs_, 1.0);
    e.per_mac = e.at < 0 || now - e.at > kStale ? x : e.per_mac + 0.3 * (x - e.per_mac);
    e.at = now;
    last_bucket_ = -1;
}

}  // namespace crucible
