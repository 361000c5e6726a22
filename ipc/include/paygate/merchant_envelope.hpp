// The ZooTicket merchant API's envelope (seed 002): every answer of that surface, success or
// error, is {"success": bool, "message": "...", ...}. Shared by the module (401 at the edge) and
// the daemon (422, 400, 404), so both write the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "paygate/ipc.hpp"
#include "paygate/jwt.hpp"

namespace paygate::merchant_envelope {

// {"success":false,"message":"<message>","error":{"code":"<code>"}}, or with
// ,"reason":"<reason>" inside "error" when reason is not empty.
std::string error_body(std::string_view code, std::string_view message, std::string_view reason = {});

// A reply carrying error_body() with content-type application/json.
ipc::Reply error_reply(std::uint64_t id, std::uint16_t status, std::string_view code, std::string_view message,
                       std::string_view reason = {});

// The 401 for a refused (or missing) Bearer token: the message a merchant can act on. Never
// repeats the token. `missing`: no Authorization header, or not the Bearer scheme.
std::string unauthorized_body(bool missing, jwt::Verdict verdict);
// The WWW-Authenticate value of that 401 (RFC 6750 3).
std::string www_authenticate(bool missing);

}  // namespace paygate::merchant_envelope
