// Token sampling on the GPU, engine/sampler.cpp's rule: one thread block per row. Filters (top-k,
// top-p, min-p) need the candidates by decreasing probability, ties by id: CUB's stable segmented
// sort of the rows' probabilities, descending, with their ids.
#include <cuda_runtime.h>

#include <cfloat>
#include <cub/device/device_segmented_sort.cuh>
#include <vector>

#include "core/error.h"
#include "cuda/common.cuh"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace crucible::cuda {

namespace {

constexpr unsigned kSampleThreads = 1024;

struct RowParams {
    float temperature;
    int top_k;
    float top_p;
    float min_p;
    double u;
};

__device__ inline bool filters(const RowParams& p, int V) {
    return (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0f || p.min_p > 0.0f;
}

// The smallest i < n whose prefix sum value(0) + ... + value(i) passes `target` (> when strict,
// else >=), or -1. Each thread sums a contiguous chunk; thread 0 walks the chunks' sums, then the
// elements of the chunk where the sum passes. Where the chunks' sums pass but no element's
// running sum does (the two differ by rounding), the chunk's last positive element. Every
// thread of the block must call it.
template <class F>
__device__ int first_prefix_passing(F value, int n, double target, bool strict) {
    __shared__ double chunk_sum[kSampleThreads];
    __shared__ int found;
    const int chunk = (n + (int)blockDim.x - 1) / (int)blockDim.x;
    const int lo = (int)threadIdx.x * chunk, hi = min(n, lo + chunk);
    double s = 0.0;
    for (int i = lo; i < hi; i++) s += value(i);
    chunk_sum[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        found = -1;
        double base = 0.0;
        for (int t = 0; t < (int)blockDim.x && found < 0; t++) {
            const double next = base + chunk_sum[t];
            if (strict ? next > target : next >= target) {
                double cum = base;
                int last_positive = -1;
                for (int i = t * chunk; i < min(n, (t + 1) * chunk); i++) {
                    const double v = value(i);
                    cum += v;
                    if (v > 0.0) last_positive = i;
                    if (strict ? cum > target : cum >= target) {
                        found = i;
                        break;
                    }
                }
                if (found < 0) found = last_positive;  // -1 (none): the next chunks go on
            }
            base = next;
        }
    }
    __syncthreads();
    return found;
}

// probs (B, V) = softmax(logits / temperature) in double; ids (B, V) = 0..V-1.
__global__ void softmax_kernel(double* probs, int* ids, const float* logits, int V,
                               const RowParams* params) {
    const size_t b = blockIdx.x;
    const RowParams p = params[b];
    const float* l = logits + b * V;
    double* out = probs + b * V;
    if (p.temperature <= 0.0f) return;  // greedy: no distribution
    double mx = -DBL_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmax(mx, (double)l[i] / p.temperature);
    mx = block_max(mx, -DBL_MAX);
    double sum = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        out[i] = exp((double)l[i] / p.temperature - mx);
        sum += out[i];
    }
    sum = block_sum(sum);
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        out[i] /= sum;
        ids[b * V + i] = i;
    }
}

__global__ void draw_kernel(int32_t* tokens, const float* logits, const double* probs,
                            const double* sorted, const int* sorted_ids, int* kept_flag, int V,
                            const RowParams* params) {
    const size_t b = blockIdx.x;
    const RowParams p = params[b];
    if (p.temperature <= 0.0f) {
        // The first maximum: the largest value, then the smallest id among equals.
        const float* l = logits + b * V;
        float best = -FLT_MAX;
        for (int i = threadIdx.x; i < V; i += blockDim.x) best = fmaxf(best, l[i]);
        best = block_max(best, -FLT_MAX);
        int first = V;
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            if (l[i] == best) {
                first = i;
                break;
            }
        }
        first = -block_max(-first, -V);
        if (threadIdx.x == 0) tokens[b] = first < V ? first : 0;  // all NaN: id 0, as max_element
        return;
    }
    const double* prob = probs + b * V;
    const bool filter = filters(p, V);
    double kept = 1.0;
    if (filter) {
        const double* sp = sorted + b * V;
        const int* sid = sorted_ids + b * V;
        int keep = V;
        if (p.top_k > 0) keep = min(keep, p.top_k);
        if (p.top_p < 1.0f) {
            // The smallest prefix whose mass (renormalised after top-k) reaches top_p.
            double mass = 0.0;
            for (int i = threadIdx.x; i < keep; i += blockDim.x) mass += sp[i];
            mass = block_sum(mass);
            const int n = first_prefix_passing([&](int i) { return sp[i] / mass; }, keep,
                                               (double)p.top_p, false);
            keep = max(n < 0 ? keep : n + 1, 1);
        }
        if (p.min_p > 0.0f) {
            const double threshold = p.min_p * sp[0];
            int n = keep;  // the first sorted index below the threshold
            for (int i = threadIdx.x; i < keep; i += blockDim.x) {
                if (sp[i] < threshold) {
                    n = i;
                    break;
                }
            }
            n = -block_max(-n, -keep);
            keep = max(n, 1);
        }
        double k = 0.0;
        for (int i = threadIdx.x; i < keep; i += blockDim.x) k += sp[i];
        kept = block_sum(k);
        int* flag = kept_flag + b * V;
        for (int i = threadIdx.x; i < V; i += blockDim.x) flag[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < keep; i += blockDim.x) flag[sid[i]] = 1;
        __syncthreads();
    }
    const int* flag = kept_flag + b * V;
    auto value = [&](int i) { return filter ? (flag[i] ? prob[i] / kept : 0.0) : prob[i]; };
    const int hit = first_prefix_passing(value, V, p.u, true);
    if (threadIdx.x == 0 && hit >= 0 && value(hit) > 0.0) tokens[b] = hit;
    if (hit >= 0 && value(hit) > 0.0) return;
    // u above the total (rounding), or the crossing landed on a zero: the last candidate.
    int last = -1;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        if (value(i) > 0.0) last = i;
    }
    last = block_max(last, -1);
    if (threadIdx.x == 0) tokens[b] = last < 0 ? 0 : last;
}

// Device scratch kept between calls, grown when a call needs more.
struct Scratch {
    DeviceArray<char> bytes;
    char* at(size_t need) {
        if (bytes.size() < need) bytes = DeviceArray<char>(need);
        return bytes.data();
    }
};

size_t align_up(size_t n) {
    return (n + 255) / 256 * 256;
}

}  // namespace

void sample_tokens(int32_t* tokens, const float* logits, int B, int V, const SamplingParams* params,
                   const double* u) {
    if (B == 0) return;
    std::vector<RowParams> host(B);
    bool any_filter = false;
    for (int b = 0; b < B; b++) {
        host[b] = {params[b].temperature, params[b].top_k, params[b].top_p, params[b].min_p, u[b]};
        any_filter = any_filter || (params[b].temperature > 0.0f &&
                                    ((params[b].top_k > 0 && params[b].top_k < V) ||
                                     params[b].top_p < 1.0f || params[b].min_p > 0.0f));
    }
    const size_t n = (size_t)B * V;
    if (n > (size_t)INT_MAX) {  // CUB's item count and the row offsets are ints
        throw Error("sample_tokens: " + std::to_string(B) + " rows of " + std::to_string(V) +
                    " logits are more than one call samples (2^31 - 1 values)");
    }
    std::vector<int> offsets(B + 1);
    for (int b = 0; b <= B; b++) offsets[b] = b * V;
    size_t sort_bytes = 0;
    check(cub::DeviceSegmentedSort::StableSortPairsDescending(
              nullptr, sort_bytes, (const double*)nullptr, (double*)nullptr, (const int*)nullptr,
              (int*)nullptr, (int)n, B, (const int*)nullptr, (const int*)nullptr),
          "sample_tokens (sort size)");
    const size_t sizes[] = {align_up(B * sizeof(RowParams)),
                            align_up((B + 1) * sizeof(int)),
                            align_up(n * sizeof(double)),
                            align_up(n * sizeof(double)),
                            align_up(n * sizeof(int)),
                            align_up(n * sizeof(int)),
                            align_up(n * sizeof(int)),
                            align_up(B * sizeof(int32_t)),
                            align_up(sort_bytes)};
    size_t total = 0;
    for (size_t s : sizes) total += s;
    thread_local Scratch scratch;
    char* p = scratch.at(total);
    auto take = [&](int i) {
        char* here = p;
        p += sizes[i];
        return here;
    };
    auto* d_params = reinterpret_cast<RowParams*>(take(0));
    auto* d_offsets = reinterpret_cast<int*>(take(1));
    auto* probs = reinterpret_cast<double*>(take(2));
    auto* sorted = reinterpret_cast<double*>(take(3));
    auto* ids = reinterpret_cast<int*>(take(4));
    auto* sorted_ids = reinterpret_cast<int*>(take(5));
    auto* flags = reinterpret_cast<int*>(take(6));
    auto* d_tokens = reinterpret_cast<int32_t*>(take(7));
    void* sort_temp = take(8);
    copy_to_device(d_params, host.data(), B * sizeof(RowParams));
    copy_to_device(d_offsets, offsets.data(), (B + 1) * sizeof(int));
    softmax_kernel<<<B, kSampleThreads>>>(probs, ids, logits, V, d_params);
    check_launch("sample_tokens (softmax)");
    if (any_filter) {
        check(cub::DeviceSegmentedSort::StableSortPairsDescending(sort_temp, sort_bytes, probs,
                                                                  sorted, ids, sorted_ids, (int)n,
                                                                  B, d_offsets, d_offsets + 1),
              "sample_tokens (sort)");
    }
    draw_kernel<<<B, kSampleThreads>>>(d_tokens, logits, probs, sorted, sorted_ids, flags, V,
                                       d_params);
    check_launch("sample_tokens (draw)");
    copy_to_host(tokens, d_tokens, B * sizeof(int32_t));
}

}  // namespace crucible::cuda
