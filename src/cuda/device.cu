#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/device.h"

namespace crucible::cuda {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
    }
}

void check_launch(const char* kernel) {
    check(cudaGetLastError(), kernel);
}

bool available(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why != nullptr) {
            *why = e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports no CUDA device";
        }
        cudaGetLastError();  // clear the sticky error of a failed query
        return false;
    }
    return true;
}

DeviceInfo device_info() {
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    DeviceInfo info;
    info.name = p.name;
    info.sm_major = p.major;
    info.sm_minor = p.minor;
    info.multiprocessors = p.multiProcessorCount;
    info.memory_bytes = p.totalGlobalMem;
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev);
    // Double data rate: two transfers per clock.
    info.memory_bandwidth_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    return info;
}

void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        throw Error("CUDA: cannot allocate " + std::to_string(bytes) +
                    " bytes on the device: " + cudaGetErrorString(e));
    }
    return p;
}

void release(void* p) {
    if (p != nullptr) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
    if (bytes > 0) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}

void fill_zero(void* dst, size_t bytes) {
    if (bytes > 0) check(cudaMemset(dst, 0, bytes), "cudaMemset");
}

void synchronize() {
    check(cudaDeviceSynchronize(), "a kernel failed");
}

}  // namespace crucible::cuda
