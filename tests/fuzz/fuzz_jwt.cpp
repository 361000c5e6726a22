// The merchants' Bearer JWT verifier (ipc/jwt.cpp). The input is split into a header text and a
// claims text (JSON or not); the harness signs them with one of its keys (HS256 or ES256, under
// the right kid or a wrong one) or with none, then checks properties that hold whatever the bytes:
//   - never a crash, never Ok for a token whose signature was not made with the kid's own key and
//     algorithm (alg none, algorithm confusion, wrong kid all refused);
//   - Ok implies the merchant is 1-64 of [A-Za-z0-9._-] and the claims name it;
//   - an Ok token with any one byte of its signature part changed is no longer Ok;
//   - the raw input itself, taken as a token, verifies without crashing.
#include <fuzzer/FuzzedDataProvider.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "fuzz_check.hpp"
#include "paygate/jwt.hpp"

namespace jwt = paygate::jwt;

namespace {

const std::string kSecret = "fuzz-hs256-secret-of-32-bytes-or-more";
constexpr std::int64_t kNow = 1'800'000'000;

struct Material {
    std::string es_private;
    std::string es_public;
    jwt::Policy policy;
};

std::string pem(EVP_PKEY* key, bool is_public) {
    BIO* bio = BIO_new(BIO_s_mem());
    int ok = is_public ? PEM_write_bio_PUBKEY(bio, key) : PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* bytes = nullptr;
    long len = BIO_get_mem_data(bio, &bytes);
    std::string out = ok == 1 && len > 0 ? std::string(bytes, static_cast<std::size_t>(len)) : std::string();
    BIO_free(bio);
    return out;
}

jwt::Key load(const char* kid, const char* alg, const std::string& content) {
    char path[] = "/tmp/paygate-fuzz-jwt-XXXXXX";
    int fd = mkstemp(path);
    FUZZ_CHECK(fd >= 0, "mkstemp");
    FUZZ_CHECK(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()), "write key");
    close(fd);
    std::string error;
    std::optional<jwt::Key> key = jwt::load_key(kid, alg, path, error);
    unlink(path);
    FUZZ_CHECK(key.has_value(), "cannot load the harness's key");
    return *key;
}

const Material& material() {
    static const Material m = [] {
        Material out;
        EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
        FUZZ_CHECK(key != nullptr, "P-256 keygen");
        out.es_private = pem(key, false);
        out.es_public = pem(key, true);
        EVP_PKEY_free(key);
        out.policy.keys.push_back(load("hs", "HS256", kSecret));
        out.policy.keys.push_back(load("es", "ES256", out.es_public));
        out.policy.leeway_s = 30;
        return out;
    }();
    return m;
}

bool valid_merchant(const std::string& m) { return m.size() <= jwt::kMaxMerchantBytes && jwt::valid_kid(m); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Material& m = material();
    const std::string raw(reinterpret_cast<const char*>(data), size);
    jwt::Result as_token = jwt::verify(m.policy, raw, kNow);
    if (as_token.verdict == jwt::Verdict::Ok) FUZZ_CHECK(valid_merchant(as_token.merchant), "Ok without a merchant");

    FuzzedDataProvider in(data, size);
    const unsigned how = in.ConsumeIntegralInRange<unsigned>(0, 5);
    std::string header = in.ConsumeRandomLengthString(512);
    std::string claims = in.ConsumeRemainingBytesAsString();
    // Half the time a header that names a key properly, so the claims rules are reached often.
    if (how < 2) header = how == 0 ? "{\"alg\":\"HS256\",\"kid\":\"hs\"}" : "{\"alg\":\"ES256\",\"kid\":\"es\"}";

    std::string token;
    bool honest = false;   // signed with the key its header names, by that key's own algorithm
    try {
        switch (how) {
            case 0: case 2: token = jwt::sign_raw(header, claims, "HS256", kSecret); break;
            case 1: case 3: token = jwt::sign_raw(header, claims, "ES256", m.es_private); break;
            case 4: token = jwt::sign_raw(header, claims, "HS256", m.es_public); break;   // confusion attempt
            default: token = jwt::sign_raw(header, claims, "none", ""); break;
        }
    } catch (...) {
        return 0;
    }
    honest = how == 0 || how == 1;
    jwt::Result result = jwt::verify(m.policy, token, kNow);
    if (result.verdict != jwt::Verdict::Ok) return 0;

    if (!honest) {
        // Only an HS256 header with kid "hs" (case 2) or an ES256 one with kid "es" (case 3) can be
        // honest by accident; confusion (4) and none (5) never may.
        FUZZ_CHECK(how == 2 || how == 3, "a token not signed by its kid's key was accepted");
    }
    FUZZ_CHECK(valid_merchant(result.merchant), "Ok without a valid merchant");
    FUZZ_CHECK(claims.find(result.merchant) != std::string::npos || claims.find('\\') != std::string::npos,
               "the merchant is not in the claims");

    // Any one changed byte of the signature part breaks it (the base64url text of a 32- or 64-byte
    // value has no slack except the last character's low bits, which strict decoding refuses).
    const std::size_t sig_at = token.rfind('.') + 1;
    for (std::size_t i = sig_at; i < token.size(); ++i) {
        std::string changed = token;
        changed[i] = changed[i] == 'A' ? 'B' : 'A';
        FUZZ_CHECK(jwt::verify(m.policy, changed, kNow).verdict != jwt::Verdict::Ok, "a changed signature passed");
    }
    return 0;
}
