// Standard Webhooks 1.0 verification of partner callbacks, with our asymmetric v1e scheme beside v1.
#include "paygate/webhook.hpp"

#include <algorithm>

namespace paygate::webhook {

namespace {

constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::size_t kMaxEntries = 16;
constexpr std::size_t kMaxSignatureB64 = 1024;  // a P-521 DER signature is ~188 base64 chars
constexpr std::size_t kMinSecretBytes = 24;     // the lower bound Standard Webhooks sets for secrets
constexpr std::size_t kHmacBytes = 32;
// Keeps ts +/- tolerance far from overflow whatever the caller passes (10^13 s is ~300000 years).
constexpr std::int64_t kMaxTolerance = 10'000'000'000'000;

enum class Scheme { V1, V1e, Unknown };

struct Entry {
    Scheme scheme;
    std::string_view raw;      // "version,base64" as received, to skip repeats
    std::string signature;     // decoded, for known schemes
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool valid_key_id(std::string_view id) {
    return !id.empty() && id.size() <= 64 &&
           std::all_of(id.begin(), id.end(), [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

std::string signed_content(std::string_view id, std::string_view timestamp, std::string_view body) {
    std::string s;
    s.reserve(id.size() + timestamp.size() + body.size() + 2);
    s.append(id).append(1, '.').append(timestamp).append(1, '.').append(body);
    return s;
}

// nullopt: not well-formed. Unknown versions are kept (they are legal, just never match).
std::optional<Entry> parse_entry(std::string_view raw) {
    std::size_t comma = raw.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    std::string_view version = raw.substr(0, comma);
    std::string_view b64 = raw.substr(comma + 1);
    if (version.empty() || version.size() > 16 || !std::all_of(version.begin(), version.end(), is_alnum) ||
        b64.empty()) {
        return std::nullopt;
    }
    Entry e{Scheme::Unknown, raw, {}};
    if (version == "v1") {
        e.scheme = Scheme::V1;
    } else if (version == "v1e") {
        e.scheme = Scheme::V1e;
    } else {
        return e;
    }
    if (b64.size() > kMaxSignatureB64) return std::nullopt;
    auto sig = crypto::base64_decode(b64);
    if (!sig || sig->empty() || (e.scheme == Scheme::V1 && sig->size() != kHmacBytes)) return std::nullopt;
    e.signature = std::move(*sig);
    return e;
}

Verdict check_signatures(const std::vector<Key>& keys, std::string_view id, std::string_view timestamp,
                         std::string_view header, std::string_view body) {
    if (header.size() > kMaxHeaderBytes) return Verdict::BadSignatureHeader;
    std::vector<Entry> entries;
    std::size_t count = 0;
    bool any_well_formed = false;
    for (std::size_t pos = 0; pos < header.size();) {
        std::size_t end = std::min(header.find(' ', pos), header.size());
        std::string_view raw = header.substr(pos, end - pos);
        pos = end + 1;
        if (raw.empty()) continue;  // tolerate doubled spaces
        if (++count > kMaxEntries) return Verdict::BadSignatureHeader;
        auto e = parse_entry(raw);
        if (!e) continue;
        any_well_formed = true;
        // A repeated entry cannot change the outcome, only cost another ECDSA verification.
        bool repeat = std::any_of(entries.begin(), entries.end(), [&](const Entry& x) { return x.raw == e->raw; });
        if (e->scheme != Scheme::Unknown && !repeat) entries.push_back(std::move(*e));
    }
    if (!any_well_formed) return Verdict::BadSignatureHeader;
    if (entries.empty()) return Verdict::NoValidSignature;

    const std::string content = signed_content(id, timestamp, body);
    for (const Key& key : keys) {
        std::string expected;  // this key's HMAC, computed only if a v1 entry needs it
        for (const Entry& e : entries) {
            if (e.scheme == Scheme::V1 && !key.hmac_secret.empty()) {
                if (expected.empty()) expected = crypto::hmac_sha256(key.hmac_secret, content);
                if (crypto::constant_time_equal(expected, e.signature)) return Verdict::Ok;
            } else if (e.scheme == Scheme::V1e && key.ecdsa) {
                if (key.ecdsa->verify_sha512(content, e.signature)) return Verdict::Ok;
            }
        }
    }
    return Verdict::NoValidSignature;
}

}  // namespace

std::optional<Key> parse_key_spec(std::string_view spec, std::string& error) {
    std::size_t c1 = spec.find(':');
    std::size_t c2 = c1 == std::string_view::npos ? c1 : spec.find(':', c1 + 1);
    if (c2 == std::string_view::npos) {
        error = "webhook key must be \"v1e:<id>:<PEM public key file>\" or \"v1:<id>:whsec_<base64>\"";
        return std::nullopt;
    }
    std::string_view version = spec.substr(0, c1);
    std::string_view id = spec.substr(c1 + 1, c2 - c1 - 1);
    std::string_view value = spec.substr(c2 + 1);  // a path may itself hold ':'
    if (version != "v1" && version != "v1e") {
        error = "webhook key version must be v1 or v1e";
        return std::nullopt;
    }
    if (!valid_key_id(id)) {
        error = "webhook key id must be 1-64 characters of [A-Za-z0-9._-]";
        return std::nullopt;
    }
    Key key;
    key.id = std::string(id);
    if (version == "v1e") {
        if (value.empty()) {
            error = "webhook key " + key.id + ": missing public key file path";
            return std::nullopt;
        }
        std::string why;
        key.ecdsa = crypto::EcdsaPublicKey::load_pem_file(std::string(value), why);
        if (!key.ecdsa) {
            error = "webhook key " + key.id + ": " + why;
            return std::nullopt;
        }
        return key;
    }
    constexpr std::string_view kPrefix = "whsec_";
    if (value.substr(0, kPrefix.size()) != kPrefix) {
        error = "webhook key " + key.id + ": v1 secret must start with whsec_";
        return std::nullopt;
    }
    auto secret = crypto::base64_decode(value.substr(kPrefix.size()));
    if (!secret) {
        error = "webhook key " + key.id + ": v1 secret is not valid padded base64 after whsec_";
        return std::nullopt;
    }
    if (secret->size() < kMinSecretBytes) {
        error = "webhook key " + key.id + ": v1 secret must be at least 24 bytes";
        return std::nullopt;
    }
    key.hmac_secret = std::move(*secret);
    return key;
}

const char* verdict_name(Verdict v) {
    switch (v) {
        case Verdict::Ok: return "ok";
        case Verdict::NoKeys: return "no_keys";
        case Verdict::MissingHeader: return "missing_header";
        case Verdict::BadTimestamp: return "bad_timestamp";
        case Verdict::Stale: return "stale";
        case Verdict::Future: return "future";
        case Verdict::BadSignatureHeader: return "bad_signature_header";
        case Verdict::NoValidSignature: return "no_valid_signature";
    }
    return "unknown";
}

Verdict verify(const std::vector<Key>& keys, std::string_view id, std::string_view timestamp,
               std::string_view signature_header, std::string_view body, std::int64_t now_s,
               std::int64_t tolerance_s) noexcept {
    if (keys.empty()) return Verdict::NoKeys;
    if (id.empty() || timestamp.empty() || signature_header.empty()) return Verdict::MissingHeader;
    if (timestamp.size() > 12 || !std::all_of(timestamp.begin(), timestamp.end(), is_digit)) {
        return Verdict::BadTimestamp;
    }
    std::int64_t ts = 0;
    for (char c : timestamp) ts = ts * 10 + (c - '0');
    std::int64_t tolerance = std::clamp<std::int64_t>(tolerance_s, 0, kMaxTolerance);
    if (ts + tolerance < now_s) return Verdict::Stale;
    if (ts - tolerance > now_s) return Verdict::Future;
    try {
        return check_signatures(keys, id, timestamp, signature_header, body);
    } catch (...) {
        return Verdict::NoValidSignature;  // fail closed (allocation or OpenSSL failure)
    }
}

std::string sign_v1(std::string_view secret, std::string_view id, std::string_view timestamp, std::string_view body) {
    return "v1," + crypto::base64_encode(crypto::hmac_sha256(secret, signed_content(id, timestamp, body)));
}

std::string sign_v1e(const crypto::EcdsaPrivateKey& key, std::string_view id, std::string_view timestamp,
                     std::string_view body) {
    return "v1e," + crypto::base64_encode(key.sign_sha512(signed_content(id, timestamp, body)));
}

}  // namespace paygate::webhook
