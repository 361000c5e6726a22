// Small crypto toolkit over OpenSSL 3: strict base64, HMAC-SHA256, ECDSA P-521 keys.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

typedef struct evp_pkey_st EVP_PKEY;

namespace paygate::crypto {

std::string base64_encode(std::string_view bytes);                   // standard alphabet, padded
// Strict: standard alphabet, padding required, no whitespace, non-canonical trailing bits refused.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);                // URL alphabet, no padding
std::optional<std::string> base64url_decode(std::string_view text);  // strict, padding refused

std::string hmac_sha256(std::string_view key, std::string_view data);  // raw 32 bytes; throws std::runtime_error
// Length mismatch -> false at once (lengths may leak, contents do not).
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

struct PkeyDeleter {
    void operator()(EVP_PKEY* key) const noexcept;
};

// ECDSA on NIST P-521 (secp521r1) only. Move-only. Const methods may be called from many threads
// at once: each call uses its own OpenSSL context and the key is never modified after loading.
class EcdsaPrivateKey {
public:
    // PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; encrypted keys are refused (no prompt).
    static std::optional<EcdsaPrivateKey> from_pem(std::string_view pem, std::string& error);
    // error names the path, never key bytes.
    static std::optional<EcdsaPrivateKey> load_pem_file(const std::string& path, std::string& error);

    std::string sign_sha512(std::string_view data) const;  // DER signature; throws std::runtime_error
    std::string public_pem() const;                        // SubjectPublicKeyInfo PEM; throws std::runtime_error

private:
    explicit EcdsaPrivateKey(EVP_PKEY* key) : key_(key) {}
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key_;
};

class EcdsaPublicKey {  // P-521 only; same threading rules as EcdsaPrivateKey
public:
    static std::optional<EcdsaPublicKey> from_pem(std::string_view pem, std::string& error);  // "PUBLIC KEY"
    static std::optional<EcdsaPublicKey> load_pem_file(const std::string& path, std::string& error);

    bool verify_sha512(std::string_view data, std::string_view der_signature) const noexcept;  // false on any failure

private:
    explicit EcdsaPublicKey(EVP_PKEY* key) : key_(key) {}
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key_;
};

}  // namespace paygate::crypto
