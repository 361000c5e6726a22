// The customer's personal data sealed at rest with AES-256-GCM under a key id (see zooticket.hpp,
// CustomerKeyring).
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "paygated/zooticket.hpp"

namespace paygate::daemon::zooticket {

namespace {

constexpr std::size_t kNonceBytes = 12;
constexpr std::size_t kTagBytes = 16;

struct CipherCtx {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};

}  // namespace

bool CustomerKeyring::add(std::string_view spec, std::string& error) {
    const std::size_t space = spec.find(' ');
    std::string id(spec.substr(0, space));
    std::string path(space == std::string_view::npos ? std::string_view() : spec.substr(space + 1));
    while (!path.empty() && path.front() == ' ') path.erase(0, 1);
    if (!id_chars(id, 32) || id.find(':') != std::string::npos || path.empty()) {
        error = "customer_data_key: expected 'ID FILE' (ID: 1-32 of A-Z a-z 0-9 . _ -)";
        return false;
    }
    for (const auto& [known, key] : keys_) {
        if (known == id) {
            error = "customer_data_key: key id '" + id + "' given twice";
            return false;
        }
    }
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = "customer_data_key " + id + ": cannot open " + path;
        return false;
    }
    char line[130] = {0};
    std::size_t n = std::fread(line, 1, sizeof line - 1, f);
    std::fclose(f);
    std::string text(line, n);
    text = text.substr(0, text.find('\n'));
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.size() != 64) {
        error = "customer_data_key " + id + ": " + path + " must hold 64 hex digits (32 bytes) on its first line";
        return false;
    }
    std::string key;
    for (std::size_t i = 0; i < 64; i += 2) {
        int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
        if (hi < 0 || lo < 0) {
            error = "customer_data_key " + id + ": " + path + " must hold 64 hex digits (32 bytes) on its first line";
            return false;
        }
        key.push_back(static_cast<char>(hi * 16 + lo));
    }
    keys_.emplace_back(std::move(id), std::move(key));
    return true;
}

std::string CustomerKeyring::seal(std::string_view plaintext, std::string_view context) const {
    if (keys_.empty()) throw std::runtime_error("no customer_data_key configured");
    const auto& [id, key] = keys_.front();
    std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
    auto* bytes = reinterpret_cast<unsigned char*>(out.data());
    if (RAND_bytes(bytes, kNonceBytes) != 1) throw std::runtime_error("no random bytes for a nonce");
    std::string aad = id + "\n" + std::string(context);
    std::unique_ptr<EVP_CIPHER_CTX, CipherCtx> ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, reinterpret_cast<const unsigned char*>(key.data()), bytes) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), bytes + kNonceBytes, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                          static_cast<int>(plaintext.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), bytes + kNonceBytes + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, bytes + kNonceBytes + plaintext.size()) != 1) {
        throw std::runtime_error("AES-256-GCM sealing failed");
    }
    return out;
}

std::optional<std::string> CustomerKeyring::open(std::string_view key_id, std::string_view sealed,
                                                 std::string_view context) const {
    const std::string* key = nullptr;
    for (const auto& [id, k] : keys_) {
        if (id == key_id) key = &k;
    }
    if (key == nullptr || sealed.size() < kNonceBytes + kTagBytes) return std::nullopt;
    const auto* bytes = reinterpret_cast<const unsigned char*>(sealed.data());
    const std::size_t text_len = sealed.size() - kNonceBytes - kTagBytes;
    std::string out(text_len, '\0');
    std::string aad = std::string(key_id) + "\n" + std::string(context);
    std::unique_ptr<EVP_CIPHER_CTX, CipherCtx> ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    unsigned char tag[kTagBytes];
    std::copy(bytes + kNonceBytes + text_len, bytes + sealed.size(), tag);
    if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, reinterpret_cast<const unsigned char*>(key->data()), bytes) != 1 ||
        EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, bytes + kNonceBytes,
                          static_cast<int>(text_len)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1) {
        return std::nullopt;
    }
    int final_len = 0;
    if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &final_len) != 1) {
        return std::nullopt;
    }
    return out;
}

}  // namespace paygate::daemon::zooticket
