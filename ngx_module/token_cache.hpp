// The worker's copy of the live client tokens, refreshed from paygated ("auth.tokens").
//
// Plain C++, no nginx types. Only SHA-256 hashes are held (as the database holds them); a
// presented token is hashed and looked up, so checking it costs no round trip.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace paygate::module {

class TokenCache {
public:
    using Clock = std::chrono::steady_clock;

    // The module refuses authenticated requests (503) when its list is older than this: it
    // cannot promise a revocation took effect if it has not heard from the daemon.
    static constexpr std::chrono::milliseconds kMaxStaleness{3000};

    // Applies an auth.tokens reply body: {"version":N,"unchanged":true} or
    // {"version":N,"tokens":[{"sha256":"<hex>","client_id":"<id>"},...]}. A body that does not
    // parse leaves the cache as it was and returns false (with `error`).
    bool apply(std::string_view body, Clock::time_point now, std::string& error);

    // True once a list was received and the last confirmation is fresh enough.
    bool usable(Clock::time_point now) const;

    // True once any list was received (a worker just started or reloaded has none yet).
    bool loaded() const { return loaded_; }

    // The client id owning `token`, if it is live.
    std::optional<std::string> client_of(std::string_view token) const;

    std::uint64_t version() const { return version_; }
    std::size_t size() const { return clients_by_hash_.size(); }

private:
    std::unordered_map<std::string, std::string> clients_by_hash_;   // sha256 hex -> client id
    std::uint64_t version_ = 0;
    bool loaded_ = false;
    Clock::time_point confirmed_at_{};
};

}  // namespace paygate::module
