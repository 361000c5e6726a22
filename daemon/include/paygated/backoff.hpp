// Exponential backoff between database connect attempts (pure logic, the clock is passed in).
#pragma once

#include <algorithm>
#include <chrono>
#include <mutex>

namespace paygate::daemon {

class Backoff {
public:
    using Clock = std::chrono::steady_clock;
    using ms = std::chrono::milliseconds;

    Backoff(ms initial, ms max) : initial_(initial), max_(std::max(initial, max)) {}

    // May an attempt be made at `now`? True until the first failure and after each wait is over.
    bool ready(Clock::time_point now) const { return delay_.count() == 0 || now >= next_; }

    // Records a failed attempt at `now`; returns how long to wait before the next one
    // (initial, then doubled each time, capped at max).
    ms failure(Clock::time_point now) {
        delay_ = delay_.count() == 0 ? initial_ : std::min(delay_ * 2, max_);
        next_ = now + delay_;
        return delay_;
    }

    // Records a successful attempt: the next failure starts again from `initial`.
    void success() { delay_ = ms(0); }

    ms current() const { return delay_; }

private:
    ms initial_;
    ms max_;
    ms delay_{0};
    Clock::time_point next_{};
};

// The connect backoff shared by all workers of one daemon: when one worker fails to connect, the
// others fail fast too instead of each blocking for connect_timeout against a dead host.
class RetryGate {
public:
    explicit RetryGate(Backoff::ms max) : backoff_(Backoff::ms(100), max) {}

    bool ready() {
        std::lock_guard<std::mutex> lock(mutex_);
        return backoff_.ready(Backoff::Clock::now());
    }
    Backoff::ms failure() {
        std::lock_guard<std::mutex> lock(mutex_);
        return backoff_.failure(Backoff::Clock::now());
    }
    void success() {
        std::lock_guard<std::mutex> lock(mutex_);
        backoff_.success();
    }

private:
    std::mutex mutex_;
    Backoff backoff_;
};

}  // namespace paygate::daemon
