// The CUDA device, seen from plain C++ (no CUDA header needed to include this): whether a GPU is
// there, device memory that frees itself, and copies to and from it. Built only with
// -DCRUCIBLE_CUDA=ON (CMakeLists.txt); the CPU binary never links it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace crucible::cuda {

// Whether a CUDA device can be used; when not, `why` (if given) says what failed, as the driver
// put it.
bool available(std::string* why = nullptr);

struct DeviceInfo {
    std::string name;
    int sm_major = 0, sm_minor = 0;
    int multiprocessors = 0;
    size_t memory_bytes = 0;
    double memory_bandwidth_gbs = 0;  // from the memory clock and bus width the driver reports
};
DeviceInfo device_info();

// cudaMalloc'd bytes; throws crucible::Error naming the size when the device is out of memory.
void* allocate(size_t bytes);
void release(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void fill_zero(void* dst, size_t bytes);
// Waits for every queued kernel; throws Error with the CUDA error a kernel raised, if any.
void synchronize();

// n values of T on the device.
template <class T>
class DeviceArray {
  public:
    DeviceArray() = default;
    explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(allocate(n * sizeof(T)))) {}
    explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
        copy_to_device(p_, host.data(), n_ * sizeof(T));
    }
    ~DeviceArray() { release(p_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& o) noexcept
        : n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        std::swap(n_, o.n_);
        std::swap(p_, o.p_);
        return *this;
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }
    std::vector<T> to_host() const {
        std::vector<T> out(n_);
        copy_to_host(out.data(), p_, n_ * sizeof(T));
        return out;
    }
    void upload(const std::vector<T>& host) { copy_to_device(p_, host.data(), n_ * sizeof(T)); }
    void zero() { fill_zero(p_, n_ * sizeof(T)); }

  private:
    size_t n_ = 0;
    T* p_ = nullptr;
};

}  // namespace crucible::cuda
