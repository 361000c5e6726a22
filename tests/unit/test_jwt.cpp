// The merchants' Bearer JWTs: ES256/HS256 pinned per kid, rotation, exp/nbf leeway, iss/aud,
// the merchant claim, and every refusal (alg none, algorithm confusion, malformed, unknown kid).
#include "cmocka.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "paygate/crypto.hpp"
#include "paygate/jwt.hpp"
#include "test_material.hpp"

using namespace paygate;
using jwt::Verdict;

namespace {

const std::int64_t kNow = 1'800'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-hs";

struct EcPair {
    std::string private_pem;
    std::string public_pem;
};

EcPair make_ec(const char* curve = "P-256") {
    test_material::Pkey k = test_material::ec_key(curve);
    assert_non_null(k.get());
    return EcPair{test_material::pem_of(k.get(), false), test_material::pem_of(k.get(), true)};
}

jwt::Key load(const std::string& kid, const std::string& alg, const std::string& content) {
    std::string path = test_material::write_temp(content);
    std::string error;
    std::optional<jwt::Key> key = jwt::load_key(kid, alg, path, error);
    unlink(path.c_str());
    if (!key) fail_msg("load_key %s: %s", kid.c_str(), error.c_str());
    return *key;
}

std::string claims(const std::string& extra = "", std::int64_t exp = kNow + 600) {
    std::string c = "{\"merchant_id\":\"zooticket\",\"exp\":" + std::to_string(exp);
    if (!extra.empty()) c += "," + extra;
    return c + "}";
}

struct Fixture {
    EcPair ec = make_ec();
    jwt::Policy policy;
    Fixture() {
        policy.keys.push_back(load("hs-1", "HS256", kSecret + "\n"));
        policy.keys.push_back(load("es-1", "ES256", ec.public_pem));
    }
    Verdict check(const std::string& token) const { return jwt::verify(policy, token, kNow).verdict; }
};

void expect(Verdict got, Verdict want, const char* what) {
    if (got != want) {
        fail_msg("%s: got %s, want %s", what, std::string(jwt::verdict_name(got)).c_str(),
                 std::string(jwt::verdict_name(want)).c_str());
    }
}

void good_tokens(void**) {
    Fixture f;
    jwt::Result hs = jwt::verify(f.policy, jwt::sign_hs256(kSecret, "hs-1", claims()), kNow);
    expect(hs.verdict, Verdict::Ok, "HS256");
    assert_string_equal(hs.merchant.c_str(), "zooticket");
    assert_string_equal(hs.kid.c_str(), "hs-1");
    jwt::Result es = jwt::verify(f.policy, jwt::sign_es256(f.ec.private_pem, "es-1", claims()), kNow);
    expect(es.verdict, Verdict::Ok, "ES256");
    assert_string_equal(es.merchant.c_str(), "zooticket");
    // A fractional NumericDate and a typ other than absent/JWT.
    expect(f.check(jwt::sign_hs256(kSecret, "hs-1", "{\"merchant_id\":\"m\",\"exp\":1800000600.5}")), Verdict::Ok,
           "fractional exp");
    expect(f.check(jwt::sign_raw("{\"alg\":\"HS256\",\"kid\":\"hs-1\"}", claims(), "HS256", kSecret)), Verdict::Ok,
           "no typ");
}

// RFC 7515 appendix A.1: our HMAC signing input and signature match the RFC's bytes.
void rfc7515_hs256_example(void**) {
    std::string header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    std::string payload = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
    std::optional<std::string> key = crypto::base64url_decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
    assert_true(key.has_value());
    assert_string_equal(jwt::sign_raw(header, payload, "HS256", *key).c_str(),
                        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
                        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
                        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
}

void rotation_by_kid(void**) {
    Fixture f;
    EcPair next = make_ec();
    f.policy.keys.push_back(load("es-2", "ES256", next.public_pem));
    f.policy.keys.push_back(load("hs-2", "HS256", std::string(40, 'k')));
    expect(f.check(jwt::sign_es256(f.ec.private_pem, "es-1", claims())), Verdict::Ok, "old ES key");
    expect(f.check(jwt::sign_es256(next.private_pem, "es-2", claims())), Verdict::Ok, "new ES key");
    expect(f.check(jwt::sign_hs256(std::string(40, 'k'), "hs-2", claims())), Verdict::Ok, "new HS key");
    // The kid selects the key: the right signature under the other kid is refused.
    expect(f.check(jwt::sign_es256(next.private_pem, "es-1", claims())), Verdict::BadSignature, "new key, old kid");
    expect(f.check(jwt::sign_hs256(kSecret, "hs-2", claims())), Verdict::BadSignature, "old secret, new kid");
    // Retired: a kid no longer configured.
    expect(f.check(jwt::sign_hs256(kSecret, "hs-0", claims())), Verdict::UnknownKid, "retired kid");
    expect(f.check(jwt::sign_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims(), "HS256", kSecret)), Verdict::UnknownKid,
           "no kid");
    expect(f.check(jwt::sign_raw("{\"alg\":\"HS256\",\"kid\":\"\"}", claims(), "HS256", kSecret)), Verdict::UnknownKid,
           "empty kid");
}

void alg_none_and_unsupported(void**) {
    Fixture f;
    for (const char* header : {"{\"alg\":\"none\",\"kid\":\"hs-1\"}", "{\"alg\":\"None\",\"kid\":\"hs-1\"}",
                               "{\"kid\":\"hs-1\"}", "{\"alg\":\"RS256\",\"kid\":\"hs-1\"}",
                               "{\"alg\":\"hs256\",\"kid\":\"hs-1\"}", "{\"alg\":\"HS512\",\"kid\":\"hs-1\"}",
                               "{\"alg\":\"ES256K\",\"kid\":\"es-1\"}"}) {
        expect(f.check(jwt::sign_raw(header, claims(), "none", "")), Verdict::UnsupportedAlg, header);
    }
    // none with a signature attached anyway
    std::string none = jwt::sign_raw("{\"alg\":\"none\",\"kid\":\"hs-1\"}", claims(), "none", "");
    expect(f.check(none + "AAAA"), Verdict::UnsupportedAlg, "none with a signature");
}

void algorithm_confusion(void**) {
    Fixture f;
    // The classic attack: HS256 keyed with the ES256 public key's PEM (the verifier's only "secret").
    std::string forged = jwt::sign_raw("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"es-1\"}", claims(), "HS256",
                                       f.ec.public_pem);
    expect(f.check(forged), Verdict::AlgorithmMismatch, "HS256 under the ES256 kid");
    // Also the DER bytes of the public key as the secret.
    std::string forged_der = jwt::sign_raw("{\"alg\":\"HS256\",\"kid\":\"es-1\"}", claims(), "HS256",
                                           f.ec.public_pem.substr(27, 91));
    expect(f.check(forged_der), Verdict::AlgorithmMismatch, "HS256 under the ES256 kid (other bytes)");
    // The other way round: an ES256 token under the HS256 kid.
    std::string es_as_hs = jwt::sign_raw("{\"alg\":\"ES256\",\"kid\":\"hs-1\"}", claims(), "ES256", f.ec.private_pem);
    expect(f.check(es_as_hs), Verdict::AlgorithmMismatch, "ES256 under the HS256 kid");
}

void bad_signatures(void**) {
    Fixture f;
    std::string hs = jwt::sign_hs256(kSecret, "hs-1", claims());
    std::string es = jwt::sign_es256(f.ec.private_pem, "es-1", claims());
    for (const std::string* token : {&hs, &es}) {
        const std::size_t dot2 = token->rfind('.');
        std::string tampered_sig = *token;
        tampered_sig[dot2 + 5] = tampered_sig[dot2 + 5] == 'A' ? 'B' : 'A';
        expect(f.check(tampered_sig), Verdict::BadSignature, "tampered signature");
        // Same header and signature, another merchant in the claims.
        std::string other = jwt::sign_hs256(kSecret, "hs-1", "{\"merchant_id\":\"other\",\"exp\":1800000600}");
        std::string swapped = token->substr(0, token->find('.')) + other.substr(other.find('.'), other.rfind('.') - other.find('.')) +
                              token->substr(dot2);
        expect(f.check(swapped), Verdict::BadSignature, "claims swapped");
        expect(f.check(token->substr(0, dot2 + 1)), Verdict::BadSignature, "empty signature");
        expect(f.check(token->substr(0, token->size() - 4)), Verdict::BadSignature, "truncated signature");
    }
    expect(f.check(jwt::sign_hs256(std::string(40, 'x'), "hs-1", claims())), Verdict::BadSignature, "other secret");
    EcPair stranger = make_ec();
    expect(f.check(jwt::sign_es256(stranger.private_pem, "es-1", claims())), Verdict::BadSignature, "other EC key");
    // An ES256 signature of the wrong length (DER instead of r || s, say).
    std::string es_sig = *crypto::base64url_decode(es.substr(es.rfind('.') + 1));
    expect(f.check(es.substr(0, es.rfind('.') + 1) + crypto::base64url_encode(es_sig + "x")), Verdict::BadSignature,
           "65-byte ES256 signature");
    expect(f.check(es.substr(0, es.rfind('.') + 1) + crypto::base64url_encode(std::string(64, '\0'))),
           Verdict::BadSignature, "zero r and s");
}

void lifetime_and_leeway(void**) {
    Fixture f;
    f.policy.leeway_s = 30;
    auto hs = [&](const std::string& c) { return f.check(jwt::sign_hs256(kSecret, "hs-1", c)); };
    expect(hs(claims("", kNow - 30)), Verdict::Expired, "exp + leeway == now");
    expect(hs(claims("", kNow - 29)), Verdict::Ok, "exp within leeway");
    expect(hs(claims("", kNow - 86400)), Verdict::Expired, "long expired");
    expect(hs("{\"merchant_id\":\"m\"}"), Verdict::Malformed, "no exp");
    expect(hs(claims("\"nbf\":" + std::to_string(kNow + 31))), Verdict::NotYetValid, "nbf beyond leeway");
    expect(hs(claims("\"nbf\":" + std::to_string(kNow + 30))), Verdict::Ok, "nbf within leeway");
    expect(hs(claims("\"nbf\":" + std::to_string(kNow - 10) + ",\"iat\":" + std::to_string(kNow - 10))), Verdict::Ok,
           "nbf and iat past");
    f.policy.leeway_s = 0;
    expect(hs(claims("", kNow)), Verdict::Expired, "no leeway: exp == now");
    expect(hs(claims("", kNow + 1)), Verdict::Ok, "no leeway: exp == now + 1");
    expect(hs(claims("\"nbf\":" + std::to_string(kNow + 1))), Verdict::NotYetValid, "no leeway: nbf in a second");
    for (const char* bad : {"\"exp\":\"1800000600\"", "\"exp\":-5", "\"exp\":1e400", "\"exp\":null", "\"exp\":true"}) {
        expect(hs(std::string("{\"merchant_id\":\"m\",") + bad + "}"), Verdict::Malformed, bad);
    }
    expect(hs(claims("\"nbf\":\"soon\"")), Verdict::Malformed, "nbf string");
    expect(hs(claims("\"iat\":[1]")), Verdict::Malformed, "iat array");
}

void issuer_and_audience(void**) {
    Fixture f;
    auto hs = [&](const std::string& extra) { return f.check(jwt::sign_hs256(kSecret, "hs-1", claims(extra))); };
    // Not configured: not required, but still typed.
    expect(hs(""), Verdict::Ok, "none configured, none sent");
    expect(hs("\"iss\":\"anyone\",\"aud\":\"anything\""), Verdict::Ok, "none configured, some sent");
    expect(hs("\"iss\":5"), Verdict::Malformed, "iss number");
    expect(hs("\"aud\":{}"), Verdict::Malformed, "aud object");
    f.policy.issuer = "https://auth.zooticket.ru";
    f.policy.audience = "paygate";
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":\"paygate\""), Verdict::Ok, "both match");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":[\"billing\",\"paygate\"]"), Verdict::Ok, "aud array");
    expect(hs("\"aud\":\"paygate\""), Verdict::WrongIssuer, "iss missing");
    expect(hs("\"iss\":\"https://evil.example\",\"aud\":\"paygate\""), Verdict::WrongIssuer, "iss other");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\""), Verdict::WrongAudience, "aud missing");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":\"Paygate\""), Verdict::WrongAudience, "aud case");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":[\"billing\"]"), Verdict::WrongAudience, "aud array without us");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":[]"), Verdict::WrongAudience, "aud empty array");
    expect(hs("\"iss\":\"https://auth.zooticket.ru\",\"aud\":[\"paygate\",7]"), Verdict::Malformed, "aud array number");
}

void merchant_claim(void**) {
    Fixture f;
    auto hs = [&](const std::string& c) { return jwt::verify(f.policy, jwt::sign_hs256(kSecret, "hs-1", c), kNow); };
    expect(hs("{\"exp\":1800000600}").verdict, Verdict::NoMerchant, "missing");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":42}").verdict, Verdict::NoMerchant, "number");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":\"\"}").verdict, Verdict::NoMerchant, "empty");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":\"a b\"}").verdict, Verdict::NoMerchant, "space");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":\"a:b\"}").verdict, Verdict::NoMerchant, "colon");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":\"" + std::string(49, 'm') + "\"}").verdict, Verdict::NoMerchant,
           "49 bytes");
    expect(hs("{\"exp\":1800000600,\"merchant_id\":\"" + std::string(48, 'm') + "\"}").verdict, Verdict::Ok,
           "48 bytes");
    f.policy.merchant_claim = "sub";
    jwt::Result sub = hs("{\"exp\":1800000600,\"sub\":\"zoo-msk\"}");
    expect(sub.verdict, Verdict::Ok, "configured claim");
    assert_string_equal(sub.merchant.c_str(), "zoo-msk");
    expect(hs(claims()).verdict, Verdict::NoMerchant, "default claim no longer read");
}

void malformed_tokens(void**) {
    Fixture f;
    std::string good = jwt::sign_hs256(kSecret, "hs-1", claims());
    const std::size_t dot1 = good.find('.');
    const std::size_t dot2 = good.rfind('.');
    std::string sig = good.substr(dot2);
    auto hs_header = [&](const std::string& header) { return jwt::sign_raw(header, claims(), "HS256", kSecret); };
    const std::vector<std::pair<std::string, const char*>> cases = {
        {"", "empty"},
        {"abc", "one part"},
        {good.substr(0, dot2), "two parts"},
        {good + ".x", "four parts"},
        {good + ".", "trailing dot"},
        {"." + good.substr(dot1 + 1), "empty header"},
        {good.substr(0, dot1) + ".." + sig.substr(1), "empty claims"},
        {"e30=" + good.substr(dot1), "padded header"},
        {"eyJ+" + good.substr(dot1), "standard alphabet"},
        {good.substr(0, dot1) + " " + good.substr(dot1), "space"},
        {jwt::sign_raw("[1]", claims(), "HS256", kSecret), "header array"},
        {jwt::sign_raw("{\"alg\":\"HS256\",\"kid\":\"hs-1\",}", claims(), "HS256", kSecret), "header trailing comma"},
        {jwt::sign_raw("{\"alg\":\"HS256\",\"alg\":\"HS256\",\"kid\":\"hs-1\"}", claims(), "HS256", kSecret),
         "duplicate alg"},
        {hs_header("{\"alg\":\"HS256\",\"kid\":7}"), "kid number"},
        {hs_header("{\"alg\":[\"HS256\"],\"kid\":\"hs-1\"}"), "alg array"},
        {hs_header("{\"alg\":\"HS256\",\"kid\":\"hs-1\",\"crit\":[\"exp\"]}"), "crit"},
        {hs_header("{\"alg\":\"HS256\",\"kid\":\"hs-1\",\"typ\":\"JOSE+JSON\"}"), "typ"},
        {jwt::sign_hs256(kSecret, "hs-1", "[\"merchant_id\"]"), "claims array"},
        {jwt::sign_hs256(kSecret, "hs-1", "{\"merchant_id\":\"m\",\"exp\":1800000600} x"), "claims trailing data"},
        {jwt::sign_hs256(kSecret, "hs-1", "{\"merchant_id\":\"m\",\"merchant_id\":\"n\",\"exp\":1800000600}"),
         "duplicate merchant"},
        {jwt::sign_hs256(kSecret, "hs-1", "{\"merchant_id\":\"m\xff\",\"exp\":1800000600}"), "invalid UTF-8"},
        {std::string(jwt::kMaxTokenBytes + 1, 'a'), "oversized"},
    };
    for (const auto& [token, what] : cases) {
        Verdict got = f.check(token);
        // The signature (if any) is checked before the claims: a claims defect under a good
        // signature is Malformed; a shape defect never gets as far as a signature.
        if (got != Verdict::Malformed) {
            fail_msg("%s: got %s", what, std::string(jwt::verdict_name(got)).c_str());
        }
    }
    // A token over the limit is refused even when its signature would be good.
    std::string big = jwt::sign_hs256(kSecret, "hs-1", claims("\"pad\":\"" + std::string(jwt::kMaxTokenBytes, 'p') + "\""));
    expect(f.check(big), Verdict::Malformed, "oversized but signed");
}

void key_loading(void**) {
    EcPair ec = make_ec();
    EcPair p521 = make_ec("P-521");
    struct Bad {
        std::string kid, alg, content;
        const char* mentions;
    };
    const std::vector<Bad> bads = {
        {"hs-1", "HS256", std::string(31, 's'), "32 bytes"},
        {"hs-1", "HS256", "\n" + std::string(40, 's'), "32 bytes"},
        {"hs-1", "HS256", ec.public_pem, "PEM"},
        {"es-1", "ES256", ec.private_pem, "private key"},
        {"es-1", "ES256", p521.public_pem, "P-256"},
        {"es-1", "ES256", std::string(40, 's'), "P-256"},
        {"es 1", "ES256", ec.public_pem, "key id"},
        {"", "HS256", kSecret, "key id"},
        {"k", "none", kSecret, "ES256 or HS256"},
        {"k", "RS256", kSecret, "ES256 or HS256"},
    };
    for (const Bad& bad : bads) {
        std::string path = test_material::write_temp(bad.content);
        std::string error;
        if (jwt::load_key(bad.kid, bad.alg, path, error)) fail_msg("accepted %s %s", bad.kid.c_str(), bad.alg.c_str());
        if (error.find(bad.mentions) == std::string::npos) fail_msg("error: %s", error.c_str());
        assert_true(error.find("ssssssss") == std::string::npos);   // never the secret
        unlink(path.c_str());
    }
    std::string error;
    assert_false(jwt::load_key("k", "HS256", "/nonexistent/paygate-jwt.key", error).has_value());
    assert_true(error.find("/nonexistent/paygate-jwt.key") != std::string::npos);
    // CRLF and trailing lines after the secret.
    jwt::Key crlf = load("k", "HS256", kSecret + "\r\nignored\n");
    assert_string_equal(crlf.hmac_secret.c_str(), kSecret.c_str());
}

void minting_refuses_wrong_material(void**) {
    EcPair p521 = make_ec("P-521");
    bool threw = false;
    try {
        jwt::sign_es256(p521.private_pem, "k", claims());
    } catch (const std::runtime_error&) {
        threw = true;
    }
    assert_true(threw);
    threw = false;
    try {
        jwt::sign_raw("{}", "{}", "RS256", "x");
    } catch (const std::runtime_error&) {
        threw = true;
    }
    assert_true(threw);
}

void verdict_names(void**) {
    assert_string_equal(std::string(jwt::verdict_name(Verdict::AlgorithmMismatch)).c_str(), "algorithm_mismatch");
    assert_string_equal(std::string(jwt::verdict_name(Verdict::NotYetValid)).c_str(), "not_yet_valid");
    assert_true(jwt::parse_algorithm("ES256") == jwt::Algorithm::ES256);
    assert_false(jwt::parse_algorithm("none").has_value());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_tokens),
        cmocka_unit_test(rfc7515_hs256_example),
        cmocka_unit_test(rotation_by_kid),
        cmocka_unit_test(alg_none_and_unsupported),
        cmocka_unit_test(algorithm_confusion),
        cmocka_unit_test(bad_signatures),
        cmocka_unit_test(lifetime_and_leeway),
        cmocka_unit_test(issuer_and_audience),
        cmocka_unit_test(merchant_claim),
        cmocka_unit_test(malformed_tokens),
        cmocka_unit_test(key_loading),
        cmocka_unit_test(minting_refuses_wrong_material),
        cmocka_unit_test(verdict_names),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
