// paygated's own metrics, answered to the module's system.metrics request (the broker thread
// formats them; nginx's /metrics adds them with a daemon="<endpoint>" label).
//
// One DaemonMetrics per daemon, owned by the broker and handed to the threads that count: worker
// threads (PostgreSQL connections, callbacks), the task runner (provider calls through
// MeteredProvider), the state sampler. Counting takes a mutex for a few map operations, never
// I/O. What comes from PostgreSQL state (open tasks by kind and state, operations whose outcome is
// unknown) is read by StateSampler, one bounded query every interval on a thread of its own, so a
// scrape never costs a query.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "paygate/metrics_text.hpp"
#include "paygated/provider.hpp"

namespace paygate::daemon {

// Provider call latency buckets (seconds).
inline constexpr double kProviderCallBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

// What StateSampler read from PostgreSQL.
struct StateSnapshot {
    std::vector<std::tuple<std::string, std::string, std::uint64_t>> tasks;   // kind, state, count (open and dead)
    std::vector<std::tuple<std::string, std::string, std::uint64_t>> operations;   // provider, state, count (open)
};

class DaemonMetrics {
public:
    using Clock = std::chrono::steady_clock;

    // `provider` "sky-technologies", `call` "charge" | "reverse" | "status", `outcome` answer_name().
    void provider_call(const std::string& provider, const std::string& call, const std::string& outcome, double seconds);
    // `partner` "sky-technologies" | "mserver", `result` "accepted" | "duplicate" | "rejected" | "failed".
    void callback(const std::string& partner, const std::string& result);
    // Worker `worker` (1..N) holds an open PostgreSQL connection or not.
    void db_connection(int worker, bool connected);
    void set_pool_size(unsigned workers);
    // The providers this daemon routes to: their gauges read 0 rather than being absent.
    void set_providers(std::vector<std::string> providers);
    void state_sampled(StateSnapshot snapshot, Clock::time_point at);
    void state_sample_failed();

    // Appends the families above (the broker writes its own queue and worker families).
    void format(metrics::TextWriter& w, Clock::time_point now) const;

private:
    struct Calls {
        std::vector<std::uint64_t> buckets = std::vector<std::uint64_t>(std::size(kProviderCallBounds) + 1);
        double sum = 0;
    };
    mutable std::mutex mu_;
    std::map<std::tuple<std::string, std::string, std::string>, Calls> calls_;   // provider, call, outcome
    std::map<std::pair<std::string, std::string>, std::uint64_t> callbacks_;       // partner, result
    std::map<int, bool> db_connected_;
    unsigned pool_size_ = 0;
    std::vector<std::string> providers_;
    StateSnapshot snapshot_;
    Clock::time_point sampled_at_{};
    bool sampled_ = false;
    std::uint64_t sample_failures_ = 0;
};

// What the broker thread knows of itself when a scrape comes.
struct BrokerState {
    std::size_t queue_depth = 0;
    unsigned queue_max_depth = 0;
    double queue_oldest_age_s = 0;
    std::map<std::string, std::uint64_t> not_executed;   // by reason: queue_full, queue_age, draining
    std::size_t busy_workers = 0;
    unsigned workers = 0;
    double busy_seconds = 0;                             // summed over workers, jobs in hand included
};

// The daemon's answer to system.metrics: the broker's families, then `metrics`'.
std::string daemon_exposition(const BrokerState& broker, const DaemonMetrics& metrics, DaemonMetrics::Clock::time_point now);

// A Provider that counts each call (provider, call, outcome, latency) in a DaemonMetrics.
class MeteredProvider : public Provider {
public:
    MeteredProvider(std::unique_ptr<Provider> inner, std::shared_ptr<DaemonMetrics> metrics)
        : inner_(std::move(inner)), metrics_(std::move(metrics)) {}
    const std::string& name() const override { return inner_->name(); }
    ProviderAnswer charge(const Operation& op) override;
    ProviderAnswer reverse(const Operation& op) override;
    ProviderAnswer status(const Operation& op) override;

private:
    template <class Call>
    ProviderAnswer timed(const char* call, Call&& fn);
    std::unique_ptr<Provider> inner_;
    std::shared_ptr<DaemonMetrics> metrics_;
};

// Reads the PostgreSQL-derived metrics every `interval` on its own thread and connection.
class StateSampler {
public:
    StateSampler(std::string database, std::chrono::milliseconds interval, std::chrono::milliseconds retry_max,
                 std::shared_ptr<DaemonMetrics> metrics);
    ~StateSampler();
    void start();
    // Asks the thread to end without waiting for it (the broker's loop must not block).
    void request_stop();
    void stop();   // request_stop() and join
    // One sample now, on the caller's thread (tests): false when the database did not answer.
    bool sample_once();

private:
    void run();
    std::string database_;
    std::chrono::milliseconds interval_;
    std::chrono::milliseconds retry_max_;
    std::shared_ptr<DaemonMetrics> metrics_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
    std::unique_ptr<class Db> db_;
};

// The two queries StateSampler runs (sql/0009_metrics.sql indexes them). Each is bounded: a lock
// taken on the tables by hand, or a hung server, delays a sample, never the daemon's shutdown.
inline constexpr const char* kOpenTasksQuery =
    "SET statement_timeout = 2000; SET lock_timeout = 1000; "
    "SELECT kind, state, count(*) FROM tasks WHERE state IN ('pending', 'running', 'dead') GROUP BY kind, state";
inline constexpr const char* kOpenOperationsQuery =
    "SET statement_timeout = 2000; SET lock_timeout = 1000; "
    "SELECT provider, state, count(*) FROM provider_operations WHERE state IN ('sending', 'unknown', 'processing') "
    "GROUP BY provider, state";

}  // namespace paygate::daemon
