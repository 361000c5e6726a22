// Capability URLs: per-operation partner callback URLs carrying our reference and an HMAC tag.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::capability {

struct Key {
    std::string id;      // [A-Za-z0-9_-]{1,16}
    std::string secret;  // raw bytes, >= 32
};

// Immutable once parsed, so one Keyring may be shared by any number of threads.
class Keyring {
public:
    // One key per line "<id> <base64 secret>" (standard alphabet, padded); blank lines and lines
    // starting with '#' ignored. The FIRST key is current (new URLs); all keys verify. Ids unique.
    // error gives the line number and the problem, never secret bytes.
    static std::optional<Keyring> parse(std::string_view text, std::string& error);
    static std::optional<Keyring> load_file(const std::string& path, std::string& error);

    const Key& current() const;  // throws std::logic_error on an empty (moved-from) keyring
    const Key* find(std::string_view id) const;
    bool empty() const;

private:
    Keyring() = default;
    std::vector<Key> keys_;
};

// base64url(HMAC-SHA256(secret, "paygate-capability-v1\n" + id + "\n" + ref)), 43 characters.
std::string tag(const Key& key, std::string_view ref);
// Constant time over the tag; unknown key id -> false. Never throws.
bool verify(const Keyring& keys, std::string_view key_id, std::string_view ref, std::string_view tag) noexcept;

// "ref=<ref>&kid=<current id>&tag=<tag>"; ref must be [A-Za-z0-9-]{1,64}, else std::invalid_argument.
std::string query(const Keyring& keys, std::string_view ref);

// Accepts exactly the three parameters ref, kid, tag in any order, each once, each non-empty and
// in its alphabet (ref as above, kid as a key id, tag 43 base64url characters); false otherwise.
struct Parsed {
    std::string ref, kid, tag;
};
bool parse_query(std::string_view query, Parsed& out);

}  // namespace paygate::capability
