// API tokens: their text form and hash (pure), and the SQL behind `paygatectl token`.
//
// A token is "pgt_" followed by 64 lower-case hex digits (32 bytes from OpenSSL's RAND_bytes).
// Only the lower-case hex SHA-256 of the whole text is stored (api_tokens.token_sha256), with its
// first 8 characters (token_prefix) so humans can tell tokens apart. See docs/daemon.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

namespace paygate::daemon {

inline constexpr std::string_view kTokenPrefix = "pgt_";
inline constexpr std::size_t kTokenRandomBytes = 32;
inline constexpr std::size_t kTokenLength = 4 + 2 * kTokenRandomBytes;   // 68
inline constexpr std::size_t kTokenPrefixLength = 8;                      // what token_prefix keeps

// "pgt_" + lower-case hex of `random` (which must be kTokenRandomBytes long).
std::string token_from_bytes(std::string_view random);

// A new token from RAND_bytes; throws std::runtime_error if OpenSSL cannot provide randomness.
std::string generate_token();

// Is `text` exactly "pgt_" + 64 lower-case hex digits?
bool is_token_text(std::string_view text);

// Lower-case hex SHA-256 of the token text: the value stored and looked up.
std::string token_sha256(std::string_view token);

// Its first kTokenPrefixLength characters ("pgt_1a2b").
std::string token_prefix(std::string_view token);

// Client names: 1..64 characters of [A-Za-z0-9._-].
bool is_client_name(std::string_view name);

// --- paygatectl token (each call is one transaction on `conn`; false with `error` on failure) ---

struct CreatedToken {
    std::string token;            // the only time the text exists: print it, never store it
    bool client_created = false;  // the client did not exist and was created
};
bool create_token(PGconn* conn, const std::string& client, CreatedToken& out, std::string& error);

enum class RevokeOutcome { Revoked, AlreadyRevoked, Unknown };
// Revokes the token with this text (its hash is looked up).
bool revoke_token(PGconn* conn, const std::string& token, RevokeOutcome& out, std::string& error);
// Revokes every live token of `client`; `count` says how many. An unknown client is an error.
bool revoke_client_tokens(PGconn* conn, const std::string& client, long& count, std::string& error);

struct TokenListRow {
    std::string prefix;
    std::string client;
    std::string created_at;                 // "2026-11-24T10:00:00Z"
    std::optional<std::string> revoked_at;  // same format, nothing while live
};
// All tokens (or those of `client`, which must exist), by client name then creation.
bool list_tokens(PGconn* conn, const std::optional<std::string>& client, std::vector<TokenListRow>& out,
                 std::string& error);

// --- partner API keys (paygatectl partner key; docs/partners/whitebird.md) --------------------
//
// A partner key is "pgk_" + 64 lower-case hex digits, stored like a token (SHA-256 only) in
// api_tokens with `partner` set, owned by the client "partner.<name>". The module accepts it only
// on that partner's routes, never as a client token.

inline constexpr std::string_view kPartnerKeyPrefix = "pgk_";
inline constexpr std::string_view kPartnerClientPrefix = "partner.";
// The client a ZooTicket merchant's payments belong to is "zt.<merchant>", made on its first
// session; its JWT is the only credential that acts for it.
inline constexpr std::string_view kMerchantClientPrefix = "zt.";

bool is_key_partner(std::string_view partner);   // a partner that calls with API keys ("whitebird")
bool is_partner_key_text(std::string_view text);

bool create_partner_key(PGconn* conn, const std::string& partner, CreatedToken& out, std::string& error);
// Revokes that key of `partner` (or, without one, all its live keys); `count` says how many.
bool revoke_partner_keys(PGconn* conn, const std::string& partner, const std::optional<std::string>& key, long& count,
                         std::string& error);
// Prefix, partner, created, revoked of every key of `partner`.
bool list_partner_keys(PGconn* conn, const std::string& partner, std::vector<TokenListRow>& out, std::string& error);

// The rows as an aligned table with a header line "PREFIX CLIENT CREATED REVOKED" ("-" while live).
std::string format_token_table(const std::vector<TokenListRow>& rows);

}  // namespace paygate::daemon
