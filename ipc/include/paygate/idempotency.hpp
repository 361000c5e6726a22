// Idempotency keys (docs/idempotency.md), computed the same way by the nginx module (its
// shared-memory replay cache) and by paygated (the authoritative record in PostgreSQL).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace paygate::idempotency {

// The internal reply header by which paygated marks a reply as a key's recorded outcome; the
// module strips it (never sent to clients) and may cache the reply. Values below.
inline constexpr std::string_view kOutcomeHeader = "x-paygate-idempotency";
inline constexpr std::string_view kOutcomeStored = "stored";      // just executed and recorded
inline constexpr std::string_view kOutcomeReplayed = "replayed";  // recorded earlier, not executed now

// The header a replayed answer carries to the client.
inline constexpr std::string_view kReplayedHeader = "Idempotent-Replayed";

// 422: the key was used before for a different request (whoever answers: module or daemon).
inline constexpr std::string_view kKeyReusedCode = "idempotency_key_reused";
inline constexpr std::string_view kKeyReusedMessage =
    "idempotency_token was already used with a different request; use a new token for a new request";

// Whether requests of `route` (a routes.hpp name) are idempotent by idempotency_token:
// every mutating route of the payment API.
bool applies_to(std::string_view route);

// "0B6F7A52-8C1E-..." -> "0b6f7a52-8c1e-...": 8-4-4-4-12 hex digits, any case; nothing otherwise.
std::optional<std::string> canonical_uuid(std::string_view text);

struct Key {
    std::string scope;          // SHA-256 hex of (client, route, payment id, token): the key
    std::string request_hash;   // SHA-256 hex of the body's canonical JSON less the token: "same request?"
};

// The key of a request: its scope is (principal, route, path payment_id canonicalized when it
// is a UUID, idempotency_token canonicalized). Nothing when the body is not a JSON object with
// a UUID `idempotency_token` (such a request is refused by validation and keyed by nothing).
std::optional<Key> key_of(std::string_view principal, std::string_view route, std::string_view payment_id,
                          std::string_view body);

}  // namespace paygate::idempotency
