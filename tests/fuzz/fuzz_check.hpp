// What every harness shares: a property check that makes libFuzzer keep the input, and a small
// deterministic random source for the harnesses that derive variants of an input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fuzz {

// A broken property is a crash: libFuzzer stops, saves the input as crash-<sha1> and exits non-zero.
[[noreturn]] inline void fail(const char* file, int line, const char* what, const char* expr) {
    std::fprintf(stderr, "\n==fuzz property broken== %s:%d: %s\n  (%s)\n", file, line, what, expr);
    std::abort();
}

// SplitMix64: the same input always gives the same variants, so every crash reproduces.
class Rng {
public:
    explicit Rng(std::string_view seed_bytes) {
        std::uint64_t h = 0xcbf29ce484222325ull;   // FNV-1a of the input
        for (char c : seed_bytes) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
        state_ = h;
    }
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
    bool chance(unsigned one_in) { return below(one_in) == 0; }

private:
    std::uint64_t state_;
};

}  // namespace fuzz

#define FUZZ_CHECK(cond, what)                                      \
    do {                                                            \
        if (!(cond)) ::fuzz::fail(__FILE__, __LINE__, what, #cond); \
    } while (0)
