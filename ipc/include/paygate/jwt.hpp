// Verifying (and, for paygatectl and tests, minting) the merchants' Bearer JWTs (RFC 7519, JWS
// compact form) over OpenSSL: ES256 (ECDSA P-256 + SHA-256) and HS256 (HMAC-SHA256).
//
// Each configured key has a kid and one algorithm pinned to it: the token's header must name both,
// and they must agree, so `alg: none` and an HS256 token "signed" with an ES256 public key
// (algorithm confusion) are refused before any signature is computed. Plain C++, no nginx types.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paygate/crypto.hpp"

namespace paygate::jwt {

enum class Algorithm { HS256, ES256 };
std::string_view algorithm_name(Algorithm alg);                 // "HS256" | "ES256"
std::optional<Algorithm> parse_algorithm(std::string_view name);  // exact, case-sensitive

// A verification key. HS256: the shared secret (>= 32 bytes). ES256: a P-256 public key.
struct Key {
    std::string kid;
    Algorithm alg = Algorithm::HS256;
    std::string hmac_secret;
    std::shared_ptr<EVP_PKEY> ec_public;   // shared: read-only after loading, safe across threads
};

// kid: 1-64 of [A-Za-z0-9._-]. HS256 FILE: the secret is the file's first line (>= 32 bytes);
// ES256 FILE: a PEM "PUBLIC KEY" on P-256 (a private key file is refused: nginx never needs it).
// error names the file and never holds key bytes.
std::optional<Key> load_key(std::string_view kid, std::string_view alg, const std::string& path, std::string& error);
bool valid_kid(std::string_view kid);

struct Policy {
    std::vector<Key> keys;            // several kids for rotation
    std::string issuer;               // checked when not empty
    std::string audience;             // checked when not empty (aud: string or array of strings)
    std::int64_t leeway_s = 30;       // clock skew allowed on exp and nbf
    std::string merchant_claim = "merchant_id";
    const Key* find(std::string_view kid) const;
};

enum class Verdict {
    Ok,
    Malformed,          // not three base64url parts of JSON objects, too long, no exp, bad claim types, crit
    UnsupportedAlg,     // alg missing, "none" or not ES256/HS256
    UnknownKid,         // kid missing or not configured
    AlgorithmMismatch,  // the token's alg is not the one pinned to its kid (algorithm confusion)
    BadSignature,
    Expired,            // exp (required) + leeway passed
    NotYetValid,        // nbf - leeway not reached
    WrongIssuer,
    WrongAudience,
    NoMerchant,         // the merchant claim is missing or not 1-48 of [A-Za-z0-9._-]
};
std::string_view verdict_name(Verdict v);   // "ok", "malformed", "unsupported_alg", ...

struct Result {
    Verdict verdict = Verdict::Malformed;
    std::string merchant;   // set when Ok
    std::string kid;        // the header's kid when one was read (for logs)
};

inline constexpr std::size_t kMaxTokenBytes = 8192;
inline constexpr std::size_t kMaxMerchantBytes = 48;   // the merchant claim: 1-48 of [A-Za-z0-9._-]

// Never throws (an internal failure is BadSignature); checks in this order: size and shape,
// header (alg, kid, key, pin, crit), claims are a JSON object, signature, then the claims
// (exp, nbf, iss, aud, merchant).
Result verify(const Policy& policy, std::string_view token, std::int64_t now_s) noexcept;

// Minting, for paygatectl and tests. claims_json: a JSON object's text, used as written.
// HS256 takes the secret; ES256 a PEM private key on P-256. Throws std::runtime_error.
std::string sign_hs256(std::string_view secret, std::string_view kid, std::string_view claims_json);
std::string sign_es256(std::string_view private_pem, std::string_view kid, std::string_view claims_json);
// Signs any header (e.g. {"alg":"none"} or a wrong alg): for tests of refusals. `alg_used`
// decides how: HS256 with `key` as secret, ES256 with `key` as PEM private key, none: empty signature.
std::string sign_raw(std::string_view header_json, std::string_view claims_json, std::string_view alg_used,
                     std::string_view key);

// New key material (paygatectl jwt keygen). HS256: 64 hex characters of 32 random bytes.
// ES256: a P-256 pair as PEM (PKCS#8 private key, SubjectPublicKeyInfo public key). Throw on failure.
std::string generate_hs256_secret();
void generate_es256_pair(std::string& private_pem, std::string& public_pem);
// The signing material in a key FILE: HS256, its first line; ES256, the PEM private key.
std::optional<std::string> load_signing_key(Algorithm alg, const std::string& path, std::string& error);

}  // namespace paygate::jwt
