// Standard Webhooks verification: v1 (HMAC) and v1e (ECDSA P-521) signatures, timestamps, rotation.
#include "cmocka.hpp"

#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "paygate/webhook.hpp"
#include "test_material.hpp"

using namespace paygate;
using webhook::Key;
using webhook::Verdict;

namespace {

const std::int64_t kNow = 1'700'000'000;
const char* kId = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const char* kTs = "1700000000";
const std::string kBody = "{\"transaction_id\":\"6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b\",\"status\":\"paid\"}";
const std::string kSecret(32, '\x5a');

using test_material::ec_key;
using test_material::pem_of;
using test_material::write_temp;

// A freshly generated key pair: the signing half and the PEM of the verifying half.
struct Pair {
    crypto::EcdsaPrivateKey priv;
    std::string public_pem;
};

Pair make_pair(const char* curve = "P-521") {
    test_material::Pkey k = ec_key(curve);
    assert_non_null(k.get());
    std::string error;
    auto priv = crypto::EcdsaPrivateKey::from_pem(pem_of(k.get(), false), error);
    if (!priv) {
        // Wrong-curve pairs cannot be loaded as our key type; sign with a P-521 stand-in.
        test_material::Pkey p521 = ec_key("P-521");
        priv = crypto::EcdsaPrivateKey::from_pem(pem_of(p521.get(), false), error);
    }
    assert_true(priv.has_value());
    return Pair{std::move(*priv), pem_of(k.get(), true)};
}

Key ecdsa_key(const std::string& id, const Pair& pair) {
    std::string error;
    Key key{id, crypto::EcdsaPublicKey::from_pem(pair.public_pem, error), ""};
    assert_true(key.ecdsa.has_value());
    return key;
}

Key hmac_key(const std::string& id, const std::string& secret) { return Key{id, std::nullopt, secret}; }

std::vector<Key> keys_of(Key a) {
    std::vector<Key> keys;
    keys.push_back(std::move(a));
    return keys;
}


#define assert_verdict(actual, expected)                                                                  \
    do {                                                                                                  \
        Verdict got_ = (actual);                                                                          \
        if (got_ != (expected)) fail_msg("verdict %s, expected %s", webhook::verdict_name(got_),           \
                                         webhook::verdict_name(expected));                                \
    } while (0)

void verdict_names(void**) {
    assert_string_equal(webhook::verdict_name(Verdict::Ok), "ok");
    assert_string_equal(webhook::verdict_name(Verdict::NoKeys), "no_keys");
    assert_string_equal(webhook::verdict_name(Verdict::MissingHeader), "missing_header");
    assert_string_equal(webhook::verdict_name(Verdict::BadTimestamp), "bad_timestamp");
    assert_string_equal(webhook::verdict_name(Verdict::Stale), "stale");
    assert_string_equal(webhook::verdict_name(Verdict::Future), "future");
    assert_string_equal(webhook::verdict_name(Verdict::BadSignatureHeader), "bad_signature_header");
    assert_string_equal(webhook::verdict_name(Verdict::NoValidSignature), "no_valid_signature");
}

void good_v1e(void**) {
    Pair pair = make_pair();
    auto keys = keys_of(ecdsa_key("sky-2026", pair));
    std::string header = webhook::sign_v1e(pair.priv, kId, kTs, kBody);
    assert_true(header.rfind("v1e,", 0) == 0);
    assert_verdict(webhook::verify(keys, kId, kTs, header, kBody, kNow), Verdict::Ok);
    // Raw body bytes are signed as they are, NUL and non-UTF-8 included.
    std::string odd_body("\0\xff\x01 body", 8);
    assert_verdict(webhook::verify(keys, kId, kTs, webhook::sign_v1e(pair.priv, kId, kTs, odd_body), odd_body, kNow),
                   Verdict::Ok);
}

void good_v1(void**) {
    auto keys = keys_of(hmac_key("hmac-1", kSecret));
    std::string header = webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_true(header.rfind("v1,", 0) == 0);
    assert_int_equal(header.size(), 3 + 44);
    assert_verdict(webhook::verify(keys, kId, kTs, header, kBody, kNow), Verdict::Ok);
}

void v1_matches_the_standard_webhooks_example(void**) {
    // The worked example of the Standard Webhooks specification and its reference libraries.
    std::string error;
    auto key = webhook::parse_key_spec("v1:example:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", error);
    assert_true(key.has_value());
    const char* id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const char* body = "{\"test\": 2432232314}";
    std::string header = webhook::sign_v1(key->hmac_secret, id, "1614265330", body);
    assert_string_equal(header.c_str(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    auto keys = keys_of(std::move(*key));
    assert_verdict(webhook::verify(keys, id, "1614265330", header, body, 1614265330), Verdict::Ok);
}

void rotation(void**) {
    Pair old_pair = make_pair();
    Pair new_pair = make_pair();
    // Partner signs with old and new keys; we already only accept the new one.
    auto keys = keys_of(ecdsa_key("sky-2026", new_pair));
    std::string header =
        webhook::sign_v1e(old_pair.priv, kId, kTs, kBody) + " " + webhook::sign_v1e(new_pair.priv, kId, kTs, kBody);
    assert_verdict(webhook::verify(keys, kId, kTs, header, kBody, kNow), Verdict::Ok);
    // We accept both keys while the partner still signs with the old one only.
    std::vector<Key> both;
    both.push_back(ecdsa_key("sky-2026", new_pair));
    both.push_back(ecdsa_key("sky-2025", old_pair));
    assert_verdict(webhook::verify(both, kId, kTs, webhook::sign_v1e(old_pair.priv, kId, kTs, kBody), kBody, kNow),
                   Verdict::Ok);
    // Mixed kinds: an HMAC entry first, the valid ECDSA one second.
    both.push_back(hmac_key("hmac-1", kSecret));
    std::string mixed = webhook::sign_v1(std::string(32, 'x'), kId, kTs, kBody) + " " +
                        webhook::sign_v1e(new_pair.priv, kId, kTs, kBody);
    assert_verdict(webhook::verify(both, kId, kTs, mixed, kBody, kNow), Verdict::Ok);
    std::string hmac_second = "v1e,MEQCIA== " + webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_verdict(webhook::verify(both, kId, kTs, hmac_second, kBody, kNow), Verdict::Ok);
}

void wrong_key_and_tampering(void**) {
    Pair pair = make_pair();
    Pair other = make_pair();
    auto ecdsa_keys = keys_of(ecdsa_key("sky", other));
    std::string e_header = webhook::sign_v1e(pair.priv, kId, kTs, kBody);
    assert_verdict(webhook::verify(ecdsa_keys, kId, kTs, e_header, kBody, kNow), Verdict::NoValidSignature);
    auto hmac_keys = keys_of(hmac_key("hmac", std::string(32, 'y')));
    std::string h_header = webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_verdict(webhook::verify(hmac_keys, kId, kTs, h_header, kBody, kNow), Verdict::NoValidSignature);
    // A key of the other kind never checks an entry.
    assert_verdict(webhook::verify(ecdsa_keys, kId, kTs, h_header, kBody, kNow), Verdict::NoValidSignature);

    auto good_e = keys_of(ecdsa_key("sky", pair));
    auto good_h = keys_of(hmac_key("hmac", kSecret));
    std::string flipped = kBody;
    flipped[10] ^= 0x01;
    assert_verdict(webhook::verify(good_e, kId, kTs, e_header, flipped, kNow), Verdict::NoValidSignature);
    assert_verdict(webhook::verify(good_h, kId, kTs, h_header, flipped, kNow), Verdict::NoValidSignature);
    // id and timestamp are signed too.
    assert_verdict(webhook::verify(good_e, "msg_other", kTs, e_header, kBody, kNow), Verdict::NoValidSignature);
    assert_verdict(webhook::verify(good_h, kId, "1700000001", h_header, kBody, kNow), Verdict::NoValidSignature);
}

void truncated_and_garbage_signatures(void**) {
    Pair pair = make_pair();
    auto keys = keys_of(ecdsa_key("sky", pair));
    keys.push_back(hmac_key("hmac", kSecret));
    std::string der = pair.priv.sign_sha512(std::string(kId) + "." + kTs + "." + kBody);
    std::string truncated = "v1e," + crypto::base64_encode(der.substr(0, der.size() - 3));
    assert_verdict(webhook::verify(keys, kId, kTs, truncated, kBody, kNow), Verdict::NoValidSignature);
    // An HMAC that is not 32 bytes long is not a well-formed v1 entry.
    std::string h = webhook::sign_v1(kSecret, kId, kTs, kBody);
    std::string short_hmac = "v1," + crypto::base64_encode(crypto::base64_decode(h.substr(3))->substr(0, 30));
    assert_verdict(webhook::verify(keys, kId, kTs, short_hmac, kBody, kNow), Verdict::BadSignatureHeader);
    for (const char* bad : {"v1e,!!!!", "v1,not base64", "v1e,QUJD", "v1,QUJD=", "v1e,", "v1e", ",QUJD",
                            "   ", "v1e,QUJD\t"}) {
        if (std::strcmp(bad, "v1e,QUJD") == 0) {  // decodes, just not a signature
            assert_verdict(webhook::verify(keys, kId, kTs, bad, kBody, kNow), Verdict::NoValidSignature);
        } else {
            assert_verdict(webhook::verify(keys, kId, kTs, bad, kBody, kNow), Verdict::BadSignatureHeader);
        }
    }
    // A malformed entry beside a valid one does not spoil it.
    assert_verdict(webhook::verify(keys, kId, kTs, "v1e,!!!! " + h, kBody, kNow), Verdict::Ok);
    // Over 1 KiB of base64 is not decoded.
    std::string huge = "v1e," + crypto::base64_encode(std::string(800, 'A'));
    assert_verdict(webhook::verify(keys, kId, kTs, huge, kBody, kNow), Verdict::BadSignatureHeader);
}

void unknown_versions_ignored(void**) {
    auto keys = keys_of(hmac_key("hmac", kSecret));
    std::string good = webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_verdict(webhook::verify(keys, kId, kTs, "v2,QUJD", kBody, kNow), Verdict::NoValidSignature);
    assert_verdict(webhook::verify(keys, kId, kTs, "v1a,anything-at-all", kBody, kNow), Verdict::NoValidSignature);
    assert_verdict(webhook::verify(keys, kId, kTs, "v1a,xyz " + good, kBody, kNow), Verdict::Ok);
    // The v1 payload moved under another version name must not count as v1.
    assert_verdict(webhook::verify(keys, kId, kTs, "v9" + good.substr(2), kBody, kNow), Verdict::NoValidSignature);
}

void timestamps(void**) {
    auto keys = keys_of(hmac_key("hmac", kSecret));
    auto at = [&](std::int64_t ts) {
        std::string t = std::to_string(ts);
        return webhook::verify(keys, kId, t, webhook::sign_v1(kSecret, kId, t, kBody), kBody, kNow);
    };
    assert_verdict(at(kNow), Verdict::Ok);
    assert_verdict(at(kNow - 300), Verdict::Ok);
    assert_verdict(at(kNow + 300), Verdict::Ok);
    assert_verdict(at(kNow - 301), Verdict::Stale);
    assert_verdict(at(kNow + 301), Verdict::Future);
    assert_verdict(at(0), Verdict::Stale);
    std::string h = webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_verdict(webhook::verify(keys, kId, kTs, h, kBody, kNow + 10, 5), Verdict::Stale);
    assert_verdict(webhook::verify(keys, kId, kTs, h, kBody, kNow - 10, 5), Verdict::Future);
    assert_verdict(webhook::verify(keys, kId, kTs, h, kBody, kNow + 10, -1), Verdict::Stale);  // treated as 0
    // Extreme clocks and tolerances must not overflow.
    assert_verdict(webhook::verify(keys, kId, kTs, h, kBody, INT64_MIN, INT64_MAX), Verdict::Future);
    assert_verdict(webhook::verify(keys, kId, kTs, h, kBody, INT64_MAX, INT64_MAX), Verdict::Stale);
    assert_verdict(webhook::verify(keys, kId, "999999999999", h, kBody, INT64_MIN, INT64_MAX), Verdict::Future);
    for (const char* bad : {"17e8", "-1700000000", "+1700000000", " 1700000000", "1700000000 ", "1700000000.5",
                            "0x6553f100", "1700000000000", "１７"}) {
        assert_verdict(webhook::verify(keys, kId, bad, h, kBody, kNow), Verdict::BadTimestamp);
    }
}

void fail_closed_without_keys_or_headers(void**) {
    std::vector<Key> none;
    std::string h = webhook::sign_v1(kSecret, kId, kTs, kBody);
    assert_verdict(webhook::verify(none, kId, kTs, h, kBody, kNow), Verdict::NoKeys);
    assert_verdict(webhook::verify(none, "", "", "", "", kNow), Verdict::NoKeys);
    auto keys = keys_of(hmac_key("hmac", kSecret));
    assert_verdict(webhook::verify(keys, "", kTs, h, kBody, kNow), Verdict::MissingHeader);
    assert_verdict(webhook::verify(keys, kId, "", h, kBody, kNow), Verdict::MissingHeader);
    assert_verdict(webhook::verify(keys, kId, kTs, "", kBody, kNow), Verdict::MissingHeader);
    // An empty body is legal and signed like any other.
    assert_verdict(webhook::verify(keys, kId, kTs, webhook::sign_v1(kSecret, kId, kTs, ""), "", kNow), Verdict::Ok);
}

void header_limits(void**) {
    auto keys = keys_of(hmac_key("hmac", kSecret));
    std::string good = webhook::sign_v1(kSecret, kId, kTs, kBody);
    std::string filler = "v2,QUJD ";
    std::string sixteen;
    for (int i = 0; i < 15; ++i) sixteen += filler;
    assert_verdict(webhook::verify(keys, kId, kTs, sixteen + good, kBody, kNow), Verdict::Ok);
    assert_verdict(webhook::verify(keys, kId, kTs, filler + sixteen + good, kBody, kNow), Verdict::BadSignatureHeader);
    std::string oversize = good + " v2," + std::string(8 * 1024, 'A');
    assert_verdict(webhook::verify(keys, kId, kTs, oversize, kBody, kNow), Verdict::BadSignatureHeader);
    std::string just_fits = good + " v2," + std::string(8 * 1024 - good.size() - 4, 'A');
    assert_int_equal(just_fits.size(), 8 * 1024);
    assert_verdict(webhook::verify(keys, kId, kTs, just_fits, kBody, kNow), Verdict::Ok);
    assert_verdict(webhook::verify(keys, kId, kTs, "  " + good + "  ", kBody, kNow), Verdict::Ok);
}

void parse_key_specs(void**) {
    std::string error;
    auto v1 = webhook::parse_key_spec("v1:partner-1:whsec_" + crypto::base64_encode(kSecret), error);
    assert_true(v1.has_value());
    assert_string_equal(v1->id.c_str(), "partner-1");
    assert_true(v1->hmac_secret == kSecret);
    assert_false(v1->ecdsa.has_value());

    Pair pair = make_pair();
    std::string path = write_temp(pair.public_pem);
    auto v1e = webhook::parse_key_spec("v1e:sky-2026:" + path, error);
    assert_true(v1e.has_value());
    assert_string_equal(v1e->id.c_str(), "sky-2026");
    assert_true(v1e->hmac_secret.empty());
    auto keys = keys_of(std::move(*v1e));
    assert_verdict(webhook::verify(keys, kId, kTs, webhook::sign_v1e(pair.priv, kId, kTs, kBody), kBody, kNow),
                   Verdict::Ok);

    Pair p256 = make_pair("P-256");
    std::string wrong_path = write_temp(p256.public_pem);
    const std::string short_secret = crypto::base64_encode("sixteen byte key");
    struct Bad {
        std::string spec;
        const char* mentions;
    } bads[] = {
        {"", "v1e:<id>"},
        {"v1:whsec_" + crypto::base64_encode(kSecret), "v1e:<id>"},
        {"v2:id:whsec_" + crypto::base64_encode(kSecret), "version"},
        {"V1:id:whsec_" + crypto::base64_encode(kSecret), "version"},
        {"v1::whsec_" + crypto::base64_encode(kSecret), "id"},
        {"v1:bad id:whsec_" + crypto::base64_encode(kSecret), "id"},
        {"v1:id:" + crypto::base64_encode(kSecret), "whsec_"},
        {"v1:id:whsec_not*base64", "base64"},
        {"v1:id:whsec_" + short_secret, "24 bytes"},
        {"v1:id:whsec_", "24 bytes"},
        {"v1e:sky:", "path"},
        {"v1e:sky:/nonexistent/partner.pem", "/nonexistent/partner.pem"},
        {"v1e:sky:" + wrong_path, "prime256v1"},
    };
    for (const auto& bad : bads) {
        error.clear();
        if (webhook::parse_key_spec(bad.spec, error)) fail_msg("accepted %s", bad.spec.c_str());
        if (error.find(bad.mentions) == std::string::npos) fail_msg("error for %s: %s", bad.spec.c_str(), error.c_str());
        assert_true(error.find(short_secret) == std::string::npos);
        assert_true(error.find(crypto::base64_encode(kSecret)) == std::string::npos);
    }
    unlink(path.c_str());
    unlink(wrong_path.c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verdict_names),
        cmocka_unit_test(good_v1e),
        cmocka_unit_test(good_v1),
        cmocka_unit_test(v1_matches_the_standard_webhooks_example),
        cmocka_unit_test(rotation),
        cmocka_unit_test(wrong_key_and_tampering),
        cmocka_unit_test(truncated_and_garbage_signatures),
        cmocka_unit_test(unknown_versions_ignored),
        cmocka_unit_test(timestamps),
        cmocka_unit_test(fail_closed_without_keys_or_headers),
        cmocka_unit_test(header_limits),
        cmocka_unit_test(parse_key_specs),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
