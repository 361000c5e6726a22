// sha1(app_id + app_secret), the seed's notification credential (mserver_token.hpp).
#include "paygate/mserver_token.hpp"

#include <openssl/evp.h>

#include <stdexcept>

#include "paygate/crypto.hpp"

namespace paygate::mserver_token {

std::string access_token(std::string_view app_id, std::string_view app_secret) {
    std::string input;
    input.reserve(app_id.size() + app_secret.size());
    input.append(app_id).append(app_secret);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha1(), nullptr) != 1 || length != 20) {
        throw std::runtime_error("sha1 failed");
    }
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(kHex[digest[i] >> 4]);
        out.push_back(kHex[digest[i] & 15]);
    }
    return out;
}

bool check(std::string_view app_id, std::string_view app_secret, std::string_view given_app_id,
           std::string_view given_token) noexcept {
    try {
        // Both comparisons always run, so timing does not tell which one failed.
        bool id_ok = crypto::constant_time_equal(app_id, given_app_id);
        bool token_ok = crypto::constant_time_equal(access_token(app_id, app_secret), given_token);
        return id_ok && token_ok && !app_id.empty() && !app_secret.empty();
    } catch (...) {
        return false;
    }
}

}  // namespace paygate::mserver_token
