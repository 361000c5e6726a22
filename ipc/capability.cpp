// Capability URL tags: HMAC-SHA256 over our operation reference, under a rotating keyring.
#include "paygate/capability.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <openssl/crypto.h>

#include "paygate/crypto.hpp"

namespace paygate::capability {

namespace {

constexpr std::size_t kMinSecretBytes = 32;
constexpr std::size_t kTagChars = 43;            // base64url of 32 bytes, unpadded
constexpr std::size_t kMaxFileBytes = 64 * 1024; // a keyring is a handful of short lines

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool valid_id(std::string_view id) {
    return !id.empty() && id.size() <= 16 &&
           std::all_of(id.begin(), id.end(), [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

bool valid_ref(std::string_view ref) {
    return !ref.empty() && ref.size() <= 64 &&
           std::all_of(ref.begin(), ref.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

bool valid_tag(std::string_view tag) {
    return tag.size() == kTagChars &&
           std::all_of(tag.begin(), tag.end(), [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

}  // namespace

std::optional<Keyring> Keyring::parse(std::string_view text, std::string& error) {
    Keyring ring;
    std::size_t line_no = 0;
    for (std::size_t pos = 0; pos <= text.size();) {
        std::size_t end = std::min(text.find('\n', pos), text.size());
        std::string_view line = trim(text.substr(pos, end - pos));
        pos = end + 1;
        ++line_no;
        if (line.empty() || line.front() == '#') continue;
        auto where = [&] { return "capability keyring line " + std::to_string(line_no) + ": "; };
        std::size_t gap = std::find_if(line.begin(), line.end(), is_space) - line.begin();
        std::string_view id = line.substr(0, gap);
        std::string_view b64 = trim(line.substr(std::min(gap, line.size())));
        if (b64.empty() || std::any_of(b64.begin(), b64.end(), is_space)) {
            error = where() + "expected \"<id> <base64 secret>\"";
            return std::nullopt;
        }
        if (!valid_id(id)) {
            error = where() + "key id must be 1-16 characters of [A-Za-z0-9_-]";
            return std::nullopt;
        }
        if (ring.find(id) != nullptr) {
            error = where() + "duplicate key id " + std::string(id);
            return std::nullopt;
        }
        auto secret = crypto::base64_decode(b64);
        if (!secret) {
            error = where() + "secret is not valid padded base64";
            return std::nullopt;
        }
        if (secret->size() < kMinSecretBytes) {
            wipe(*secret);
            error = where() + "secret must be at least 32 bytes";
            return std::nullopt;
        }
        ring.keys_.push_back(Key{std::string(id), std::move(*secret)});
    }
    if (ring.keys_.empty()) {
        error = "capability keyring holds no key";
        return std::nullopt;
    }
    return ring;
}

std::optional<Keyring> Keyring::load_file(const std::string& path, std::string& error) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = path + ": " + std::error_code(errno, std::generic_category()).message();
        return std::nullopt;
    }
    std::string text(kMaxFileBytes + 1, '\0');
    std::size_t n = std::fread(text.data(), 1, text.size(), f);
    bool failed = std::ferror(f) != 0;
    std::fclose(f);
    text.resize(n);
    std::optional<Keyring> ring;
    if (failed) {
        error = path + ": read error";
    } else if (n > kMaxFileBytes) {
        error = path + ": file too large for a keyring";
    } else if (!(ring = parse(text, error))) {
        error = path + ": " + error;
    }
    wipe(text);
    return ring;
}

const Key& Keyring::current() const {
    if (keys_.empty()) throw std::logic_error("empty capability keyring");
    return keys_.front();
}

const Key* Keyring::find(std::string_view id) const {
    for (const Key& k : keys_) {
        if (k.id == id) return &k;
    }
    return nullptr;
}

bool Keyring::empty() const { return keys_.empty(); }

std::string tag(const Key& key, std::string_view ref) {
    std::string message = "paygate-capability-v1\n";
    message.append(key.id).append(1, '\n').append(ref);
    return crypto::base64url_encode(crypto::hmac_sha256(key.secret, message));
}

bool verify(const Keyring& keys, std::string_view key_id, std::string_view ref, std::string_view tag_text) noexcept {
    const Key* key = keys.find(key_id);
    if (key == nullptr || tag_text.size() != kTagChars) return false;
    try {
        return crypto::constant_time_equal(tag(*key, ref), tag_text);
    } catch (...) {
        return false;  // fail closed
    }
}

std::string query(const Keyring& keys, std::string_view ref) {
    if (!valid_ref(ref)) throw std::invalid_argument("capability ref must be 1-64 characters of [A-Za-z0-9-]");
    const Key& key = keys.current();
    std::string q = "ref=";
    q.append(ref).append("&kid=").append(key.id).append("&tag=").append(tag(key, ref));
    return q;
}

bool parse_query(std::string_view query_text, Parsed& out) {
    Parsed p;
    bool seen_ref = false, seen_kid = false, seen_tag = false;
    int params = 0;
    for (std::size_t pos = 0; pos <= query_text.size();) {
        std::size_t end = std::min(query_text.find('&', pos), query_text.size());
        std::string_view param = query_text.substr(pos, end - pos);
        pos = end + 1;
        if (++params > 3) return false;
        std::size_t eq = param.find('=');
        if (eq == std::string_view::npos) return false;
        std::string_view name = param.substr(0, eq);
        std::string_view value = param.substr(eq + 1);
        if (name == "ref" && !seen_ref && valid_ref(value)) {
            seen_ref = true;
            p.ref = value;
        } else if (name == "kid" && !seen_kid && valid_id(value)) {
            seen_kid = true;
            p.kid = value;
        } else if (name == "tag" && !seen_tag && valid_tag(value)) {
            seen_tag = true;
            p.tag = value;
        } else {
            return false;
        }
    }
    if (!(seen_ref && seen_kid && seen_tag)) return false;
    out = std::move(p);
    return true;
}

}  // namespace paygate::capability
