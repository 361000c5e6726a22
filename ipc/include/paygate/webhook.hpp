// Verifying and signing partner callbacks the Standard Webhooks 1.0 way (v1 HMAC, v1e ECDSA P-521).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paygate/crypto.hpp"

namespace paygate::webhook {

// Signed content is id + "." + timestamp + "." + body; the webhook-signature header holds
// space-separated "version,base64" entries. v1 = HMAC-SHA256 with a shared secret,
// v1e = ECDSA P-521 with SHA-512 over the same content, base64 of the DER signature.
struct Key {                                       // one accepted partner key
    std::string id;                                // for logs only, e.g. "sky-2026"
    std::optional<crypto::EcdsaPublicKey> ecdsa;   // set for v1e keys
    std::string hmac_secret;                       // raw secret bytes for v1 keys (empty otherwise)
};

// "v1e:<id>:<path to PEM public key file>" or "v1:<id>:whsec_<base64>" (secret >= 24 bytes);
// id is 1-64 of [A-Za-z0-9._-]. error says what is wrong and never holds secret bytes.
std::optional<Key> parse_key_spec(std::string_view spec, std::string& error);

enum class Verdict { Ok, NoKeys, MissingHeader, BadTimestamp, Stale, Future, BadSignatureHeader, NoValidSignature };
const char* verdict_name(Verdict v);  // "ok", "no_keys", "missing_header", ...

// Checks in this order: keys present, headers non-empty, timestamp 1-12 digits, |now - ts| within
// tolerance (either side), header <= 8 KiB with <= 16 entries and at least one well-formed entry
// (v1/v1e entries whose base64 does not decode, or is over 1 KiB, are not well-formed; entries of
// unknown versions are well-formed but never match). Ok if any entry matches any key of its kind.
// Never throws: an internal failure is NoValidSignature.
Verdict verify(const std::vector<Key>& keys, std::string_view id, std::string_view timestamp,
               std::string_view signature_header, std::string_view body, std::int64_t now_s,
               std::int64_t tolerance_s = 300) noexcept;

// secret: raw bytes (what parse_key_spec puts in hmac_secret). Return "v1,<b64>" / "v1e,<b64>".
std::string sign_v1(std::string_view secret, std::string_view id, std::string_view timestamp, std::string_view body);
std::string sign_v1e(const crypto::EcdsaPrivateKey& key, std::string_view id, std::string_view timestamp,
                     std::string_view body);  // throws std::runtime_error if OpenSSL fails

}  // namespace paygate::webhook
