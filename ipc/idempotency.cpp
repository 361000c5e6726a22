// Idempotency keys (see idempotency.hpp).
#include "paygate/idempotency.hpp"

#include "paygate/digest.hpp"
#include "paygate/json.hpp"

namespace paygate::idempotency {

bool applies_to(std::string_view route) {
    return route == "payment.create" || route == "payment.cancel" || route == "payment.edit" ||
           route == "payment.accept" || route == "payment.extra_charge" || route == "payment.refund";
}

std::optional<std::string> canonical_uuid(std::string_view text) {
    if (text.size() != 36) return std::nullopt;
    std::string out(text);
    for (std::size_t i = 0; i < out.size(); ++i) {
        char& c = out[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return std::nullopt;
        } else if (c >= 'A' && c <= 'F') {
            c = static_cast<char>(c - 'A' + 'a');
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return std::nullopt;
        }
    }
    return out;
}

std::optional<Key> key_of(std::string_view principal, std::string_view route, std::string_view payment_id,
                          std::string_view body) {
    json::Value doc;
    json::ParseError error;
    if (!json::parse(body, doc, error) || !doc.is(json::Type::Object)) return std::nullopt;
    const json::Value* token = doc.find("idempotency_token");
    if (token == nullptr || !token->is(json::Type::String)) return std::nullopt;
    std::optional<std::string> canonical_token = canonical_uuid(token->text());
    if (!canonical_token) return std::nullopt;
    std::optional<std::string> canonical_id = canonical_uuid(payment_id);

    // Newlines cannot occur in any part (ids and route names have no control characters), so
    // the joined text is unambiguous.
    std::string scope;
    scope.reserve(principal.size() + route.size() + payment_id.size() + 40);
    scope.append(principal).append("\n").append(route).append("\n");
    scope.append(canonical_id ? std::string_view(*canonical_id) : payment_id).append("\n");
    scope.append(*canonical_token);
    // The token is part of the scope already; leaving it out of the request hash keeps "same
    // request" independent of how the token was spelled (its case).
    std::vector<std::pair<std::string, json::Value>> rest;
    for (const auto& member : doc.members()) {
        if (member.first != "idempotency_token") rest.push_back(member);
    }
    return Key{sha256_hex(scope), sha256_hex(json::canonical(json::Value::object(std::move(rest))))};
}

}  // namespace paygate::idempotency
