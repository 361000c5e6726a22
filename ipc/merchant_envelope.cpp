// The ZooTicket merchant API's envelope (see merchant_envelope.hpp).
#include "paygate/merchant_envelope.hpp"

#include "paygate/json_error.hpp"

namespace paygate::merchant_envelope {
namespace {

std::string_view refusal_message(jwt::Verdict verdict) {
    switch (verdict) {
        case jwt::Verdict::Expired: return "Token expired";
        case jwt::Verdict::NotYetValid: return "Token not yet valid";
        case jwt::Verdict::WrongIssuer: return "Token issuer not accepted";
        case jwt::Verdict::WrongAudience: return "Token audience not accepted";
        case jwt::Verdict::UnknownKid: return "Token signing key unknown (kid)";
        case jwt::Verdict::UnsupportedAlg: return "Token algorithm not accepted";
        case jwt::Verdict::AlgorithmMismatch: return "Token algorithm does not match its key";
        case jwt::Verdict::BadSignature: return "Token signature invalid";
        case jwt::Verdict::NoMerchant: return "Token names no merchant";
        case jwt::Verdict::Malformed:
        case jwt::Verdict::Ok: break;
    }
    return "Token malformed";
}

}  // namespace

std::string error_body(std::string_view code, std::string_view message, std::string_view reason) {
    std::string out = "{\"success\":false,\"message\":";
    ipc::append_json_string(out, message);
    out += ",\"error\":{\"code\":";
    ipc::append_json_string(out, code);
    if (!reason.empty()) {
        out += ",\"reason\":";
        ipc::append_json_string(out, reason);
    }
    out += "}}";
    return out;
}

ipc::Reply error_reply(std::uint64_t id, std::uint16_t status, std::string_view code, std::string_view message,
                       std::string_view reason) {
    ipc::Reply reply;
    reply.id = id;
    reply.status = status;
    reply.headers.emplace_back("content-type", "application/json");
    reply.body = error_body(code, message, reason);
    return reply;
}

std::string unauthorized_body(bool missing, jwt::Verdict verdict) {
    if (missing) return error_body("unauthorized", "Authorization: Bearer <JWT> required", "missing_token");
    return error_body("unauthorized", refusal_message(verdict), jwt::verdict_name(verdict));
}

std::string www_authenticate(bool missing) {
    return missing ? "Bearer realm=\"paygate\"" : "Bearer realm=\"paygate\", error=\"invalid_token\"";
}

}  // namespace paygate::merchant_envelope
