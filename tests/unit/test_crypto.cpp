// Crypto toolkit: strict base64, HMAC-SHA256, ECDSA P-521 keys (key material generated per run).
#include "cmocka.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "paygate/crypto.hpp"
#include "test_material.hpp"

using namespace paygate::crypto;

namespace {

using test_material::ec_key;
using test_material::Pkey;
using test_material::write_temp;

enum class Pem { Pkcs8, Sec1, Public, EncryptedPkcs8 };

std::string to_pem(EVP_PKEY* key, Pem form) {
    return test_material::pem_text([&](BIO* bio) {
        switch (form) {
            case Pem::Pkcs8: return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
            case Pem::Sec1: return PEM_write_bio_PrivateKey_traditional(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
            case Pem::Public: return PEM_write_bio_PUBKEY(bio, key);
            case Pem::EncryptedPkcs8: {
                char pass[] = "correct horse";
                return PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), pass, sizeof pass - 1, nullptr, nullptr);
            }
        }
        return 0;
    });
}

std::string hex(const std::string& bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

EcdsaPrivateKey load_private(const std::string& pem) {
    std::string error;
    auto key = EcdsaPrivateKey::from_pem(pem, error);
    if (!key) fail_msg("private key refused: %s", error.c_str());
    return std::move(*key);
}

EcdsaPublicKey load_public(const std::string& pem) {
    std::string error;
    auto key = EcdsaPublicKey::from_pem(pem, error);
    if (!key) fail_msg("public key refused: %s", error.c_str());
    return std::move(*key);
}

void base64_rfc4648_vectors(void**) {
    const char* vectors[][3] = {{"", "", ""},           {"f", "Zg==", "Zg"},        {"fo", "Zm8=", "Zm8"},
                                {"foo", "Zm9v", "Zm9v"}, {"foob", "Zm9vYg==", "Zm9vYg"}, {"fooba", "Zm9vYmE=", "Zm9vYmE"},
                                {"foobar", "Zm9vYmFy", "Zm9vYmFy"}};
    for (const auto& v : vectors) {
        assert_string_equal(base64_encode(v[0]).c_str(), v[1]);
        assert_string_equal(base64url_encode(v[0]).c_str(), v[2]);
        assert_string_equal(base64_decode(v[1])->c_str(), v[0]);
        assert_string_equal(base64url_decode(v[2])->c_str(), v[0]);
    }
    // The two alphabets differ exactly in 62 and 63.
    assert_string_equal(base64_encode("\xfb\xff").c_str(), "+/8=");
    assert_string_equal(base64url_encode("\xfb\xff").c_str(), "-_8");
    assert_true(base64_decode("+/8=") == std::string("\xfb\xff"));
    assert_true(base64url_decode("-_8") == std::string("\xfb\xff"));
}

void base64_round_trips(void**) {
    std::string bytes;
    for (int len = 0; len <= 70; ++len) {
        auto std_text = base64_encode(bytes);
        auto url_text = base64url_encode(bytes);
        assert_int_equal(std_text.size() % 4, 0);
        assert_true(url_text.find('=') == std::string::npos);
        assert_true(base64_decode(std_text) == bytes);
        assert_true(base64url_decode(url_text) == bytes);
        bytes.push_back(static_cast<char>(len * 37 + 255));  // every byte value class, incl. NUL and 0xff
    }
    std::string all;
    for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
    assert_true(base64_decode(base64_encode(all)) == all);
    assert_true(base64url_decode(base64url_encode(all)) == all);
}

void base64_strict(void**) {
    const char* bad_std[] = {
        "Zm9v!A==", "Zm9v-_==", "Zg", "Zg=", "Zg===", "Z===", "====", "Zm8==", "=Zm8", "Zg==Zg==", "Zm=v",
        "Zm9v\n", " Zm9v", "Zm9 v", "Zm9v\r\n", "Zm9v\t",
        "Zh==", "Zm9=",  // non-canonical: spare bits not zero
    };
    for (const char* t : bad_std) {
        if (base64_decode(t)) fail_msg("base64_decode accepted \"%s\"", t);
    }
    assert_false(base64_decode(std::string_view("Zm\0v", 4)).has_value());
    const char* bad_url[] = {"Zg==", "Zm8=", "+/8", "Zm9vY", "Z", "Zh", "Zm9", "Zm9v ", "Zm 9v", "Zm9v\n"};
    for (const char* t : bad_url) {
        if (base64url_decode(t)) fail_msg("base64url_decode accepted \"%s\"", t);
    }
}

void hmac_rfc4231(void**) {
    // RFC 4231 test case 2.
    assert_string_equal(hex(hmac_sha256("Jefe", "what do ya want for nothing?")).c_str(),
                        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // Test case 1, and the empty key (which must not reuse any earlier key).
    assert_string_equal(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")).c_str(),
                        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_string_equal(hex(hmac_sha256("", "")).c_str(),
                        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    assert_int_equal(hmac_sha256(std::string(200, 'k'), std::string(10000, 'd')).size(), 32);
}

void constant_time_compare(void**) {
    assert_true(constant_time_equal("", ""));
    assert_true(constant_time_equal("abc", "abc"));
    assert_false(constant_time_equal("abc", "abd"));
    assert_false(constant_time_equal("abc", "abcd"));
    assert_false(constant_time_equal("", "a"));
    assert_true(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
    assert_false(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

void sign_verify_round_trip(void**) {
    Pkey k = ec_key("P-521");
    auto priv = load_private(to_pem(k.get(), Pem::Pkcs8));
    auto pub = load_public(to_pem(k.get(), Pem::Public));
    std::string data = "evt_1.1700000000.{\"amount\":\"12.50\"}";
    std::string sig = priv.sign_sha512(data);
    assert_true(sig.size() > 8 && sig.size() <= 139);
    assert_int_equal(static_cast<unsigned char>(sig[0]), 0x30);  // DER SEQUENCE
    assert_true(pub.verify_sha512(data, sig));
    std::string sig2 = priv.sign_sha512(data);  // ECDSA is randomized; both must verify
    assert_true(sig2 != sig);
    assert_true(pub.verify_sha512(data, sig2));
    assert_true(pub.verify_sha512("", priv.sign_sha512("")));
    // public_pem() is what we would hand a partner; it must load as a verifying key.
    std::string pem = priv.public_pem();
    assert_true(pem.rfind("-----BEGIN PUBLIC KEY-----", 0) == 0);
    assert_true(load_public(pem).verify_sha512(data, sig));
}

void sec1_private_key_accepted(void**) {
    Pkey k = ec_key("P-521");
    std::string pem = to_pem(k.get(), Pem::Sec1);
    assert_true(pem.rfind("-----BEGIN EC PRIVATE KEY-----", 0) == 0);
    auto priv = load_private(pem);
    assert_true(load_public(to_pem(k.get(), Pem::Public)).verify_sha512("x", priv.sign_sha512("x")));
}

void wrong_key_and_tampering_refused(void**) {
    Pkey k = ec_key("P-521");
    Pkey other = ec_key("P-521");
    auto priv = load_private(to_pem(k.get(), Pem::Pkcs8));
    auto pub = load_public(to_pem(k.get(), Pem::Public));
    auto other_pub = load_public(to_pem(other.get(), Pem::Public));
    std::string data = "payload to protect";
    std::string sig = priv.sign_sha512(data);
    assert_false(other_pub.verify_sha512(data, sig));

    std::string flipped_data = data;
    flipped_data[3] ^= 0x01;
    assert_false(pub.verify_sha512(flipped_data, sig));
    for (std::size_t i : {std::size_t{0}, std::size_t{1}, sig.size() / 2, sig.size() - 1}) {
        std::string flipped = sig;
        flipped[i] ^= 0x01;
        assert_false(pub.verify_sha512(data, flipped));
    }
    assert_false(pub.verify_sha512(data, sig.substr(0, sig.size() - 1)));
    assert_false(pub.verify_sha512(data, sig.substr(0, sig.size() / 2)));
    assert_false(pub.verify_sha512(data, ""));
    assert_false(pub.verify_sha512(data, sig + '\0'));  // trailing garbage after the DER
    assert_false(pub.verify_sha512(data, std::string(2000, '\x30')));
    assert_true(pub.verify_sha512(data, sig));  // and the untouched pair still verifies
}

void other_curves_and_types_refused(void**) {
    struct Case {
        Pkey key;
        const char* expect;  // the error must name what was found
    };
    Case cases[] = {{ec_key("P-256"), "prime256v1"},
                    {ec_key("P-384"), "secp384r1"},
                    {Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024))), "RSA"},
                    {Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")), "ED25519"}};
    for (auto& c : cases) {
        assert_non_null(c.key.get());
        for (Pem form : {Pem::Pkcs8, Pem::Sec1}) {
            if (form == Pem::Sec1 && EVP_PKEY_is_a(c.key.get(), "ED25519")) continue;  // no traditional form
            std::string error;
            assert_false(EcdsaPrivateKey::from_pem(to_pem(c.key.get(), form), error).has_value());
            if (error.find(c.expect) == std::string::npos || error.find("P-521") == std::string::npos) {
                fail_msg("unclear error: %s", error.c_str());
            }
        }
        std::string error;
        assert_false(EcdsaPublicKey::from_pem(to_pem(c.key.get(), Pem::Public), error).has_value());
        if (error.find(c.expect) == std::string::npos || error.find("P-521") == std::string::npos) {
            fail_msg("unclear error: %s", error.c_str());
        }
    }
}

void garbage_pem_refused(void**) {
    Pkey k = ec_key("P-521");
    std::string priv_pem = to_pem(k.get(), Pem::Pkcs8);
    std::string pub_pem = to_pem(k.get(), Pem::Public);
    std::string corrupted = priv_pem;
    corrupted[corrupted.size() / 2] = corrupted[corrupted.size() / 2] == 'A' ? 'B' : 'A';
    std::string error;
    for (const std::string& bad : {std::string(), std::string("hello"), std::string(100000, '-'),
                                   priv_pem.substr(0, priv_pem.size() / 2), corrupted, pub_pem}) {
        error.clear();
        assert_false(EcdsaPrivateKey::from_pem(bad, error).has_value());
        assert_false(error.empty());
    }
    for (const std::string& bad : {std::string(), std::string("hello"), pub_pem.substr(0, pub_pem.size() / 2),
                                   priv_pem, to_pem(k.get(), Pem::Sec1)}) {
        error.clear();
        assert_false(EcdsaPublicKey::from_pem(bad, error).has_value());
        assert_false(error.empty());
    }
    // An encrypted key is refused at once instead of prompting for a passphrase.
    error.clear();
    assert_false(EcdsaPrivateKey::from_pem(to_pem(k.get(), Pem::EncryptedPkcs8), error).has_value());
    assert_non_null(strstr(error.c_str(), "encrypted"));
}

void files_loaded_and_errors_name_the_path(void**) {
    Pkey k = ec_key("P-521");
    Pkey p256 = ec_key("P-256");
    std::string priv_path = write_temp(to_pem(k.get(), Pem::Pkcs8));
    std::string pub_path = write_temp(to_pem(k.get(), Pem::Public));
    std::string wrong_pem = to_pem(p256.get(), Pem::Pkcs8);
    std::string wrong_path = write_temp(wrong_pem);
    std::string error;
    auto priv = EcdsaPrivateKey::load_pem_file(priv_path, error);
    auto pub = EcdsaPublicKey::load_pem_file(pub_path, error);
    assert_true(priv && pub);
    assert_true(pub->verify_sha512("file", priv->sign_sha512("file")));

    assert_false(EcdsaPrivateKey::load_pem_file(wrong_path, error).has_value());
    assert_true(error.rfind(wrong_path + ": ", 0) == 0);
    // No line of the key's base64 body may appear in the message.
    for (std::size_t pos = wrong_pem.find('\n') + 1; pos < wrong_pem.size();) {
        std::size_t end = wrong_pem.find('\n', pos);
        std::string line = wrong_pem.substr(pos, end - pos);
        if (line.rfind("-----", 0) != 0) assert_true(error.find(line.substr(0, 16)) == std::string::npos);
        pos = end + 1;
    }
    assert_false(EcdsaPublicKey::load_pem_file("/nonexistent/paygate.pem", error).has_value());
    assert_true(error.rfind("/nonexistent/paygate.pem: ", 0) == 0);
    assert_false(EcdsaPrivateKey::load_pem_file("/nonexistent/paygate.pem", error).has_value());
    assert_true(error.rfind("/nonexistent/paygate.pem: ", 0) == 0);
    for (const std::string& p : {priv_path, pub_path, wrong_path}) unlink(p.c_str());
}

void moved_from_key_fails_safely(void**) {
    Pkey k = ec_key("P-521");
    auto priv = load_private(to_pem(k.get(), Pem::Pkcs8));
    auto pub = load_public(to_pem(k.get(), Pem::Public));
    std::string sig = priv.sign_sha512("m");
    EcdsaPrivateKey priv2 = std::move(priv);
    EcdsaPublicKey pub2 = std::move(pub);
    assert_true(pub2.verify_sha512("m", priv2.sign_sha512("m")));
    bool threw = false;
    try {
        (void)priv.sign_sha512("m");  // NOLINT(bugprone-use-after-move): the point of the test
    } catch (const std::runtime_error&) {
        threw = true;
    }
    assert_true(threw);
    assert_false(pub.verify_sha512("m", sig));
}

void concurrent_sign_and_verify(void**) {
    Pkey k = ec_key("P-521");
    const auto priv = load_private(to_pem(k.get(), Pem::Pkcs8));
    const auto pub = load_public(to_pem(k.get(), Pem::Public));
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 8; ++i) {
                std::string data = "thread " + std::to_string(t) + " message " + std::to_string(i);
                std::string sig = priv.sign_sha512(data);
                if (!pub.verify_sha512(data, sig) || pub.verify_sha512(data + "!", sig)) ++failures;
                if (hmac_sha256(data, data) != hmac_sha256(data, data)) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    assert_int_equal(failures.load(), 0);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_rfc4648_vectors),
        cmocka_unit_test(base64_round_trips),
        cmocka_unit_test(base64_strict),
        cmocka_unit_test(hmac_rfc4231),
        cmocka_unit_test(constant_time_compare),
        cmocka_unit_test(sign_verify_round_trip),
        cmocka_unit_test(sec1_private_key_accepted),
        cmocka_unit_test(wrong_key_and_tampering_refused),
        cmocka_unit_test(other_curves_and_types_refused),
        cmocka_unit_test(garbage_pem_refused),
        cmocka_unit_test(files_loaded_and_errors_name_the_path),
        cmocka_unit_test(moved_from_key_fails_safely),
        cmocka_unit_test(concurrent_sign_and_verify),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
