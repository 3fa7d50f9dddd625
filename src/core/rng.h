// A small, fast, serializable random number generator (xoshiro256**, seeded by splitmix64).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace crucible {

class Rng {
  public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }

    void reseed(uint64_t seed) {
        for (auto& s : state_) s = splitmix64(seed);
    }
    uint64_t next_u64() {
        const uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    // Uniform integer in [0, n). REQUIRES: n > 0.
    uint64_t below(uint64_t n) { return next_u64() % n; }
    // Standard normal by Box-Muller (one of the pair; simple and deterministic).
    double normal() {
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

    std::array<uint64_t, 4> state() const { return state_; }
    void set_state(const std::array<uint64_t, 4>& s) { state_ = s; }

    // Derives an independent seed for a named purpose (e.g. shuffling epoch e).
    static uint64_t mix(uint64_t a, uint64_t b) {
        uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
        return splitmix64(x);
    }

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static uint64_t splitmix64(uint64_t& x) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::array<uint64_t, 4> state_{};
};

}  // namespace crucible
