// The idempotency key (ipc/idempotency.cpp, docs/idempotency.md) as an equivalence. The input is
// a request body. Every respelling of it with the same meaning (members in another order, other
// whitespace, other string escapes, other spellings of its numbers, the token and the payment id
// in another case) must get the same key; changing one value must keep the scope and change the
// request hash; another token must change the scope. A body gets a key exactly when it is a
// JSON object whose idempotency_token is a UUID.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "json_respell.hpp"
#include "paygate/idempotency.hpp"
#include "paygate/json.hpp"

namespace json = paygate::json;
namespace idempotency = paygate::idempotency;

namespace {

constexpr std::string_view kPrincipal = "client-7";
constexpr std::string_view kRoute = "payment.edit";
constexpr std::string_view kPaymentId = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b";
constexpr std::string_view kPaymentIdUpper = "6F1C2B9E-0D7A-4F3E-8B5C-1A2D3E4F5A6B";

bool is_uuid(std::string_view s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? c != '-' : !hex) return false;
    }
    return true;
}

std::string flip_case(std::string s, fuzz::Rng& rng) {
    for (char& c : s) {
        if (rng.chance(2)) {
            if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
            else if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return s;
}

// `doc` with the top-level idempotency_token replaced by `token`.
json::Value with_token(const json::Value& doc, const std::string& token) {
    std::vector<std::pair<std::string, json::Value>> members;
    for (const auto& m : doc.members()) {
        members.emplace_back(m.first, m.first == "idempotency_token" ? json::Value::string(token) : m.second);
    }
    return json::Value::object(std::move(members));
}

bool same(const std::optional<idempotency::Key>& a, const std::optional<idempotency::Key>& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a || (a->scope == b->scope && a->request_hash == b->request_hash);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const std::optional<idempotency::Key> key = idempotency::key_of(kPrincipal, kRoute, kPaymentId, body);

    json::Value doc;
    json::ParseError error;
    if (!json::parse(body, doc, error)) {
        FUZZ_CHECK(!key, "a key for a body that is not JSON");
        return 0;
    }
    const json::Value* token = doc.find("idempotency_token");
    const bool keyed = doc.is(json::Type::Object) && token != nullptr && token->is(json::Type::String) &&
                       is_uuid(token->text());
    FUZZ_CHECK(key.has_value() == keyed, "a key exactly when the body is an object with a UUID token");
    if (key) {
        FUZZ_CHECK(key->scope.size() == 64 && key->request_hash.size() == 64, "keys are SHA-256 hex");
    }

    // The same request, spelled otherwise: the same key (or none again).
    fuzz::Rng rng(body);
    fuzz::Respeller respell(rng);
    for (int round = 0; round < 2; ++round) {
        const json::Value& variant_doc = keyed ? with_token(doc, flip_case(token->text(), rng)) : doc;
        const std::string variant = respell.write(variant_doc);
        json::Value reparsed;
        FUZZ_CHECK(json::parse(variant, reparsed, error), "a respelled body does not parse");
        const std::string_view payment_id = round == 0 ? kPaymentId : kPaymentIdUpper;
        FUZZ_CHECK(same(idempotency::key_of(kPrincipal, kRoute, payment_id, variant), key),
                   "the same request spelled otherwise got another key");
    }
    if (!key) return 0;

    // Another value: the same scope, another request hash.
    const std::size_t leaves = fuzz::count_leaves(doc);
    if (leaves > 0) {
        std::size_t k = rng.below(leaves);
        const std::string changed = respell.write(fuzz::change_leaf(doc, k));
        const auto other = idempotency::key_of(kPrincipal, kRoute, kPaymentId, changed);
        FUZZ_CHECK(other && other->scope == key->scope, "changing a value changed the scope");
        FUZZ_CHECK(other->request_hash != key->request_hash, "changing a value kept the request hash");
    }
    // Another token, another payment, another client, another route: another scope.
    std::string other_token = token->text();
    other_token[0] = other_token[0] == '0' ? '1' : '0';
    const auto by_token = idempotency::key_of(kPrincipal, kRoute, kPaymentId, respell.write(with_token(doc, other_token)));
    FUZZ_CHECK(by_token && by_token->scope != key->scope, "another token kept the scope");
    FUZZ_CHECK(by_token->request_hash == key->request_hash, "the token is part of the request hash");
    const auto by_payment = idempotency::key_of(kPrincipal, kRoute, "0f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b", body);
    FUZZ_CHECK(by_payment && by_payment->scope != key->scope, "another payment kept the scope");
    const auto by_client = idempotency::key_of("client-8", kRoute, kPaymentId, body);
    FUZZ_CHECK(by_client && by_client->scope != key->scope, "another client kept the scope");
    const auto by_route = idempotency::key_of(kPrincipal, "payment.cancel", kPaymentId, body);
    FUZZ_CHECK(by_route && by_route->scope != key->scope, "another route kept the scope");
    return 0;
}
