// Bearer JWT verification and minting (see jwt.hpp).
#include "paygate/jwt.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "paygate/json.hpp"

namespace paygate::jwt {
namespace {

constexpr std::size_t kMinHmacSecret = 32;
constexpr std::size_t kMaxKeyFile = 64 * 1024;
constexpr std::size_t kEs256SignatureBytes = 64;   // r || s, 32 bytes each (RFC 7518 3.4)

struct BioDeleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct SigDeleter {
    void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};

bool read_file(const std::string& path, std::string& out, std::string& error) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = "cannot open \"" + path + "\"";
        return false;
    }
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
        if (out.size() > kMaxKeyFile) break;
    }
    std::fclose(f);
    if (out.size() > kMaxKeyFile) {
        error = "\"" + path + "\" is too large for a key file";
        return false;
    }
    return true;
}

// Only named P-256 keys: a token's 64-byte signature has no room for another curve.
bool is_p256(EVP_PKEY* key) {
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return false;
    char group[64] = {0};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return false;
    return std::string_view(group, len) == "prime256v1" || std::string_view(group, len) == "P-256";
}

std::shared_ptr<EVP_PKEY> share(EVP_PKEY* key) {
    return std::shared_ptr<EVP_PKEY>(key, [](EVP_PKEY* k) { EVP_PKEY_free(k); });
}

EVP_PKEY* read_pem(std::string_view pem, bool private_key) {
    std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) return nullptr;
    // A null passphrase callback would prompt on the terminal: an empty string refuses instead.
    auto no_prompt = [](char*, int, int, void*) -> int { return 0; };
    return private_key ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_prompt, nullptr)
                       : PEM_read_bio_PUBKEY(bio.get(), nullptr, no_prompt, nullptr);
}

bool digest_verify_sha256(EVP_PKEY* key, std::string_view data, std::string_view der) noexcept {
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    if (!ctx) return false;
    if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der.data()), der.size(),
                            reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

// JWS r || s -> the DER ECDSA-Sig-Value OpenSSL verifies.
std::optional<std::string> raw_to_der(std::string_view raw) {
    if (raw.size() != kEs256SignatureBytes) return std::nullopt;
    std::unique_ptr<ECDSA_SIG, SigDeleter> sig(ECDSA_SIG_new());
    if (!sig) return std::nullopt;
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
    if (r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        return std::nullopt;
    }
    int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return std::nullopt;
    std::string der(static_cast<std::size_t>(len), '\0');
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(sig.get(), &p) != len) return std::nullopt;
    return der;
}

std::string der_to_raw(std::string_view der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    std::unique_ptr<ECDSA_SIG, SigDeleter> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig) throw std::runtime_error("jwt: bad ECDSA signature from OpenSSL");
    std::string raw(kEs256SignatureBytes, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + 32, 32) != 32) {
        throw std::runtime_error("jwt: ECDSA signature does not fit P-256");
    }
    return raw;
}

std::string es256_sign(std::string_view private_pem, std::string_view data) {
    std::unique_ptr<EVP_PKEY, crypto::PkeyDeleter> key(read_pem(private_pem, true));
    if (!key || !is_p256(key.get())) throw std::runtime_error("jwt: not a P-256 private key");
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    std::size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
        throw std::runtime_error("jwt: ES256 signing failed");
    }
    std::string der(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
        throw std::runtime_error("jwt: ES256 signing failed");
    }
    der.resize(len);
    return der_to_raw(der);
}

bool decode_object(std::string_view part, json::Value& out) {
    std::optional<std::string> text = crypto::base64url_decode(part);
    if (!text) return false;
    json::ParseError error;
    json::ParseLimits limits;
    limits.max_depth = 8;
    limits.max_string_bytes = kMaxTokenBytes;
    return json::parse(*text, out, error, limits) && out.is(json::Type::Object);
}

const json::Value* string_member(const json::Value& object, std::string_view key, bool& wrong_type) {
    const json::Value* v = object.find(key);
    if (v != nullptr && !v->is(json::Type::String)) wrong_type = true;
    return v != nullptr && v->is(json::Type::String) ? v : nullptr;
}

// A NumericDate (RFC 7519 2): seconds, possibly fractional; nothing negative or absurd.
std::optional<std::int64_t> numeric_date(const json::Value& v) {
    if (!v.is(json::Type::Number)) return std::nullopt;
    const std::string& text = v.text();
    if (text.empty() || text.front() == '-') return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(d) || d > 1e13) return std::nullopt;
    return static_cast<std::int64_t>(std::floor(d));
}

Result refuse(Verdict v, std::string kid = {}) {
    Result r;
    r.verdict = v;
    r.kid = std::move(kid);
    return r;
}

Result verify_or_throw(const Policy& policy, std::string_view token, std::int64_t now_s) {
    if (token.empty() || token.size() > kMaxTokenBytes) return refuse(Verdict::Malformed);
    const std::size_t dot1 = token.find('.');
    if (dot1 == std::string_view::npos) return refuse(Verdict::Malformed);
    const std::size_t dot2 = token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        return refuse(Verdict::Malformed);
    }
    std::string_view header_part = token.substr(0, dot1);
    std::string_view claims_part = token.substr(dot1 + 1, dot2 - dot1 - 1);
    std::string_view signature_part = token.substr(dot2 + 1);

    json::Value header;
    if (!decode_object(header_part, header)) return refuse(Verdict::Malformed);
    bool wrong_type = false;
    const json::Value* alg = string_member(header, "alg", wrong_type);
    const json::Value* kid = string_member(header, "kid", wrong_type);
    const json::Value* typ = string_member(header, "typ", wrong_type);
    if (wrong_type) return refuse(Verdict::Malformed);
    std::string kid_text = kid != nullptr && valid_kid(kid->text()) ? kid->text() : std::string();
    // Extensions we do not understand must not be ignored (RFC 7515 4.1.11).
    if (header.find("crit") != nullptr) return refuse(Verdict::Malformed, kid_text);
    if (typ != nullptr && typ->text() != "JWT" && typ->text() != "jwt") return refuse(Verdict::Malformed, kid_text);
    std::optional<Algorithm> algorithm = alg ? parse_algorithm(alg->text()) : std::nullopt;
    if (!algorithm) return refuse(Verdict::UnsupportedAlg, kid_text);
    const Key* key = kid != nullptr ? policy.find(kid->text()) : nullptr;
    if (key == nullptr) return refuse(Verdict::UnknownKid, kid_text);
    if (key->alg != *algorithm) return refuse(Verdict::AlgorithmMismatch, kid_text);

    // The claims must at least be a JSON object before any signature work; their meaning is
    // read only once the signature holds.
    json::Value claims;
    if (!decode_object(claims_part, claims)) return refuse(Verdict::Malformed, kid_text);
    std::optional<std::string> signature = crypto::base64url_decode(signature_part);
    if (!signature) return refuse(Verdict::BadSignature, kid_text);
    std::string_view signed_part = token.substr(0, dot2);
    bool good = false;
    if (key->alg == Algorithm::HS256) {
        good = !key->hmac_secret.empty() &&
               crypto::constant_time_equal(crypto::hmac_sha256(key->hmac_secret, signed_part), *signature);
    } else {
        std::optional<std::string> der = raw_to_der(*signature);
        good = der && key->ec_public && digest_verify_sha256(key->ec_public.get(), signed_part, *der);
    }
    if (!good) return refuse(Verdict::BadSignature, kid_text);

    const json::Value* exp = claims.find("exp");
    if (exp == nullptr) return refuse(Verdict::Malformed, kid_text);   // a token without an end is never taken
    std::optional<std::int64_t> exp_s = numeric_date(*exp);
    if (!exp_s) return refuse(Verdict::Malformed, kid_text);
    if (now_s >= *exp_s + policy.leeway_s) return refuse(Verdict::Expired, kid_text);
    if (const json::Value* nbf = claims.find("nbf")) {
        std::optional<std::int64_t> nbf_s = numeric_date(*nbf);
        if (!nbf_s) return refuse(Verdict::Malformed, kid_text);
        if (now_s < *nbf_s - policy.leeway_s) return refuse(Verdict::NotYetValid, kid_text);
    }
    if (const json::Value* iat = claims.find("iat"); iat != nullptr && !numeric_date(*iat)) {
        return refuse(Verdict::Malformed, kid_text);
    }
    wrong_type = false;
    const json::Value* iss = string_member(claims, "iss", wrong_type);
    if (wrong_type) return refuse(Verdict::Malformed, kid_text);
    if (!policy.issuer.empty() && (iss == nullptr || iss->text() != policy.issuer)) {
        return refuse(Verdict::WrongIssuer, kid_text);
    }
    if (const json::Value* aud = claims.find("aud"); aud != nullptr || !policy.audience.empty()) {
        bool found = false;
        if (aud != nullptr && aud->is(json::Type::String)) {
            found = aud->text() == policy.audience;
        } else if (aud != nullptr && aud->is(json::Type::Array)) {
            for (const json::Value& item : aud->items()) {
                if (!item.is(json::Type::String)) return refuse(Verdict::Malformed, kid_text);
                found = found || item.text() == policy.audience;
            }
        } else if (aud != nullptr) {
            return refuse(Verdict::Malformed, kid_text);
        }
        if (!policy.audience.empty() && !found) return refuse(Verdict::WrongAudience, kid_text);
    }
    const json::Value* merchant = claims.find(policy.merchant_claim);
    if (merchant == nullptr || !merchant->is(json::Type::String) || merchant->text().size() > kMaxMerchantBytes ||
        !valid_kid(merchant->text())) {
        return refuse(Verdict::NoMerchant, kid_text);
    }
    Result ok;
    ok.verdict = Verdict::Ok;
    ok.merchant = merchant->text();
    ok.kid = std::move(kid_text);
    return ok;
}

std::string header_json(std::string_view alg, std::string_view kid) {
    std::string h = "{\"alg\":";
    json::append_string(h, alg);
    h += ",\"typ\":\"JWT\",\"kid\":";
    json::append_string(h, kid);
    h += '}';
    return h;
}

}  // namespace

std::string_view algorithm_name(Algorithm alg) { return alg == Algorithm::HS256 ? "HS256" : "ES256"; }

std::optional<Algorithm> parse_algorithm(std::string_view name) {
    if (name == "HS256") return Algorithm::HS256;
    if (name == "ES256") return Algorithm::ES256;
    return std::nullopt;
}

bool valid_kid(std::string_view kid) {
    if (kid.empty() || kid.size() > 64) return false;
    for (char c : kid) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<Key> load_key(std::string_view kid, std::string_view alg, const std::string& path, std::string& error) {
    if (!valid_kid(kid)) {
        error = "key id must be 1-64 of [A-Za-z0-9._-]";
        return std::nullopt;
    }
    std::optional<Algorithm> algorithm = parse_algorithm(alg);
    if (!algorithm) {
        error = "algorithm must be ES256 or HS256";
        return std::nullopt;
    }
    std::string content;
    if (!read_file(path, content, error)) return std::nullopt;
    Key key;
    key.kid = std::string(kid);
    key.alg = *algorithm;
    if (*algorithm == Algorithm::HS256) {
        if (content.find("-----BEGIN") != std::string::npos) {
            error = "\"" + path + "\" is a PEM file, not an HS256 secret";
            return std::nullopt;
        }
        std::string secret = content.substr(0, content.find('\n'));
        if (!secret.empty() && secret.back() == '\r') secret.pop_back();
        if (secret.size() < kMinHmacSecret) {
            error = "\"" + path + "\": an HS256 secret needs at least 32 bytes on its first line";
            return std::nullopt;
        }
        key.hmac_secret = std::move(secret);
        return key;
    }
    if (content.find("PRIVATE KEY") != std::string::npos) {
        error = "\"" + path + "\" holds a private key: give nginx the public key only";
        return std::nullopt;
    }
    EVP_PKEY* pkey = read_pem(content, false);
    if (pkey == nullptr || !is_p256(pkey)) {
        EVP_PKEY_free(pkey);
        error = "\"" + path + "\" is not a PEM public key on P-256 (prime256v1)";
        return std::nullopt;
    }
    key.ec_public = share(pkey);
    return key;
}

const Key* Policy::find(std::string_view kid) const {
    for (const Key& key : keys) {
        if (key.kid == kid) return &key;
    }
    return nullptr;
}

std::string_view verdict_name(Verdict v) {
    switch (v) {
        case Verdict::Ok: return "ok";
        case Verdict::Malformed: return "malformed";
        case Verdict::UnsupportedAlg: return "unsupported_alg";
        case Verdict::UnknownKid: return "unknown_kid";
        case Verdict::AlgorithmMismatch: return "algorithm_mismatch";
        case Verdict::BadSignature: return "bad_signature";
        case Verdict::Expired: return "expired";
        case Verdict::NotYetValid: return "not_yet_valid";
        case Verdict::WrongIssuer: return "wrong_issuer";
        case Verdict::WrongAudience: return "wrong_audience";
        case Verdict::NoMerchant: return "no_merchant";
    }
    return "unknown";
}

Result verify(const Policy& policy, std::string_view token, std::int64_t now_s) noexcept {
    try {
        return verify_or_throw(policy, token, now_s);
    } catch (...) {
        return refuse(Verdict::BadSignature);
    }
}

std::string sign_raw(std::string_view header, std::string_view claims_json, std::string_view alg_used,
                     std::string_view key) {
    std::string signing_input = crypto::base64url_encode(header) + "." + crypto::base64url_encode(claims_json);
    std::string signature;
    if (alg_used == "HS256") {
        signature = crypto::hmac_sha256(key, signing_input);
    } else if (alg_used == "ES256") {
        signature = es256_sign(key, signing_input);
    } else if (alg_used != "none") {
        throw std::runtime_error("jwt: cannot sign with " + std::string(alg_used));
    }
    return signing_input + "." + crypto::base64url_encode(signature);
}

std::string generate_hs256_secret() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("jwt: no random bytes");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 15]);
    }
    return out;
}

void generate_es256_pair(std::string& private_pem, std::string& public_pem) {
    std::unique_ptr<EVP_PKEY, crypto::PkeyDeleter> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!key) throw std::runtime_error("jwt: P-256 key generation failed");
    auto write = [&](bool is_public) {
        std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
        int ok = bio && (is_public ? PEM_write_bio_PUBKEY(bio.get(), key.get())
                                   : PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr));
        char* data = nullptr;
        long len = ok == 1 ? BIO_get_mem_data(bio.get(), &data) : 0;
        if (len <= 0) throw std::runtime_error("jwt: cannot write PEM");
        return std::string(data, static_cast<std::size_t>(len));
    };
    private_pem = write(false);
    public_pem = write(true);
}

std::optional<std::string> load_signing_key(Algorithm alg, const std::string& path, std::string& error) {
    std::string content;
    if (!read_file(path, content, error)) return std::nullopt;
    if (alg == Algorithm::ES256) {
        std::unique_ptr<EVP_PKEY, crypto::PkeyDeleter> key(read_pem(content, true));
        if (!key || !is_p256(key.get())) {
            error = "\"" + path + "\" is not a PEM private key on P-256";
            return std::nullopt;
        }
        return content;
    }
    std::string secret = content.substr(0, content.find('\n'));
    if (!secret.empty() && secret.back() == '\r') secret.pop_back();
    if (secret.size() < kMinHmacSecret) {
        error = "\"" + path + "\": an HS256 secret needs at least 32 bytes on its first line";
        return std::nullopt;
    }
    return secret;
}

std::string sign_hs256(std::string_view secret, std::string_view kid, std::string_view claims_json) {
    return sign_raw(header_json("HS256", kid), claims_json, "HS256", secret);
}

std::string sign_es256(std::string_view private_pem, std::string_view kid, std::string_view claims_json) {
    return sign_raw(header_json("ES256", kid), claims_json, "ES256", private_pem);
}

}  // namespace paygate::jwt
