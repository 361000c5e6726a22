// SHA-256 via OpenSSL's EVP interface.
#include "paygate/digest.hpp"

#include <memory>
#include <stdexcept>

#include <openssl/evp.h>

namespace paygate {

namespace {

// Fetching the algorithm and making a context are the costly parts of a digest in OpenSSL 3:
// do them once (per process and per thread), not per call. This runs on nginx's request path.
const EVP_MD* sha256_md() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}

struct CtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

EVP_MD_CTX* thread_ctx() {
    thread_local std::unique_ptr<EVP_MD_CTX, CtxDeleter> ctx(EVP_MD_CTX_new());
    return ctx.get();
}

}  // namespace

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const EVP_MD* md = sha256_md();
    EVP_MD_CTX* ctx = thread_ctx();
    if (md == nullptr || ctx == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1 ||
        EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(ctx, digest, &len) != 1) {
        throw std::runtime_error("SHA-256 failed");
    }
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

}  // namespace paygate
