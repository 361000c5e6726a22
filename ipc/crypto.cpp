// Strict base64, HMAC-SHA256 and ECDSA P-521 keys over OpenSSL 3's EVP interface.
#include "paygate/crypto.hpp"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace paygate::crypto {

namespace {

constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Keys are a few KiB at most; the cap keeps a misconfigured path (a log, /dev/zero) harmless.
constexpr std::size_t kMaxPemBytes = 64 * 1024;

std::string encode(std::string_view bytes, const char* alphabet, bool pad) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(alphabet[(v >> 6) & 63]);
        out.push_back(alphabet[v & 63]);
    }
    std::size_t rest = bytes.size() - i;
    if (rest == 1) {
        unsigned v = at(i) << 16;
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        if (pad) out.append("==");
    } else if (rest == 2) {
        unsigned v = (at(i) << 16) | (at(i + 1) << 8);
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(alphabet[(v >> 6) & 63]);
        if (pad) out.push_back('=');
    }
    return out;
}

int sextet(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

// One decoder for both alphabets. Refusing every non-canonical form means one byte string has
// exactly one accepted encoding, so encoded values can be compared as strings.
std::optional<std::string> decode(std::string_view text, bool url) {
    if (!url) {
        if (text.size() % 4 != 0) return std::nullopt;
        std::size_t pad = 0;
        while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
        text.remove_suffix(pad);
    } else if (text.size() % 4 == 1) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(text.size() / 4 * 3 + 2);
    unsigned acc = 0;
    int bits = 0;
    for (char c : text) {
        int v = sextet(c, url);
        if (v < 0) return std::nullopt;  // also catches '=' before the end and whitespace
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
            acc &= (1u << bits) - 1;
        }
    }
    if (bits >= 6 || acc != 0) return std::nullopt;  // a lone trailing sextet, or non-zero spare bits
    return out;
}

// OpenSSL errors raised by a failed call we handle ourselves must not stay in the thread's queue,
// where the next unrelated reader (nginx's SSL code) would pick them up.
struct ErrorScope {
    ErrorScope() { ERR_set_mark(); }
    ~ErrorScope() { ERR_pop_to_mark(); }
    ErrorScope(const ErrorScope&) = delete;
    ErrorScope& operator=(const ErrorScope&) = delete;
};

struct BioDeleter {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct MacCtxDeleter {
    void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct PkeyCtxDeleter {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// Fetching is the costly part of an OpenSSL 3 operation; a function-local static is initialized
// once even when several threads arrive together.
EVP_MAC* hmac_alg() {
    static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    return mac;
}

// Without this callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
int no_passphrase(char*, int, int, void*) { return -1; }

Bio pem_bio(std::string_view pem, std::string& error) {
    if (pem.empty()) {
        error = "empty PEM text";
        return nullptr;
    }
    if (pem.size() > kMaxPemBytes) {
        error = "PEM text too large";
        return nullptr;
    }
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) error = "out of memory";
    return bio;
}

bool is_p521(EVP_PKEY* key, std::string& error) {
    if (EVP_PKEY_is_a(key, "EC") != 1) {
        const char* type = EVP_PKEY_get0_type_name(key);
        error = std::string("key type is ") + (type != nullptr ? type : "unknown") +
                ", expected an EC key on P-521 (secp521r1)";
        return false;
    }
    char name[80];
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(key, name, sizeof name, &len) != 1) {
        error = "EC key without a named curve, expected P-521 (secp521r1)";
        return false;
    }
    std::string_view curve(name, len);
    if (curve != "secp521r1") {
        error = "EC key is on curve " + std::string(curve) + ", expected P-521 (secp521r1)";
        return false;
    }
    return true;
}

// Decoding already checks the point is on the curve; the explicit check also covers the private
// scalar and that both halves of a key pair belong together. Load time only, so cost is moot.
bool key_is_sound(EVP_PKEY* key, bool has_private, std::string& error) {
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    int ok = ctx ? (has_private ? EVP_PKEY_check(ctx.get()) : EVP_PKEY_public_check(ctx.get())) : 0;
    if (ok != 1) error = "EC key fails OpenSSL's validity check";
    return ok == 1;
}

bool read_small_file(const std::string& path, std::string& out, std::string& error) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = path + ": " + std::error_code(errno, std::generic_category()).message();
        return false;
    }
    out.resize(kMaxPemBytes + 1);
    std::size_t n = std::fread(out.data(), 1, out.size(), f);
    bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) {
        error = path + ": read error";
        return false;
    }
    if (n > kMaxPemBytes) {
        error = path + ": file too large for a PEM key";
        return false;
    }
    out.resize(n);
    return true;
}

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

}  // namespace

void PkeyDeleter::operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }

std::string base64_encode(std::string_view bytes) { return encode(bytes, kStdAlphabet, true); }
std::optional<std::string> base64_decode(std::string_view text) { return decode(text, false); }
std::string base64url_encode(std::string_view bytes) { return encode(bytes, kUrlAlphabet, false); }
std::optional<std::string> base64url_decode(std::string_view text) { return decode(text, true); }

std::string hmac_sha256(std::string_view key, std::string_view data) {
    ErrorScope errors;
    // A null key makes EVP_MAC_init keep the context's previous key: always pass a real pointer.
    static const unsigned char kNoKey = 0;
    const unsigned char* k = key.empty() ? &kNoKey : reinterpret_cast<const unsigned char*>(key.data());
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    EVP_MAC* mac = hmac_alg();
    // A fresh context per call: nothing shared between threads but the fetched algorithm.
    std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(mac != nullptr ? EVP_MAC_CTX_new(mac) : nullptr);
    unsigned char out[32];
    std::size_t len = 0;
    if (!ctx || EVP_MAC_init(ctx.get(), k, key.size(), params) != 1 ||
        EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
        EVP_MAC_final(ctx.get(), out, &len, sizeof out) != 1 || len != sizeof out) {
        throw std::runtime_error("HMAC-SHA256 failed");
    }
    return std::string(reinterpret_cast<const char*>(out), len);
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<EcdsaPrivateKey> EcdsaPrivateKey::from_pem(std::string_view pem, std::string& error) {
    ErrorScope errors;
    Bio bio = pem_bio(pem, error);
    if (!bio) return std::nullopt;
    Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        if (pem.find("ENCRYPTED") != std::string_view::npos) {
            error = "encrypted private keys are not supported";
        } else {
            error = "no private key found (expected PEM \"PRIVATE KEY\" or \"EC PRIVATE KEY\")";
        }
        return std::nullopt;
    }
    if (!is_p521(key.get(), error) || !key_is_sound(key.get(), true, error)) return std::nullopt;
    return EcdsaPrivateKey(key.release());
}

std::optional<EcdsaPrivateKey> EcdsaPrivateKey::load_pem_file(const std::string& path, std::string& error) {
    std::string text;
    if (!read_small_file(path, text, error)) return std::nullopt;
    auto key = from_pem(text, error);
    wipe(text);
    if (!key) error = path + ": " + error;
    return key;
}

std::string EcdsaPrivateKey::sign_sha512(std::string_view data) const {
    if (!key_) throw std::runtime_error("ECDSA sign with an empty (moved-from) key");
    ErrorScope errors;
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    int max = EVP_PKEY_get_size(key_.get());
    if (!ctx || max <= 0) throw std::runtime_error("ECDSA sign failed");
    std::string sig(static_cast<std::size_t>(max), '\0');
    std::size_t len = sig.size();
    if (EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA512", nullptr, nullptr, key_.get(), nullptr) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
        throw std::runtime_error("ECDSA sign failed");
    }
    sig.resize(len);  // DER length varies with the leading zeros of r and s
    return sig;
}

std::string EcdsaPrivateKey::public_pem() const {
    if (!key_) throw std::runtime_error("public_pem of an empty (moved-from) key");
    ErrorScope errors;
    Bio bio(BIO_new(BIO_s_mem()));
    char* data = nullptr;
    long len = 0;
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1 ||
        (len = BIO_get_mem_data(bio.get(), &data)) <= 0) {
        throw std::runtime_error("writing the public key failed");
    }
    return std::string(data, static_cast<std::size_t>(len));
}

std::optional<EcdsaPublicKey> EcdsaPublicKey::from_pem(std::string_view pem, std::string& error) {
    ErrorScope errors;
    Bio bio = pem_bio(pem, error);
    if (!bio) return std::nullopt;
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        error = "no public key found (expected PEM \"PUBLIC KEY\")";
        return std::nullopt;
    }
    if (!is_p521(key.get(), error) || !key_is_sound(key.get(), false, error)) return std::nullopt;
    return EcdsaPublicKey(key.release());
}

std::optional<EcdsaPublicKey> EcdsaPublicKey::load_pem_file(const std::string& path, std::string& error) {
    std::string text;
    if (!read_small_file(path, text, error)) return std::nullopt;
    auto key = from_pem(text, error);
    if (!key) error = path + ": " + error;
    return key;
}

bool EcdsaPublicKey::verify_sha512(std::string_view data, std::string_view der_signature) const noexcept {
    // A P-521 DER signature is at most 139 bytes; anything far larger is not worth parsing.
    if (!key_ || der_signature.empty() || der_signature.size() > 1024) return false;
    ErrorScope errors;
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    return ctx &&
           EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA512", nullptr, nullptr, key_.get(), nullptr) == 1 &&
           EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der_signature.data()),
                            der_signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size()) == 1;
}

}  // namespace paygate::crypto
