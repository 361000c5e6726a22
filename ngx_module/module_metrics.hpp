// The module's metrics: counters and histograms in one block of shared memory that every worker
// of an nginx instance updates with lock-free atomics, and their Prometheus exposition.
//
// Plain C++, no nginx types: the adapter (paygate_metrics.cpp) places the block in the
// paygate_metrics_zone and calls the record functions from the event loop; nothing here locks or
// allocates on the request path. The layout is fixed (routes x status codes), so the block never
// grows; a reload keeps it (counters never go back), as the zone carries over.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::module {

// Auth refusals, by kind (paygate_auth_refusals_total{kind}).
enum class AuthRefusal : std::uint8_t {
    TokenMissing,      // no x_auth_token
    TokenInvalid,      // unknown or revoked token
    TokenAmbiguous,    // several x_auth_token headers
    Capability,        // a partner callback's URL tag
    Signature,         // a partner callback's signature (missing, wrong, stale timestamp)
    AppToken,          // mserver's app_id + access_token
    MerchantJwt,       // a merchant's Bearer JWT (ZooTicket)
    PartnerKey,        // a partner's X-Api-Key (WhiteBird)
    Count
};

// Why a request got 503 or 504 (paygate_unavailable_total{status,cause}).
enum class Unavailable : std::uint8_t {
    NoChannel,         // 503: this worker has no channel to the daemons
    InFlightBound,     // 503: paygate_max_in_flight reached in this worker
    NoDaemon,          // 503: no daemon connected, or every send queue full
    TokensUnavailable, // 503: the token table is not loaded or stale
    Draining,          // 503: the daemon refused it unexecuted (draining) and no other took it
    Overloaded,        // 503: the daemon refused it unexecuted (queue bound) and no other took it
    DaemonUnavailable, // 503 from the daemon itself (its database unavailable)
    Timeout,           // 504: no reply within paygate_timeout
    DaemonTimeout,     // 504 from the daemon itself (its transaction outlived the deadline)
    Count
};

std::string_view auth_refusal_name(AuthRefusal kind);
std::string_view unavailable_name(Unavailable cause);
int unavailable_status(Unavailable cause);

// Round-trip buckets (seconds) of paygate_daemon_round_trip_seconds.
inline constexpr double kRoundTripBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,   0.1,   0.25,   0.5,   1,     2.5, 5, 10};
inline constexpr std::size_t kRoundTripBuckets = sizeof(kRoundTripBounds) / sizeof(kRoundTripBounds[0]) + 1;

// Route slots: 0 is "no route" (404/405), route i of routes::table() is slot i + 1.
inline constexpr std::size_t kRouteSlots = 48;
inline constexpr int kMinStatus = 100;
inline constexpr int kStatusSlots = 500;   // 100..599; anything else counts as 599

// A worker's own in-flight count: a worker that dies (crash, kill) takes its count with it, and
// its slot is reused by the next worker that starts.
inline constexpr std::size_t kWorkerSlots = 256;
struct WorkerSlot {
    std::atomic<std::int64_t> pid;         // 0: free
    std::atomic<std::int64_t> in_flight;
};

struct RoundTrip {
    std::atomic<std::uint64_t> buckets[kRoundTripBuckets];
    std::atomic<std::uint64_t> sum_ns;
};

// Lives in shared memory: atomics only (lock-free, so valid across processes).
struct MetricsBlock {
    std::uint64_t magic;
    std::atomic<std::uint64_t> requests[kRouteSlots][kStatusSlots];
    RoundTrip round_trip[kRouteSlots];
    std::atomic<std::uint64_t> replay_hits[kRouteSlots];
    std::atomic<std::uint64_t> replay_conflicts[kRouteSlots];
    std::atomic<std::uint64_t> auth_refusals[static_cast<std::size_t>(AuthRefusal::Count)];
    std::atomic<std::uint64_t> unavailable[static_cast<std::size_t>(Unavailable::Count)];
    std::atomic<std::uint64_t> resent;        // requests sent to a second daemon after a refusal
    std::atomic<std::uint64_t> late_replies;  // replies that came after their request ended
    WorkerSlot workers[kWorkerSlots];         // requests waiting for a daemon's reply, per worker
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared-memory counters must be lock-free");
static_assert(std::atomic<std::int64_t>::is_always_lock_free, "shared-memory counters must be lock-free");

class ModuleMetrics {
public:
    static constexpr std::size_t bytes() { return sizeof(MetricsBlock); }
    // Lays a zeroed block over `memory` (aligned, bytes() long).
    static ModuleMetrics create(void* memory);
    // A block laid before (the zone kept across a reload); invalid when it is not one.
    static ModuleMetrics attach(void* memory);

    ModuleMetrics() = default;
    bool valid() const { return b_ != nullptr; }

    // `route_slot`: 0 for no route, else the route's index in routes::table() + 1.
    void request(std::size_t route_slot, int status);
    void round_trip(std::size_t route_slot, std::uint64_t ns);
    void replay_hit(std::size_t route_slot);
    void replay_conflict(std::size_t route_slot);
    void auth_refusal(AuthRefusal kind);
    void unavailable(Unavailable cause);
    void resent();
    void late_reply();
    // Whether process `pid` still runs (kill(pid, 0) in the module; tests pass their own).
    using Alive = std::function<bool(std::int64_t pid)>;
    // Takes a worker slot for this process (`pid`): a free one or one whose process is gone.
    // False when every slot is held by a live process: its in-flight requests are then not counted.
    bool claim_worker_slot(std::int64_t pid, const Alive& alive);
    void release_worker_slot();
    // This process's requests waiting for a reply (counted in its slot).
    void in_flight_add(std::int64_t delta);

    // The exposition of every family, with the route names of the slots (slot 0 excluded); the
    // in-flight gauge sums the slots of live processes.
    std::string format(const std::vector<std::string_view>& route_names, const Alive& alive) const;

private:
    explicit ModuleMetrics(MetricsBlock* b) : b_(b) {}
    MetricsBlock* b_ = nullptr;
    WorkerSlot* slot_ = nullptr;   // this process's, once claimed
};

}  // namespace paygate::module
