// mserver notifications (seed 003) carry app_id and access_token = sha1(app_id + app_secret),
// lower-case hex. The module checks them at the edge; see docs/providers/mserver.md.
#pragma once

#include <string>
#include <string_view>

namespace paygate::mserver_token {

// sha1(app_id + app_secret) as 40 lower-case hex digits; throws std::runtime_error if OpenSSL fails.
std::string access_token(std::string_view app_id, std::string_view app_secret);

// True when `given_app_id` is our app id and `given_token` its token. Both compared in constant
// time (only lengths may leak); an upper-case token is refused (the seed's hex is lower case).
bool check(std::string_view app_id, std::string_view app_secret, std::string_view given_app_id,
           std::string_view given_token) noexcept;

}  // namespace paygate::mserver_token
