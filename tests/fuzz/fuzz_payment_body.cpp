// The payment API's body validation (daemon/src/payment_rules.cpp, docs/api.md): the six POST
// bodies as a client sends them. Whatever is accepted is a JSON object with an idempotency key
// and a canonical token; the verdict and the fields read do not depend on the body's spelling
// (a respelled body gets the same answer); and an accepted accept_info holds only what
// PostgreSQL's jsonb can store as written (no U+0000; numbers numeric can read: exponent below
// 2^30 in magnitude, at most 16383 digits after the point as written and moved by the exponent).
//
// Byte 0 picks the route (mod 6) and the Content-Type (div 6); the rest is the body.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "json_respell.hpp"
#include "paygate/idempotency.hpp"
#include "paygate/ipc.hpp"
#include "paygate/json.hpp"
#include "paygated/money.hpp"
#include "paygated/payment_rules.hpp"

namespace ipc = paygate::ipc;
namespace json = paygate::json;
namespace rules = paygate::daemon;

namespace {

const char* const kRoutes[] = {"payment.create", "payment.edit", "payment.cancel",
                               "payment.accept", "payment.extra_charge", "payment.refund"};
const char* const kContentTypes[] = {"application/json", "application/json; charset=utf-8", " Application/JSON ",
                                     "text/plain", nullptr};

struct Verdict {
    bool ok = false;
    rules::Invalid invalid;
    std::string fields;   // what was read, spelled canonically
    std::string token;
    std::string accept_info;
};

std::string amount_of(const rules::MoneyInfo& m) {
    return m.method_id + "|" + std::string(m.amount.currency->code) + "|" + m.amount.minor_units;
}

Verdict validate(std::size_t route, const ipc::Request& request) {
    Verdict v;
    switch (route) {
        case 0:
            if (auto r = rules::validate_create(request, v.invalid)) {
                v.ok = true;
                v.token = r->idempotency_token;
                v.fields = amount_of(r->money) + "|" + r->recipient_id + "|" + r->sender_id + "|" +
                           (r->sender_method_id ? "+" + *r->sender_method_id : "-");
            }
            break;
        case 1:
            if (auto r = rules::validate_edit(request, v.invalid)) {
                v.ok = true;
                v.token = r->idempotency_token;
                v.fields = amount_of(r->money);
            }
            break;
        case 2:
            if (auto r = rules::validate_cancel(request, v.invalid)) {
                v.ok = true;
                v.token = r->idempotency_token;
                v.fields = std::string(rules::reason_name(r->reason));
            }
            break;
        case 3:
            if (auto r = rules::validate_accept(request, v.invalid)) {
                v.ok = true;
                v.token = r->idempotency_token;
                v.accept_info = r->accept_info_json;
                json::Value info;
                json::ParseError error;
                FUZZ_CHECK(json::parse(r->accept_info_json, info, error) && info.is(json::Type::Object),
                           "the stored accept_info is not a JSON object");
                v.fields = json::canonical(info);
            }
            break;
        default: {
            auto r = route == 4 ? rules::validate_extra_charge(request, v.invalid)
                                : rules::validate_refund(request, v.invalid);
            if (r) {
                v.ok = true;
                v.token = r->idempotency_token;
                v.fields = (r->amount.is_number ? "number " + json::canonical_number(r->amount.text)
                                                : "string " + r->amount.text);
            }
        }
    }
    return v;
}

// Whether PostgreSQL 15's numeric_in reads this JSON number as written (jsonb stores it so):
// |exponent| < INT_MAX / 2, display scale (digits after the point as written, minus the
// exponent, at least 0) <= 16383, and at most 131072 digits before the point.
bool numeric_can_hold(std::string_view lexeme) {
    fuzz::Lexeme p;
    FUZZ_CHECK(fuzz::split_lexeme(lexeme, p), "a number that is not a JSON lexeme");
    std::string_view exp = p.exp_digits;
    while (!exp.empty() && exp.front() == '0') exp.remove_prefix(1);
    if (exp.size() > 10) return false;
    std::int64_t e = 0;
    for (char c : exp) e = e * 10 + (c - '0');
    if (e >= 1073741823) return false;
    if (p.exp_negative) e = -e;
    const std::int64_t scale = static_cast<std::int64_t>(p.frac_digits.size()) - e;
    if (scale > 16383) return false;
    const std::string digits = p.int_digits + p.frac_digits;
    const std::size_t lead = digits.find_first_not_of('0');
    if (lead == std::string::npos) return true;   // zero: no weight to overflow
    const std::int64_t integer_digits = static_cast<std::int64_t>(p.int_digits.size()) -
                                        static_cast<std::int64_t>(lead) + e;
    return integer_digits <= 131072;
}

bool storable(const json::Value& v) {
    switch (v.type()) {
        case json::Type::String: return v.text().find('\0') == std::string::npos;
        case json::Type::Number: return numeric_can_hold(v.text());
        case json::Type::Array:
            for (const auto& item : v.items()) {
                if (!storable(item)) return false;
            }
            return true;
        case json::Type::Object:
            for (const auto& [key, value] : v.members()) {
                if (key.find('\0') != std::string::npos || !storable(value)) return false;
            }
            return true;
        default: return true;
    }
}

ipc::Request request_of(std::string_view route, const char* content_type, std::string body) {
    ipc::Request r;
    r.method = ipc::Method::Post;
    r.route = route;
    if (content_type != nullptr) r.headers.emplace_back("content-type", content_type);
    r.body = std::move(body);
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t route = data[0] % 6;
    const char* content_type = kContentTypes[(data[0] / 6) % (sizeof kContentTypes / sizeof kContentTypes[0])];
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const bool json_type = content_type != nullptr && std::string_view(content_type) != "text/plain";

    const Verdict v = validate(route, request_of(kRoutes[route], content_type, body));
    if (!v.ok) {
        FUZZ_CHECK(!v.invalid.message.empty(), "a refusal without a message");
        FUZZ_CHECK((v.invalid.status == 415) == !json_type, "415 exactly for a body that is not JSON by its type");
    } else {
        FUZZ_CHECK(json_type, "a body accepted without a JSON content type");
        const auto key = paygate::idempotency::key_of("client-7", kRoutes[route], "", body);
        FUZZ_CHECK(key.has_value(), "an accepted body has no idempotency key");
        FUZZ_CHECK(rules::canonical_uuid(v.token) == v.token, "the token read is not a canonical UUID");
        if (route == 3) {
            json::Value info;
            json::ParseError error;
            FUZZ_CHECK(json::parse(v.accept_info, info, error) && storable(info),
                       "accept_info holds what PostgreSQL's jsonb cannot store");
        }
    }
    if (!json_type) return 0;

    // The same body spelled otherwise gets the same answer (the body rules allow 33 levels).
    json::Value doc;
    json::ParseError error;
    json::ParseLimits limits;
    limits.max_depth = 33;
    if (!json::parse(body, doc, error, limits)) return 0;
    fuzz::Rng rng(body);
    fuzz::Respeller respell(rng);
    const Verdict again = validate(route, request_of(kRoutes[route], content_type, respell.write(doc)));
    // Whether numeric can hold a number depends on how it is written (jsonb keeps it so).
    const auto spelling_rule = [](const Verdict& x) {
        return !x.ok && x.invalid.message.rfind("accept_info: number", 0) == 0;
    };
    if (spelling_rule(v) || spelling_rule(again)) return 0;
    FUZZ_CHECK(again.ok == v.ok && again.invalid.status == v.invalid.status,
               "a respelled body got another verdict");
    FUZZ_CHECK(again.fields == v.fields && again.token == v.token, "a respelled body read other values");
    return 0;
}
