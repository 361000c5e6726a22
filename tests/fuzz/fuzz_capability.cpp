// The capability-tag verifier (ipc/capability.cpp): the callback URL's query as it arrives, and
// the tag check, against references written here from capability.hpp's contract.
//
// Byte 0 chooses what the rest is:
//   0 mod 3: a query string: parse_query() agrees with the reference parser; whatever it accepts
//            verifies only with the genuine tag (computed here with OpenSSL directly);
//   1 mod 3: a reference: query() makes a URL for it (or refuses a reference outside
//            [A-Za-z0-9-]{1,64}); that URL, its parameters in any order, parses and verifies
//            under the current and the old key; one changed tag character, another key id or
//            another reference does not;
//   2 mod 3: a keyring file: Keyring::parse() keeps only well-formed keys.
#include <openssl/evp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "paygate/capability.hpp"
#include "paygate/crypto.hpp"

namespace capability = paygate::capability;
namespace crypto = paygate::crypto;

namespace {

// Current key "k2" (32 bytes), old key "k1" (39 bytes).
constexpr std::string_view kRing =
    "# fuzz keyring\n"
    "k2 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItdHdvISE=\n"
    "\n"
    "k1 ZnV6ei1jYXBhYmlsaXR5LWtleS1udW1iZXItb25lLW9mLWZvcnR5\n";

const capability::Keyring& ring() {
    static const capability::Keyring r = [] {
        std::string error;
        auto parsed = capability::Keyring::parse(kRing, error);
        FUZZ_CHECK(parsed.has_value(), "the harness's keyring does not parse");
        return std::move(*parsed);
    }();
    return r;
}

bool alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool good_ref(std::string_view s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '-'; });
}
bool good_kid(std::string_view s) {
    return !s.empty() && s.size() <= 16 &&
           std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '-' || c == '_'; });
}
bool good_tag(std::string_view s) {
    return s.size() == 43 && std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '-' || c == '_'; });
}

std::optional<capability::Parsed> reference_parse(std::string_view query) {
    capability::Parsed p;
    bool ref = false, kid = false, tag = false;
    std::vector<std::string_view> params;
    std::size_t start = 0;
    while (true) {
        const std::size_t amp = query.find('&', start);
        params.push_back(query.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start));
        if (amp == std::string_view::npos) break;
        start = amp + 1;
    }
    if (params.size() != 3) return std::nullopt;
    for (std::string_view param : params) {
        const std::size_t eq = param.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        const std::string_view name = param.substr(0, eq), value = param.substr(eq + 1);
        if (name == "ref" && !ref && good_ref(value)) {
            ref = true, p.ref = std::string(value);
        } else if (name == "kid" && !kid && good_kid(value)) {
            kid = true, p.kid = std::string(value);
        } else if (name == "tag" && !tag && good_tag(value)) {
            tag = true, p.tag = std::string(value);
        } else {
            return std::nullopt;
        }
    }
    return p;
}

// base64url(HMAC-SHA256(secret, "paygate-capability-v1\n" + id + "\n" + ref)), no padding.
std::string reference_tag(const capability::Key& key, std::string_view ref) {
    const std::string message = "paygate-capability-v1\n" + key.id + "\n" + std::string(ref);
    unsigned char mac[32];
    std::size_t len = 0;
    FUZZ_CHECK(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.secret.data(), key.secret.size(),
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, sizeof mac,
                         &len) != nullptr && len == 32,
               "OpenSSL HMAC failed");
    static const char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (unsigned char byte : mac) {
        acc = (acc << 8) | byte;
        bits += 8;
        while (bits >= 6) out.push_back(kUrl[(acc >> (bits -= 6)) & 63]);
    }
    if (bits > 0) out.push_back(kUrl[(acc << (6 - bits)) & 63]);
    return out;
}

void check_query(std::string_view query) {
    capability::Parsed got;
    const bool ok = capability::parse_query(query, got);
    const auto expected = reference_parse(query);
    FUZZ_CHECK(ok == expected.has_value(), "parse_query's verdict differs from the reference");
    if (!ok) return;
    FUZZ_CHECK(got.ref == expected->ref && got.kid == expected->kid && got.tag == expected->tag,
               "parse_query read other values than the reference");
    const capability::Key* key = ring().find(got.kid);
    const bool genuine = key != nullptr && got.tag == reference_tag(*key, got.ref);
    FUZZ_CHECK(capability::verify(ring(), got.kid, got.ref, got.tag) == genuine, "verify() accepts a wrong tag");
}

void check_ref(std::string_view ref, std::uint8_t choice) {
    std::string query;
    try {
        query = capability::query(ring(), ref);
    } catch (const std::invalid_argument&) {
        FUZZ_CHECK(!good_ref(ref), "query() refused a valid reference");
        return;
    }
    FUZZ_CHECK(good_ref(ref), "query() made a URL for an invalid reference");
    const capability::Key& current = ring().current();
    FUZZ_CHECK(query == "ref=" + std::string(ref) + "&kid=" + current.id + "&tag=" + reference_tag(current, ref),
               "query() is not ref, current kid and the documented tag");
    capability::Parsed p;
    FUZZ_CHECK(capability::parse_query(query, p) && p.ref == ref && p.kid == current.id, "query()'s URL does not parse");
    FUZZ_CHECK(capability::verify(ring(), p.kid, p.ref, p.tag), "query()'s own tag does not verify");

    // Parameters in any order.
    std::vector<std::string> params = {"ref=" + p.ref, "kid=" + p.kid, "tag=" + p.tag};
    for (std::uint8_t k = choice % 6; k > 0; --k) std::next_permutation(params.begin(), params.end());
    capability::Parsed reordered;
    FUZZ_CHECK(capability::parse_query(params[0] + "&" + params[1] + "&" + params[2], reordered) &&
                   reordered.ref == p.ref && reordered.kid == p.kid && reordered.tag == p.tag,
               "reordered parameters read differently");

    // A URL made under the old key still verifies (rotation); nothing else does.
    const capability::Key* old = ring().find("k1");
    FUZZ_CHECK(old != nullptr && capability::verify(ring(), "k1", ref, capability::tag(*old, ref)), "old key rejected");
    FUZZ_CHECK(!capability::verify(ring(), "k1", ref, p.tag), "a tag verified under another key");
    FUZZ_CHECK(!capability::verify(ring(), "k3", ref, p.tag), "an unknown key id verified");
    std::string other_ref(ref);
    other_ref.back() = other_ref.back() == 'a' ? 'b' : 'a';
    FUZZ_CHECK(!capability::verify(ring(), p.kid, other_ref, p.tag), "a tag verified for another reference");
    std::string forged = p.tag;
    const std::size_t at = choice % forged.size();
    forged[at] = forged[at] == 'A' ? 'B' : 'A';
    FUZZ_CHECK(!capability::verify(ring(), p.kid, ref, forged), "a changed tag verified");
    FUZZ_CHECK(!capability::verify(ring(), p.kid, ref, p.tag.substr(1)), "a shortened tag verified");
}

void check_keyring(std::string_view text) {
    std::string error;
    const auto parsed = capability::Keyring::parse(text, error);
    if (!parsed) {
        FUZZ_CHECK(!error.empty(), "a refused keyring without a reason");
        return;
    }
    FUZZ_CHECK(!parsed->empty(), "an accepted keyring without keys");
    const capability::Key& current = parsed->current();
    FUZZ_CHECK(good_kid(current.id) && current.secret.size() >= 32, "an accepted key that is not well-formed");
    FUZZ_CHECK(parsed->find(current.id) == &current, "the current key is not found by its id");
    FUZZ_CHECK(capability::verify(*parsed, current.id, "ref-1", reference_tag(current, "ref-1")),
               "a parsed keyring does not verify its own tag");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 3) {
        case 0: check_query(rest); break;
        case 1: check_ref(rest, data[0]); break;
        default: check_keyring(rest); break;
    }
    return 0;
}
