// The replay zone's rules (see replay_policy.hpp).
#include "replay_policy.hpp"

#include <algorithm>

namespace paygate::module::replay_policy {

bool fits_zone(std::size_t entry_bytes, std::size_t zone_bytes) { return entry_bytes <= zone_bytes / kZoneShare; }

std::int64_t entry_expiry(std::int64_t now_s, std::int64_t zone_ttl_s, std::uint64_t sent_unix_ms,
                          std::uint64_t record_expires_in_ms) {
    if (record_expires_in_ms == 0) return 0;
    // Rounded down to the second: the zone counts whole seconds (ngx_time()).
    auto record_s = static_cast<std::int64_t>((sent_unix_ms + record_expires_in_ms) / 1000);
    std::int64_t expiry = std::min(now_s + zone_ttl_s, record_s);
    return expiry > now_s ? expiry : 0;
}

}  // namespace paygate::module::replay_policy
