// What the .cu files share: error checks that throw crucible::Error, launch sizes, and warp and
// block reductions (every thread of the block gets the result).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace crucible::cuda {

// Throws Error("CUDA: WHAT: <the runtime's message>") unless e is cudaSuccess.
void check(cudaError_t e, const char* what);
// After a launch: the launch's own error (a bad configuration), if any.
void check_launch(const char* kernel);

constexpr unsigned kThreads = 256;

inline unsigned blocks_for(size_t n, unsigned threads = kThreads) {
    return static_cast<unsigned>((n + threads - 1) / threads);
}

template <class T>
__device__ inline T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <class T>
__device__ inline T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The sum over the block (blockDim.x a multiple of 32, at most 1024); every thread must call it.
template <class T>
__device__ T block_sum(T v) {
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // a previous call's readers are done with `part`
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int warps = static_cast<int>(blockDim.x >> 5);
    return warp_sum(lane < warps ? part[lane] : T(0));
}

template <class T>
__device__ T block_max(T v, T lowest) {
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int warps = static_cast<int>(blockDim.x >> 5);
    return warp_max(lane < warps ? part[lane] : lowest);
}

}  // namespace crucible::cuda
