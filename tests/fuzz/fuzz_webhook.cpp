// The callback signature verifier (ipc/webhook.cpp) against a reference written here from
// webhook.hpp's contract (checks in order: keys, headers present, timestamp 1-12 digits, within
// tolerance, header <= 8 KiB with <= 16 entries and a well-formed one; Ok iff an entry matches a
// key of its kind). Genuine v1 (HMAC) and v1e (ECDSA P-521) signatures are planted among fuzzed
// entries now and then, so both "Ok" and "a body changed after signing is refused" are reached.
// The strict base64 decoders the verifier relies on are checked against a reference too.
#include <fuzzer/FuzzedDataProvider.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "paygate/crypto.hpp"
#include "paygate/webhook.hpp"

namespace crypto = paygate::crypto;
namespace webhook = paygate::webhook;

namespace {

const std::string kSecret = "fuzz-secret-of-thirty-two-bytes!";

struct Material {
    std::optional<crypto::EcdsaPrivateKey> signer;
    std::vector<webhook::Key> keysets[4];   // none, v1, v1e, both (keys are move-only: one set each)
};

std::string pem_of_new_key() {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
    BIO* bio = BIO_new(BIO_s_mem());
    std::string pem;
    if (key != nullptr && bio != nullptr &&
        PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1) {
        char* bytes = nullptr;
        const long len = BIO_get_mem_data(bio, &bytes);
        if (len > 0) pem.assign(bytes, static_cast<std::size_t>(len));
    }
    BIO_free(bio);
    EVP_PKEY_free(key);
    return pem;
}

const Material& material() {
    static const Material m = [] {
        Material out;
        std::string error;
        out.signer = crypto::EcdsaPrivateKey::from_pem(pem_of_new_key(), error);
        FUZZ_CHECK(out.signer.has_value(), "cannot make the harness's P-521 key");
        const std::string public_pem = out.signer->public_pem();
        for (unsigned set = 1; set < 4; ++set) {
            if (set & 1) {
                webhook::Key v1;
                v1.id = "fuzz-v1";
                v1.hmac_secret = kSecret;
                out.keysets[set].push_back(std::move(v1));
            }
            if (set & 2) {
                webhook::Key v1e;
                v1e.id = "fuzz-v1e";
                v1e.ecdsa = crypto::EcdsaPublicKey::from_pem(public_pem, error);
                FUZZ_CHECK(v1e.ecdsa.has_value(), "cannot load the harness's public key");
                out.keysets[set].push_back(std::move(v1e));
            }
        }
        return out;
    }();
    return m;
}

int sextet(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

// RFC 4648 base64, strictly: standard alphabet with padding to a multiple of 4, or the URL
// alphabet without any padding; the unused low bits of the last character must be zero.
std::optional<std::string> reference_base64(std::string_view s, bool url) {
    std::size_t pad = 0;
    if (!url) {
        if (s.size() % 4 != 0) return std::nullopt;
        while (pad < 2 && pad < s.size() && s[s.size() - 1 - pad] == '=') ++pad;
        s.remove_suffix(pad);
    }
    const std::size_t tail = s.size() % 4;
    if (tail == 1) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 4) {
        const std::size_t n = std::min<std::size_t>(4, s.size() - i);
        std::uint32_t group = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const int v = k < n ? sextet(s[i + k], url) : 0;
            if (v < 0) return std::nullopt;
            group = (group << 6) | static_cast<std::uint32_t>(v);
        }
        const std::size_t bytes = n == 4 ? 3 : n - 1;
        if (n < 4 && (group & ((1u << (8 * (3 - bytes))) - 1)) != 0) return std::nullopt;
        for (std::size_t k = 0; k < bytes; ++k) out.push_back(static_cast<char>((group >> (16 - 8 * k)) & 0xff));
    }
    return out;
}

void check_base64(std::string_view s) {
    FUZZ_CHECK(crypto::base64_decode(s) == reference_base64(s, false), "base64_decode differs from RFC 4648");
    FUZZ_CHECK(crypto::base64url_decode(s) == reference_base64(s, true), "base64url_decode differs from RFC 4648");
}

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

struct Planted {
    std::string entry;      // "v1e,<b64>" as planted
    std::string content;    // what it signs
};

webhook::Verdict reference(const std::vector<webhook::Key>& keys, std::string_view id, std::string_view timestamp,
                           std::string_view header, std::string_view body, std::int64_t now,
                           std::int64_t tolerance, const std::optional<Planted>& planted) {
    using V = webhook::Verdict;
    if (keys.empty()) return V::NoKeys;
    if (id.empty() || timestamp.empty() || header.empty()) return V::MissingHeader;
    if (timestamp.size() > 12 || !std::all_of(timestamp.begin(), timestamp.end(), [](char c) {
            return c >= '0' && c <= '9';
        })) {
        return V::BadTimestamp;
    }
    const std::int64_t ts = std::stoll(std::string(timestamp));
    const std::int64_t tol = std::clamp<std::int64_t>(tolerance, 0, 10'000'000'000'000);
    if (ts + tol < now) return V::Stale;
    if (ts - tol > now) return V::Future;
    if (header.size() > 8 * 1024) return V::BadSignatureHeader;

    const std::string content = std::string(id) + "." + std::string(timestamp) + "." + std::string(body);
    const bool have_v1 = std::any_of(keys.begin(), keys.end(), [](const auto& k) { return !k.hmac_secret.empty(); });
    const bool have_v1e = std::any_of(keys.begin(), keys.end(), [](const auto& k) { return k.ecdsa.has_value(); });
    std::size_t entries = 0;
    bool well_formed = false, match = false;
    std::size_t pos = 0;
    while (pos <= header.size()) {
        std::size_t end = header.find(' ', pos);
        if (end == std::string_view::npos) end = header.size();
        const std::string_view entry = header.substr(pos, end - pos);
        pos = end + 1;
        if (entry.empty()) continue;
        if (++entries > 16) return V::BadSignatureHeader;
        const std::size_t comma = entry.find(',');
        if (comma == std::string_view::npos) continue;
        const std::string_view version = entry.substr(0, comma), b64 = entry.substr(comma + 1);
        if (version.empty() || version.size() > 16 || !std::all_of(version.begin(), version.end(), is_alnum) ||
            b64.empty()) {
            continue;
        }
        if (version != "v1" && version != "v1e") {
            well_formed = true;   // unknown versions are legal, they just never match
            continue;
        }
        if (b64.size() > 1024) continue;
        const std::optional<std::string> sig = reference_base64(b64, false);
        if (!sig || sig->empty() || (version == "v1" && sig->size() != 32)) continue;
        well_formed = true;
        if (version == "v1" && have_v1 && *sig == crypto::hmac_sha256(kSecret, content)) match = true;
        if (version == "v1e" && have_v1e && planted && entry == planted->entry && content == planted->content) {
            match = true;
        }
    }
    if (!well_formed) return V::BadSignatureHeader;
    return match ? V::Ok : V::NoValidSignature;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Material& m = material();
    FuzzedDataProvider in(data, size);
    const auto flags = in.ConsumeIntegral<std::uint8_t>();
    const std::vector<webhook::Key>& keys = m.keysets[flags & 3];
    const bool plant_v1 = (flags & 4) != 0;
    const bool plant_v1e = (flags & 0x78) == 0x08;   // 1 in 16: an ECDSA signature costs milliseconds
    const std::int64_t delta = in.ConsumeIntegralInRange<std::int64_t>(-700, 700);
    const std::int64_t tolerance = in.ConsumeBool() ? in.ConsumeIntegral<std::int64_t>() : 300;
    const std::string id = in.ConsumeRandomLengthString(96);
    const std::string timestamp = in.ConsumeRandomLengthString(16);
    std::string header = in.ConsumeRandomLengthString(2048);
    const unsigned repeat = in.ConsumeIntegralInRange<unsigned>(0, 7) == 0 ? in.ConsumeIntegralInRange<unsigned>(1, 24) : 1;
    const std::string once = header;
    for (unsigned i = 1; i < repeat; ++i) header += " " + once;
    std::size_t at = in.ConsumeIntegralInRange<std::size_t>(0, header.size());
    const std::string body = in.ConsumeRemainingBytesAsString();

    std::optional<Planted> planted;
    if (plant_v1) {
        header.insert(at, " " + webhook::sign_v1(kSecret, id, timestamp, body) + " ");
    }
    if (plant_v1e) {
        planted = Planted{webhook::sign_v1e(*m.signer, id, timestamp, body), id + "." + timestamp + "." + body};
        header.insert(std::min(at, header.size()), " " + planted->entry + " ");
    }
    const bool ts_digits = !timestamp.empty() && timestamp.size() <= 12 &&
                           std::all_of(timestamp.begin(), timestamp.end(), [](char c) { return c >= '0' && c <= '9'; });
    const std::int64_t now = (ts_digits ? std::stoll(timestamp) : 1'700'000'000) + delta;

    const webhook::Verdict got = webhook::verify(keys, id, timestamp, header, body, now, tolerance);
    FUZZ_CHECK(got == reference(keys, id, timestamp, header, body, now, tolerance, planted),
               "verdict differs from the documented checks");
    FUZZ_CHECK(std::string_view(webhook::verdict_name(got)) != "unknown", "a verdict without a name");
    if (got == webhook::Verdict::Ok) {
        // The same headers over a changed body: never Ok (unless the fuzzer forged an HMAC).
        const std::string changed = body + "x";
        const webhook::Verdict tampered = webhook::verify(keys, id, timestamp, header, changed, now, tolerance);
        FUZZ_CHECK(tampered == reference(keys, id, timestamp, header, changed, now, tolerance, planted),
                   "verdict on a changed body differs from the documented checks");
    }

    check_base64(id);
    check_base64(timestamp);
    const std::string encoded = crypto::base64_encode(body);
    FUZZ_CHECK(crypto::base64_decode(encoded) == body, "base64 does not round-trip");
    FUZZ_CHECK(crypto::base64url_decode(crypto::base64url_encode(body)) == body, "base64url does not round-trip");
    FUZZ_CHECK(reference_base64(encoded, false) == body, "base64_encode differs from RFC 4648");
    return 0;
}
