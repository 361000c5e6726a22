// WhiteBird (seed 004): the order and timeout bodies field by field, the ISO 4217 numeric codes of
// the currency table, the status mapping and the credential kinds that keep a client token and a
// partner key apart in the module's table.
#include "cmocka.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "paygate/token_sync.hpp"
#include "paygated/tokens.hpp"
#include "paygated/whitebird.hpp"

using namespace paygate;
using namespace paygate::daemon;
namespace wb = paygate::daemon::whitebird;

namespace {

const char* const kSeed =
    R"({"externalUserId":"9ee9e9f7-a7ff-4dc4-9804-5d7dd2cf2df5",)"
    R"("externalOperationId":"c2cd82d4-7653-4a0f-a861-f8b1aa45816c",)"
    R"("paymentMethodToken":"4b13260e-e642-438f-ab40-adc6a1edb039",)"
    R"("currency":933,"amount":100,"type":"PAYMENT","status":"EXCHANGED"})";

json::Value parsed(const std::string& text) {
    json::Value v;
    json::ParseError e;
    if (!json::parse(text, v, e)) print_error("bad test JSON %s: %s\n", text.c_str(), e.message.c_str());
    assert_true(json::parse(text, v, e));
    return v;
}

// The seed body with `field` replaced by the JSON text `value` ("" removes it).
std::string seed_with(const std::string& field, const std::string& value) {
    json::Value seed = parsed(kSeed);
    std::string out = "{";
    bool first = true;
    for (const auto& [name, v] : seed.members()) {
        std::string text = name == field ? value : json::serialize(v);
        if (text.empty()) continue;
        if (!first) out += ",";
        first = false;
        json::append_string(out, name);
        out += ":" + text;
    }
    return out + "}";
}

std::optional<wb::Order> order_of(const std::string& text, Invalid& invalid) {
    return wb::validate_order(parsed(text), invalid);
}

void refused(const std::string& field, const std::string& value, const char* message) {
    Invalid invalid;
    std::string body = seed_with(field, value);
    std::optional<wb::Order> o = order_of(body, invalid);
    if (o || invalid.message != message) {
        print_error("%s: got %s \"%s\", want \"%s\"\n", body.c_str(), o ? "accepted" : "refused", invalid.message.c_str(),
                    message);
    }
    assert_false(o.has_value());
    assert_int_equal(invalid.status, 400);
    assert_string_equal(invalid.code.c_str(), "validation_error");
    assert_string_equal(invalid.message.c_str(), message);
}

void seed_example(void**) {
    Invalid invalid;
    std::optional<wb::Order> o = order_of(kSeed, invalid);
    assert_true(o.has_value());
    assert_string_equal(o->external_user_id.c_str(), "9ee9e9f7-a7ff-4dc4-9804-5d7dd2cf2df5");
    assert_string_equal(o->external_operation_id.c_str(), "c2cd82d4-7653-4a0f-a861-f8b1aa45816c");
    assert_string_equal(o->payment_method_token->c_str(), "4b13260e-e642-438f-ab40-adc6a1edb039");
    assert_string_equal(std::string(o->amount.currency->code).c_str(), "BYN");
    assert_string_equal(o->amount.minor_units.c_str(), "10000");
    assert_true(o->type == wb::OrderType::Payment);
    assert_int_equal(o->fingerprint.size(), 64);
}

void numeric_currency_codes(void**) {
    struct Case {
        int numeric;
        const char* code;
    };
    const Case cases[] = {{933, "BYN"}, {840, "USD"}, {978, "EUR"}, {643, "RUB"}, {392, "JPY"}, {48, "BHD"},
                          {8, "ALL"},   {990, "CLF"}, {826, "GBP"}, {398, "KZT"}, {980, "UAH"}, {51, "AMD"}};
    for (const Case& c : cases) {
        const Currency* found = find_currency_by_numeric(c.numeric);
        assert_non_null(found);
        assert_string_equal(std::string(found->code).c_str(), c.code);
        assert_int_equal(find_currency(c.code)->numeric, c.numeric);   // one table: the same entry
        assert_ptr_equal(find_currency(c.code), found);
    }
    for (int none : {0, -1, 999, 1000, 974 /* BYR, withdrawn */, 191 /* HRK, withdrawn */}) {
        assert_null(find_currency_by_numeric(none));
    }
    assert_int_equal(find_currency("BTC")->numeric, 0);   // crypto has no ISO numeric code
}

void bad_fields(void**) {
    refused("currency", "999", "currency: 999 is not an ISO 4217 numeric currency code paygate accepts");
    refused("currency", "\"933\"", "currency: must be an ISO 4217 numeric code as a JSON number (933), not string");
    refused("currency", "933.5", "currency: 933.5 is not an ISO 4217 numeric currency code paygate accepts");
    refused("currency", "9.335e2", "currency: 9.335e2 is not an ISO 4217 numeric currency code paygate accepts");
    refused("currency", "933e3", "currency: 933e3 is not an ISO 4217 numeric currency code paygate accepts");
    refused("currency", "-933", "currency: -933 is not an ISO 4217 numeric currency code paygate accepts");
    refused("currency", "", "currency: missing");
    refused("currency", "null", "currency: missing");
    refused("amount", "1.001", "amount: has more fraction digits than BYN allows (at most 2)");
    refused("amount", "-5", "amount: must be greater than zero");
    refused("amount", "0", "amount: must be greater than zero");
    refused("amount", "\"100\"", "amount: must be a JSON number, not string");
    refused("amount", "", "amount: missing");
    refused("type", "\"REFUND\"", "type: must be one of PAYMENT, DISBURSEMENT");
    refused("type", "\"payment\"", "type: must be one of PAYMENT, DISBURSEMENT");
    refused("type", "1", "type: must be a string, not number");
    refused("status", "\"PROCESSING\"", "status: must be one of EXCHANGED");
    refused("status", "", "status: missing");
    refused("externalUserId", "12", "externalUserId: must be a string, not number");
    refused("externalUserId", "\"\"", "externalUserId: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    refused("externalOperationId", "\"a b\"", "externalOperationId: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    refused("externalOperationId", "\"" + std::string(129, 'a') + "\"",
            "externalOperationId: must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    refused("externalOperationId", "", "externalOperationId: missing");
    refused("paymentMethodToken", "7", "paymentMethodToken: must be a string, not number");
}

void amounts_exact(void**) {
    Invalid invalid;
    // The number's text is read exactly: no double ever holds it.
    assert_string_equal(order_of(seed_with("amount", "0.1"), invalid)->amount.minor_units.c_str(), "10");
    assert_string_equal(order_of(seed_with("amount", "12.50"), invalid)->amount.minor_units.c_str(), "1250");
    assert_string_equal(order_of(seed_with("amount", "1e2"), invalid)->amount.minor_units.c_str(), "10000");
    assert_string_equal(order_of(seed_with("amount", "999999999999999.99"), invalid)->amount.minor_units.c_str(),
                        "99999999999999999");
    // JPY has no minor unit, BHD three.
    json::Value jpy = parsed(seed_with("currency", "392"));
    assert_string_equal(wb::validate_order(jpy, invalid)->amount.minor_units.c_str(), "100");
    std::string jpy_fraction = seed_with("currency", "392");
    jpy_fraction.replace(jpy_fraction.find("\"amount\":100"), 12, "\"amount\":1.5");
    assert_false(order_of(jpy_fraction, invalid).has_value());
    std::string bhd = seed_with("currency", "48");
    bhd.replace(bhd.find("\"amount\":100"), 12, "\"amount\":1.125");
    assert_string_equal(order_of(bhd, invalid)->amount.minor_units.c_str(), "1125");
    assert_false(order_of(seed_with("amount", "1.125"), invalid).has_value());   // BYN: two digits
    assert_false(order_of(seed_with("amount", "1.1e-3"), invalid).has_value());
}

void optional_method_and_fingerprint(void**) {
    Invalid invalid;
    std::optional<wb::Order> without = order_of(seed_with("paymentMethodToken", ""), invalid);
    assert_true(without.has_value());
    assert_false(without->payment_method_token.has_value());
    std::optional<wb::Order> null = order_of(seed_with("paymentMethodToken", "null"), invalid);
    assert_true(null.has_value());
    assert_string_equal(null->fingerprint.c_str(), without->fingerprint.c_str());
    std::optional<wb::Order> seed = order_of(kSeed, invalid);
    assert_string_not_equal(seed->fingerprint.c_str(), without->fingerprint.c_str());
    // The same order spelled otherwise is the same order; any field changed is another.
    assert_string_equal(order_of(seed_with("currency", "933.0"), invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
    assert_string_equal(order_of(seed_with("currency", "9.33e2"), invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
    assert_string_equal(order_of(seed_with("amount", "100.00"), invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
    assert_string_equal(order_of(seed_with("amount", "1E2"), invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
    for (auto [field, value] : {std::pair<const char*, const char*>{"amount", "101"}, {"currency", "840"},
                                {"type", "\"DISBURSEMENT\""}, {"externalUserId", "\"other\""}}) {
        assert_string_not_equal(order_of(seed_with(field, value), invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
    }
    // Unknown members are ignored (WhiteBird may add fields), and do not change the order.
    std::string extra = std::string(kSeed);
    extra.insert(1, "\"comment\":\"x\",");
    assert_string_equal(order_of(extra, invalid)->fingerprint.c_str(), seed->fingerprint.c_str());
}

void timeout_bodies(void**) {
    Invalid invalid;
    // The seed's spelling starts with U+0421 (UTF-8 D0 A1), the Latin one is its alias.
    std::optional<std::string> id = wb::validate_timeout(parsed("{\"externalOperationId\":\"op-1\",\"status\":\"\xD0\xA1"
                                                                "ANCELLED\"}"),
                                                         invalid);
    assert_true(id.has_value());
    assert_string_equal(id->c_str(), "op-1");
    assert_true(wb::validate_timeout(parsed(R"({"externalOperationId":"op-1","status":"CANCELLED"})"), invalid).has_value());
    assert_true(wb::validate_timeout(parsed(R"({"externalOperationId":"op-1","status":"\u0421ANCELLED"})"), invalid).has_value());
    for (const char* bad : {R"({"externalOperationId":"op-1","status":"CANCELED"})",
                            R"({"externalOperationId":"op-1","status":"cancelled"})",
                            "{\"externalOperationId\":\"op-1\",\"status\":\"\xD0\xA1\xD0\x90NCELLED\"}",
                            R"({"externalOperationId":"op-1"})", R"({"status":"CANCELLED"})",
                            R"({"externalOperationId":1,"status":"CANCELLED"})", "[]"}) {
        invalid = Invalid{};
        assert_false(wb::validate_timeout(parsed(bad), invalid).has_value());
        assert_int_equal(invalid.status, 400);
    }
}

void status_mapping(void**) {
    assert_true(wb::order_status(PaymentStatus::Created) == wb::Status::Processing);
    assert_true(wb::order_status(PaymentStatus::BankProcessing) == wb::Status::Processing);
    assert_true(wb::order_status(PaymentStatus::Completed) == wb::Status::Success);
    assert_true(wb::order_status(PaymentStatus::Declined) == wb::Status::Failed);
    assert_true(wb::order_status(PaymentStatus::Cancelled) == wb::Status::Failed);
    assert_true(wb::order_status(PaymentStatus::Reversed) == wb::Status::Failed);
    assert_string_equal(std::string(wb::status_name(wb::Status::Processing)).c_str(), "PROCESSING");
    // Human-readable, never the provider's code.
    std::string m = wb::failure_message(PaymentStatus::Declined, std::string("insufficient_funds"), false);
    assert_string_equal(m.c_str(), "Insufficient funds on the user's balance");
    m = wb::failure_message(PaymentStatus::Declined, std::string("some_internal_code_42"), false);
    assert_null(std::strstr(m.c_str(), "some_internal"));
    assert_true(wb::failure_message(PaymentStatus::Reversed, std::nullopt, true).find("cancelled") != std::string::npos);
}

void credential_kinds(void**) {
    namespace ts = token_sync;
    unsigned whitebird = ts::key_partner_kind("whitebird");
    assert_int_equal(whitebird, 1);
    assert_int_equal(ts::key_partner_kind("sky-technologies"), 0);
    assert_int_equal(ts::key_partner_kind(""), 0);
    std::uint64_t client = ts::credential_value(ts::kClientToken, 42);
    std::uint64_t key = ts::credential_value(whitebird, 42);
    assert_int_equal(client, 42);
    assert_true(key != client);
    assert_int_equal(ts::credential_kind(client), ts::kClientToken);
    assert_int_equal(ts::credential_kind(key), whitebird);
    assert_int_equal(ts::credential_owner(key), 42);
    // Every value still fits the 48 bits the module's table keeps.
    assert_true(ts::credential_value(255, ts::kMaxOwnerId) <= ts::kMaxClientId);
}

void partner_key_text(void**) {
    assert_true(is_partner_key_text("pgk_" + std::string(64, 'a')));
    assert_false(is_partner_key_text("pgt_" + std::string(64, 'a')));   // a client token's form
    assert_false(is_partner_key_text("pgk_" + std::string(63, 'a')));
    assert_false(is_partner_key_text("pgk_" + std::string(64, 'A')));
    assert_false(is_token_text("pgk_" + std::string(64, 'a')));
    assert_true(is_key_partner("whitebird"));
    assert_false(is_key_partner("WhiteBird"));
    assert_false(is_key_partner("mserver"));
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_example),
        cmocka_unit_test(numeric_currency_codes),
        cmocka_unit_test(bad_fields),
        cmocka_unit_test(amounts_exact),
        cmocka_unit_test(optional_method_and_fingerprint),
        cmocka_unit_test(timeout_bodies),
        cmocka_unit_test(status_mapping),
        cmocka_unit_test(credential_kinds),
        cmocka_unit_test(partner_key_text),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
