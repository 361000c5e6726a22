// WhiteBird's order and timeout bodies (daemon/src/whitebird.cpp, docs/partners/whitebird.md).
// Whatever is accepted holds only what the database and the provider can take: ids of 1-128
// safe characters, a currency with an ISO numeric code equal to the number sent, a positive
// amount in minor units with no leading zero, a fingerprint of 64 hex digits; a refusal names the
// field; the same body spelled otherwise (key order, whitespace, escapes, number spellings) gets
// the same verdict and, for an order, the same fingerprint: a respelled retry is the same order.
//
// Byte 0 picks the body kind (even: order, odd: timeout); the rest is the body.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "json_respell.hpp"
#include "paygate/json.hpp"
#include "paygated/money.hpp"
#include "paygated/whitebird.hpp"

namespace json = paygate::json;
namespace daemon = paygate::daemon;
namespace wb = paygate::daemon::whitebird;

namespace {

struct Verdict {
    bool ok = false;
    daemon::Invalid invalid;
    std::string read;   // the fingerprint of an order, the operation id of a timeout
};

bool safe_id(std::string_view s) {
    return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == ':' || c == '-';
    });
}

bool field_named(const std::string& message) {
    for (const char* f : {"body", "externalUserId", "externalOperationId", "paymentMethodToken", "currency", "amount",
                          "type", "status"}) {
        if (message.rfind(std::string(f) + ": ", 0) == 0) return true;
    }
    return false;
}

Verdict check(bool order, const json::Value& body) {
    Verdict v;
    if (order) {
        std::optional<wb::Order> o = wb::validate_order(body, v.invalid);
        if (!o) return v;
        v.ok = true;
        v.read = o->fingerprint;
        FUZZ_CHECK(safe_id(o->external_user_id) && safe_id(o->external_operation_id), "an unsafe id was accepted");
        FUZZ_CHECK(!o->payment_method_token || safe_id(*o->payment_method_token), "an unsafe method was accepted");
        const daemon::Currency* c = o->amount.currency;
        FUZZ_CHECK(c != nullptr && c->numeric > 0 && daemon::find_currency_by_numeric(c->numeric) == c,
                   "the currency has no numeric code of its own");
        FUZZ_CHECK(json::canonical_number(body.find("currency")->text()) == std::to_string(c->numeric),
                   "the currency's code is not the number sent");
        const std::string& m = o->amount.minor_units;
        FUZZ_CHECK(!m.empty() && m[0] != '0' && std::all_of(m.begin(), m.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
                   "the amount is not a positive count of minor units");
        FUZZ_CHECK(v.read.size() == 64 && v.read.find_first_not_of("0123456789abcdef") == std::string::npos,
                   "the fingerprint is not 64 hex digits");
    } else {
        std::optional<std::string> id = wb::validate_timeout(body, v.invalid);
        if (!id) return v;
        v.ok = true;
        v.read = *id;
        FUZZ_CHECK(safe_id(*id), "an unsafe operation id was accepted");
        const std::string& status = body.find("status")->text();
        FUZZ_CHECK(status == wb::kCancelledSeed || status == wb::kCancelledLatin, "a timeout status outside the two");
    }
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool order = data[0] % 2 == 0;
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    json::Value doc;
    json::ParseError error;
    if (!json::parse(text, doc, error)) return 0;   // the JSON reader has harnesses of its own

    const Verdict v = check(order, doc);
    if (!v.ok) {
        FUZZ_CHECK(v.invalid.status == 400 && v.invalid.code == "validation_error", "a refusal that is not a 400");
        FUZZ_CHECK(field_named(v.invalid.message), "a refusal that names no field");
    }
    fuzz::Rng rng(text);
    fuzz::Respeller respell(rng);
    json::Value again_doc;
    FUZZ_CHECK(json::parse(respell.write(doc), again_doc, error), "a respelled body does not parse");
    const Verdict again = check(order, again_doc);
    FUZZ_CHECK(again.ok == v.ok, "a respelled body got another verdict");
    FUZZ_CHECK(again.read == v.read, "a respelled order has another fingerprint (or timeout another id)");
    return 0;
}
