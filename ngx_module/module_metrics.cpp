// The module's shared-memory metrics and their exposition (see module_metrics.hpp).
#include "module_metrics.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <new>

#include "paygate/idempotency.hpp"
#include "paygate/metrics_text.hpp"

namespace paygate::module {
namespace {

constexpr std::uint64_t kMagic = 0x7061796d65747232ULL;   // "paymetr2": the layout's version (bump on change)
constexpr auto kRelaxed = std::memory_order_relaxed;

std::size_t clamp_slot(std::size_t slot) { return slot < kRouteSlots ? slot : 0; }

std::string_view slot_name(const std::vector<std::string_view>& names, std::size_t slot) {
    if (slot == 0) return "none";
    return slot - 1 < names.size() ? names[slot - 1] : std::string_view("other");
}

}  // namespace

std::string_view auth_refusal_name(AuthRefusal kind) {
    switch (kind) {
        case AuthRefusal::TokenMissing: return "token_missing";
        case AuthRefusal::TokenInvalid: return "token_invalid";
        case AuthRefusal::TokenAmbiguous: return "token_ambiguous";
        case AuthRefusal::Capability: return "capability";
        case AuthRefusal::Signature: return "signature";
        case AuthRefusal::AppToken: return "app_token";
        case AuthRefusal::MerchantJwt: return "merchant_jwt";
        case AuthRefusal::PartnerKey: return "partner_key";
        case AuthRefusal::Count: break;
    }
    return "unknown";
}

std::string_view unavailable_name(Unavailable cause) {
    switch (cause) {
        case Unavailable::NoChannel: return "no_channel";
        case Unavailable::InFlightBound: return "in_flight_bound";
        case Unavailable::NoDaemon: return "no_daemon";
        case Unavailable::TokensUnavailable: return "tokens_unavailable";
        case Unavailable::Draining: return "draining";
        case Unavailable::Overloaded: return "overloaded";
        case Unavailable::DaemonUnavailable: return "daemon_unavailable";
        case Unavailable::Timeout: return "timeout";
        case Unavailable::DaemonTimeout: return "daemon_timeout";
        case Unavailable::Count: break;
    }
    return "unknown";
}

int unavailable_status(Unavailable cause) {
    return cause == Unavailable::Timeout || cause == Unavailable::DaemonTimeout ? 504 : 503;
}

ModuleMetrics ModuleMetrics::create(void* memory) {
    std::memset(memory, 0, sizeof(MetricsBlock));
    auto* b = new (memory) MetricsBlock;   // atomics of zeroed memory read 0
    b->magic = kMagic;
    return ModuleMetrics(b);
}

ModuleMetrics ModuleMetrics::attach(void* memory) {
    auto* b = static_cast<MetricsBlock*>(memory);
    if (b == nullptr || b->magic != kMagic) return ModuleMetrics();
    return ModuleMetrics(b);
}

void ModuleMetrics::request(std::size_t route_slot, int status) {
    if (status < kMinStatus || status >= kMinStatus + kStatusSlots) status = kMinStatus + kStatusSlots - 1;
    b_->requests[clamp_slot(route_slot)][status - kMinStatus].fetch_add(1, kRelaxed);
}

void ModuleMetrics::round_trip(std::size_t route_slot, std::uint64_t ns) {
    RoundTrip& h = b_->round_trip[clamp_slot(route_slot)];
    double seconds = static_cast<double>(ns) / 1e9;
    std::size_t i = 0;
    while (i + 1 < kRoundTripBuckets && seconds > kRoundTripBounds[i]) ++i;
    h.buckets[i].fetch_add(1, kRelaxed);
    h.sum_ns.fetch_add(ns, kRelaxed);
}

void ModuleMetrics::replay_hit(std::size_t route_slot) { b_->replay_hits[clamp_slot(route_slot)].fetch_add(1, kRelaxed); }
void ModuleMetrics::replay_conflict(std::size_t route_slot) {
    b_->replay_conflicts[clamp_slot(route_slot)].fetch_add(1, kRelaxed);
}
void ModuleMetrics::auth_refusal(AuthRefusal kind) {
    b_->auth_refusals[static_cast<std::size_t>(kind)].fetch_add(1, kRelaxed);
}
void ModuleMetrics::unavailable(Unavailable cause) {
    b_->unavailable[static_cast<std::size_t>(cause)].fetch_add(1, kRelaxed);
}
void ModuleMetrics::resent() { b_->resent.fetch_add(1, kRelaxed); }
void ModuleMetrics::late_reply() { b_->late_replies.fetch_add(1, kRelaxed); }
bool ModuleMetrics::claim_worker_slot(std::int64_t pid, const Alive& alive) {
    // A slot left by a dead process whose pid this one now has is this one's: never counted twice.
    for (WorkerSlot& slot : b_->workers) {
        if (slot.pid.load() == pid) {
            slot.in_flight.store(0);
            slot_ = &slot;
            return true;
        }
    }
    for (WorkerSlot& slot : b_->workers) {
        std::int64_t holder = slot.pid.load();
        if (holder != 0 && alive(holder)) continue;
        if (!slot.pid.compare_exchange_strong(holder, pid)) continue;   // another worker took it first
        slot.in_flight.store(0);
        slot_ = &slot;
        return true;
    }
    return false;
}

void ModuleMetrics::release_worker_slot() {
    if (slot_ == nullptr) return;
    slot_->in_flight.store(0);
    slot_->pid.store(0);
    slot_ = nullptr;
}

void ModuleMetrics::in_flight_add(std::int64_t delta) {
    if (slot_ != nullptr) slot_->in_flight.fetch_add(delta, kRelaxed);
}

std::string ModuleMetrics::format(const std::vector<std::string_view>& route_names, const Alive& alive) const {
    using metrics::Label;
    metrics::TextWriter w;
    std::size_t slots = std::min(kRouteSlots, route_names.size() + 1);

    w.family("paygate_requests_total", "counter",
             "Requests answered in paygate locations, by route (none: no route matched) and HTTP status.");
    for (std::size_t slot = 0; slot < slots; ++slot) {
        for (int i = 0; i < kStatusSlots; ++i) {
            std::uint64_t n = b_->requests[slot][i].load(kRelaxed);
            if (n == 0) continue;
            std::string status = std::to_string(kMinStatus + i);
            w.sample("paygate_requests_total", {{"route", slot_name(route_names, slot)}, {"status", status}},
                     static_cast<double>(n));
        }
    }

    w.family("paygate_daemon_round_trip_seconds", "histogram",
             "Time from sending a request to paygated to its reply arriving in nginx, by route.");
    std::vector<double> bounds(std::begin(kRoundTripBounds), std::end(kRoundTripBounds));
    for (std::size_t slot = 1; slot < slots; ++slot) {
        const RoundTrip& h = b_->round_trip[slot];
        std::vector<std::uint64_t> counts(kRoundTripBuckets);
        std::uint64_t total = 0;
        for (std::size_t i = 0; i < kRoundTripBuckets; ++i) total += counts[i] = h.buckets[i].load(kRelaxed);
        if (total == 0) continue;
        w.histogram("paygate_daemon_round_trip_seconds", {{"route", slot_name(route_names, slot)}}, bounds, counts,
                    static_cast<double>(h.sum_ns.load(kRelaxed)) / 1e9);
    }

    // Every idempotent route, 0 included: an absent series is not 0 to a rate() or an alert.
    auto per_route = [&](std::string_view name, std::string_view help, const std::atomic<std::uint64_t>* values) {
        w.family(name, "counter", help);
        for (std::size_t slot = 1; slot < slots; ++slot) {
            std::uint64_t n = values[slot].load(kRelaxed);
            if (n != 0 || idempotency::applies_to(slot_name(route_names, slot))) {
                w.sample(name, {{"route", slot_name(route_names, slot)}}, static_cast<double>(n));
            }
        }
    };
    per_route("paygate_replay_hits_total",
              "Idempotent requests answered from the replay zone without reaching paygated, by route.",
              b_->replay_hits);
    per_route("paygate_replay_conflicts_total",
              "Idempotency keys reused with another body, refused (422) from the replay zone, by route.",
              b_->replay_conflicts);

    w.family("paygate_auth_refusals_total", "counter", "Requests refused at the edge for their credentials, by kind.");
    for (std::size_t i = 0; i < static_cast<std::size_t>(AuthRefusal::Count); ++i) {
        w.sample("paygate_auth_refusals_total", {{"kind", auth_refusal_name(static_cast<AuthRefusal>(i))}},
                 static_cast<double>(b_->auth_refusals[i].load(kRelaxed)));
    }

    w.family("paygate_unavailable_total", "counter",
             "Requests answered 503 or 504, by status and cause (module-side causes and the daemon's own).");
    for (std::size_t i = 0; i < static_cast<std::size_t>(Unavailable::Count); ++i) {
        auto cause = static_cast<Unavailable>(i);
        std::string status = std::to_string(unavailable_status(cause));
        w.sample("paygate_unavailable_total", {{"status", status}, {"cause", unavailable_name(cause)}},
                 static_cast<double>(b_->unavailable[i].load(kRelaxed)));
    }

    w.family("paygate_resent_total", "counter",
             "Requests a daemon refused unexecuted (draining, overloaded) that were sent to another daemon.");
    w.sample("paygate_resent_total", {}, static_cast<double>(b_->resent.load(kRelaxed)));
    w.family("paygate_late_replies_total", "counter",
             "Daemon replies that arrived after their request had ended (timed out or client gone).");
    w.sample("paygate_late_replies_total", {}, static_cast<double>(b_->late_replies.load(kRelaxed)));
    w.family("paygate_requests_in_flight", "gauge", "Requests sent to paygated and waiting for the reply, all workers.");
    std::int64_t in_flight = 0;
    for (const WorkerSlot& slot : b_->workers) {
        std::int64_t pid = slot.pid.load(kRelaxed);
        if (pid != 0 && alive(pid)) in_flight += std::max<std::int64_t>(0, slot.in_flight.load(kRelaxed));
    }
    w.sample("paygate_requests_in_flight", {}, static_cast<double>(in_flight));
    return w.take();
}

}  // namespace paygate::module
