// Test material the crypto, webhook and capability tests share: temp files and fresh EC keys.
// Include after cmocka.hpp (it asserts).
#pragma once

#include <memory>
#include <string>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

namespace test_material {

// Writes `content` to a new file under /tmp and returns its path (the test removes it).
inline std::string write_temp(const std::string& content) {
    char path[] = "/tmp/paygate-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
    return path;
}

struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// A fresh EC key on `curve` ("P-521", "P-256", ...).
inline Pkey ec_key(const char* curve) { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve)); }

// PEM text of a BIO written by `write` (asserts it is not empty).
template <typename Write>
std::string pem_text(Write write) {
    BIO* bio = BIO_new(BIO_s_mem());
    int ok = write(bio);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    std::string out = ok == 1 && len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
    BIO_free(bio);
    assert_false(out.empty());
    return out;
}

// PKCS#8 private key or SubjectPublicKeyInfo public key.
inline std::string pem_of(EVP_PKEY* key, bool is_public) {
    return pem_text([&](BIO* bio) {
        return is_public ? PEM_write_bio_PUBKEY(bio, key)
                         : PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    });
}

}  // namespace test_material
