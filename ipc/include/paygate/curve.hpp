// CURVE keys of the module <-> daemon link: key files, the daemon's allow list, ZAP decisions.
//
// Plain C++ over libzmq's Z85 and key helpers, no sockets: paygated's ZAP handler, the nginx
// module, paygatectl and the unit tests all use it. docs/security.md describes the files.
//
// File grammar (secret key, public key and allow-list files alike): one entry per line; blank
// lines are ignored; a line whose first word is 40 Z85 characters is a key (Z85 has '#' in its
// alphabet, so a key may begin with '#'), followed in public key and allow-list files by an
// optional name (the rest of the line); any other line starting with '#' is a comment; anything
// else is an error naming the line (never the secret).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace paygate::curve {

inline constexpr std::size_t kKeyChars = 40;   // Z85 text of a 32-byte key
inline constexpr std::size_t kKeyBytes = 32;
// The ZAP domain paygated sets on its front end (ZAP requests name it).
inline constexpr const char* kZapDomain = "paygate";

// True when `text` is 40 Z85 characters (and so decodes to 32 bytes).
bool is_key_text(std::string_view text);

struct KeyPair {
    std::string public_key;   // Z85
    std::string secret_key;   // Z85
    ~KeyPair();               // wipes secret_key
};

struct NamedKey {
    std::string key;    // Z85
    std::string name;   // optional label from the file ("" if none)
};

// A secret key file's text: exactly one key line (the secret); the public key is derived from it.
bool parse_secret_key(std::string_view text, KeyPair& out, std::string& error);
// A public key or allow-list file's text: every key line, at least one; `max` bounds the count
// (a public key file passes 1).
bool parse_public_keys(std::string_view text, std::size_t max, std::vector<NamedKey>& out, std::string& error);

// The same from files; `error` starts with the path. A secret key file must not be readable or
// writable by group or others (mode 0600 or 0400), like ssh's private keys.
bool load_secret_key(const std::string& path, KeyPair& out, std::string& error);
bool load_public_key(const std::string& path, std::string& out, std::string& error);
bool load_public_keys(const std::string& path, std::vector<NamedKey>& out, std::string& error);

// A fresh key pair from libzmq (libsodium's random source). Throws std::runtime_error when
// libzmq has no CURVE support.
KeyPair generate();
// Whether this libzmq was built with CURVE (zmq_has("curve")).
bool available();

// The two files `paygatectl keys generate` writes for a key pair named `name`.
std::string secret_key_file_text(const KeyPair& pair, std::string_view name);
std::string public_key_file_text(const KeyPair& pair, std::string_view name);

// ---- the daemon's ZAP handler (RFC 27), minus the socket ----

struct ZapRequest {
    std::string version, request_id, domain, address, routing_id, mechanism;
    std::vector<std::string> credentials;
};

// Frames of one ZAP request; false (with `error`) when it is not one.
bool parse_zap_request(const std::vector<std::string>& frames, ZapRequest& out, std::string& error);

struct ZapDecision {
    bool allowed = false;
    std::string status_code;   // "200" or "400" ("500" for a request that is not ZAP 1.0)
    std::string status_text;
    std::string client_key;    // Z85 of the presented public key ("" when none was presented)
    std::string name;          // the allow list's name for the key, when allowed
};

// The set of module public keys allowed to connect. Immutable once built.
class AllowList {
public:
    AllowList() = default;
    explicit AllowList(const std::vector<NamedKey>& keys);
    // The entry of a 32-byte binary public key, or null.
    const NamedKey* find_binary(std::string_view key) const;
    std::size_t size() const { return keys_.size(); }

private:
    std::unordered_map<std::string, NamedKey> keys_;   // binary key -> entry
};

// Allows a CURVE peer whose long-term public key is on the list; refuses everything else.
ZapDecision decide(const ZapRequest& request, const AllowList& allowed);
// The reply frames for `request` (version, request id, status code and text, user id, metadata).
std::vector<std::string> zap_reply(const ZapRequest& request, const ZapDecision& decision);

// Keeps a log line that could repeat (a refused peer reconnects every second) to one per key per
// interval: the first occurrence is logged, later ones within `interval` are counted and reported
// with the next line. Bounded: at most `max_keys` keys are tracked (then it starts over).
class LogThrottle {
public:
    using Clock = std::chrono::steady_clock;
    explicit LogThrottle(Clock::duration interval, std::size_t max_keys = 1024)
        : interval_(interval), max_keys_(max_keys) {}
    // True when a line for `key` should be written now; `suppressed` is then the number of
    // occurrences not logged since the last line.
    bool should_log(const std::string& key, Clock::time_point now, unsigned long& suppressed);

private:
    struct Entry {
        Clock::time_point last;
        unsigned long suppressed = 0;
    };
    Clock::duration interval_;
    std::size_t max_keys_;
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace paygate::curve
