// The replay zone's rules, kept apart from its nginx data structures (replay_cache.cpp) so that
// unit tests exercise them directly: how long an entry lives, which replies it takes, and how
// much one store may evict.
#pragma once

#include <cstddef>
#include <cstdint>

namespace paygate::module::replay_policy {

// A reply takes at most an eighth of the zone; a larger one is not cached (paygated answers its
// replays from PostgreSQL). One store can then never evict more than an eighth of the others,
// and the smallest zone (8 pages) still holds several entries.
inline constexpr std::size_t kZoneShare = 8;
bool fits_zone(std::size_t entry_bytes, std::size_t zone_bytes);

// The most least-recently-used entries one store evicts to make room (a fragmented slab may need
// a few); beyond that the reply is not cached. Bounds the work done under the zone's lock.
inline constexpr int kMaxEvictions = 16;

// Tries allocate(); while it returns null, evicts one entry (evict_one() is false when there is
// nothing left to evict) and tries again, at most `max_evictions` times. Null when no room was
// found within that.
template <class Allocate, class EvictOne>
auto allocate_evicting(Allocate&& allocate, EvictOne&& evict_one, int max_evictions) -> decltype(allocate()) {
    auto p = allocate();
    for (int evicted = 0; p == nullptr && evicted < max_evictions && evict_one(); ++evicted) p = allocate();
    return p;
}

// When an entry stored now stops being served (unix seconds, served while now < it): the zone's
// ttl from now, and never past the record's own expiry. paygated gives that as
// `record_expires_in_ms`, counted by PostgreSQL from the start of the transaction that read or
// wrote the record; the module sent the request (`sent_unix_ms`, its own clock) before that
// transaction began, so sent + expires_in is at or before the row's expires_at whatever the two
// hosts' clocks say. 0 means "do not store": no expiry given, or none left.
std::int64_t entry_expiry(std::int64_t now_s, std::int64_t zone_ttl_s, std::uint64_t sent_unix_ms,
                          std::uint64_t record_expires_in_ms);

}  // namespace paygate::module::replay_policy
