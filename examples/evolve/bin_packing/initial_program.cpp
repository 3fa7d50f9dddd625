// Online bin packing. Reads "capacity n item_1 ... item_n" from stdin and prints the bin of
// each item (0-based, in arrival order) on one line.
#include <cmath>
#include <cstdio>
#include <vector>

// EVOLVE-BLOCK-START
// Score for putting an item of size `item` into a bin with `remaining` free capacity
// (remaining >= item). Higher is better.
double priority(int item, int remaining) {
    return -(remaining - item);
}
// EVOLVE-BLOCK-END

int main() {
    int capacity = 0, n = 0;
    if (std::scanf("%d %d", &capacity, &n) != 2) return 1;
    std::vector<int> remaining;  // open bins, oldest first
    for (int i = 0; i < n; i++) {
        int item = 0;
        if (std::scanf("%d", &item) != 1) return 1;
        // Every bin is a candidate (FunSearch pre-allocates n bins); the empty ones tie, and
        // ties go to the lowest index, so one fresh bin after the open ones stands for them all.
        int best = -1;
        double best_p = 0;
        for (int b = 0; b < static_cast<int>(remaining.size()); b++) {
            if (remaining[b] < item) continue;
            const double p = priority(item, remaining[b]);
            if (best < 0 || p > best_p) best = b, best_p = p;
        }
        const double fresh = priority(item, capacity);
        if (best < 0 || fresh > best_p || !std::isfinite(best_p)) {
            remaining.push_back(capacity);
            best = static_cast<int>(remaining.size()) - 1;
        }
        remaining[best] -= item;
        std::printf("%d%c", best, i + 1 < n ? ' ' : '\n');
    }
    return 0;
}
