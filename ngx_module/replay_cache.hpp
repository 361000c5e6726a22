// The idempotent-replay cache: a shared-memory zone (all workers, kept across reloads) holding
// the recorded outcome of idempotency keys, so a replay is answered by nginx without a round trip.
//
// Like limit_req's zones: an rbtree keyed by the key's hash plus an LRU queue, in a slab pool,
// short critical sections under the zone's mutex, least recently used entries evicted when the
// zone is full (a bounded number per store). The rules of expiry, size and eviction are plain
// C++ in replay_policy.hpp. The zone only accelerates: a miss goes to paygated, which answers from
// PostgreSQL, the authority (docs/idempotency.md).
#pragma once

#include "ngx_includes.hpp"

#include <cstdint>
#include <string>
#include <string_view>

#include "paygate/idempotency.hpp"

namespace paygate::module {

struct ReplayZone {
    ngx_shm_zone_t* shm = nullptr;
    time_t ttl = 0;                 // seconds an entry is served (match paygated's retention)
};

struct StoredReply {
    std::uint16_t status = 0;
    std::string body;               // served as application/json
};

enum class ReplayLookup { Miss, Hit, Conflict };

// Sets up the zone of `paygate_idempotency_zone name:size [ttl=time]`. Returns NGX_CONF_OK or an
// error string for nginx.
char* configure_replay_zone(ngx_conf_t* cf, ngx_str_t* args, ngx_uint_t nargs, ReplayZone& zone);

// Hit: `out` is the recorded reply of this key for this very request. Conflict: the key was
// recorded for a different request (422). Miss: unknown or expired.
ReplayLookup replay_lookup(const ReplayZone& zone, const idempotency::Key& key, StoredReply& out);

// Records (or refreshes) the outcome of `key`, evicting least recently used entries if needed
// (at most replay_policy::kMaxEvictions). The entry lives the zone's ttl but never past the
// record's own expiry: `record_expires_in_ms` from paygated, counted from `sent_unix_ms`, when
// the module sent the request (replay_policy::entry_expiry). Not stored: a reply without that
// expiry, or larger than an eighth of the zone.
void replay_store(const ReplayZone& zone, const idempotency::Key& key, std::uint16_t status, std::string_view body,
                  std::uint64_t sent_unix_ms, std::uint64_t record_expires_in_ms, ngx_log_t* log);

}  // namespace paygate::module
