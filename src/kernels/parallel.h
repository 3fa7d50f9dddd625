// Small OpenMP helpers shared by the kernels.
#pragma once

#include <omp.h>

namespace crucible::kernels {

// Below this many elements an elementwise kernel runs on the calling thread alone: its work
// (a decode step's one row of 896-4,864 values) takes less time than waking the team and
// joining it again, and a decode step has a dozen such regions per layer. Elementwise results
// do not depend on the thread count, so this changes no bits.
inline constexpr long kParallelMinElements = 1L << 15;

// The [begin, end) slice of [0, n) that the calling thread of a parallel region owns.
// Threads own disjoint contiguous slices, so reductions over the other dimension run in a
// fixed order and need no atomics.
inline void thread_slice(int n, int* begin, int* end) {
    const int nth = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    const int chunk = (n + nth - 1) / nth;
    *begin = tid * chunk < n ? tid * chunk : n;
    *end = *begin + chunk < n ? *begin + chunk : n;
}

}  // namespace crucible::kernels
