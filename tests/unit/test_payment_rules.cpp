// The payment rules: names, the whole state machine (every status x action), and the validation
// of every payment body with the exact message for each class of bad input.
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "cmocka.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "paygated/payment_rules.hpp"

using namespace paygate;
using namespace paygate::daemon;

namespace {

const PaymentStatus kStatuses[] = {PaymentStatus::Created,  PaymentStatus::BankProcessing, PaymentStatus::Completed,
                                   PaymentStatus::Declined, PaymentStatus::Cancelled,      PaymentStatus::Reversed};
const Action kActions[] = {Action::Edit,           Action::Cancel,           Action::Accept,
                           Action::ProviderCompleted, Action::ProviderDeclined, Action::ReversalCompleted,
                           Action::ExtraCharge,       Action::Refund};
constexpr int kActionCount = sizeof(kActions) / sizeof(kActions[0]);

const char* kToken = "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f";

ipc::Request post(std::string body, const char* content_type = "application/json") {
    ipc::Request r;
    r.method = ipc::Method::Post;
    r.route = "payment.create";
    if (content_type != nullptr) r.headers.emplace_back("content-type", content_type);
    r.body = std::move(body);
    return r;
}

std::string str(std::string_view s) { return std::string(s); }

// ---- names and the state machine -------------------------------------------------------------

void names(void**) {
    const char* statuses[] = {"created", "bank_processing", "completed", "declined", "cancelled", "reversed"};
    for (std::size_t i = 0; i < 6; ++i) {
        assert_string_equal(str(status_name(kStatuses[i])).c_str(), statuses[i]);
        assert_true(parse_status(statuses[i]) == kStatuses[i]);
    }
    for (const char* bad : {"", "Created", "CREATED", "bank processing", "canceled", "pending", "created "}) {
        assert_false(parse_status(bad).has_value());
    }
    const CancelReason reasons[] = {CancelReason::UserRequest, CancelReason::MerchantRequest, CancelReason::Expired,
                                    CancelReason::FraudSuspected, CancelReason::Other};
    const char* reason_names[] = {"user_request", "merchant_request", "expired", "fraud_suspected", "other"};
    for (std::size_t i = 0; i < 5; ++i) {
        assert_string_equal(str(reason_name(reasons[i])).c_str(), reason_names[i]);
        assert_true(parse_reason(reason_names[i]) == reasons[i]);
    }
    for (const char* bad : {"", "User_Request", "fraud", "user request", "Other"}) {
        assert_false(parse_reason(bad).has_value());
    }
    const char* actions[] = {"edit",           "cancel", "accept",
                             "provider_completed", "provider_declined", "reversal_completed",
                             "extra_charge",   "refund"};
    for (int i = 0; i < kActionCount; ++i) assert_string_equal(str(action_name(kActions[i])).c_str(), actions[i]);
}

// The whole table, written out: every status x action x reversal flag.
void every_transition(void**) {
    struct Allowed {
        PaymentStatus from;
        Action action;
        bool reversal_requested;
        PaymentStatus to;
        bool charge;
        bool reversal;
    };
    using S = PaymentStatus;
    using A = Action;
    const Allowed allowed[] = {
        {S::Created, A::Edit, false, S::Created, false, false},
        {S::Created, A::Edit, true, S::Created, false, false},
        {S::Created, A::Cancel, false, S::Cancelled, false, false},
        {S::Created, A::Cancel, true, S::Cancelled, false, false},
        {S::Created, A::Accept, false, S::BankProcessing, true, false},
        {S::Created, A::Accept, true, S::BankProcessing, true, false},
        {S::Completed, A::Cancel, false, S::Completed, false, true},
        {S::BankProcessing, A::ProviderCompleted, false, S::Completed, false, false},
        {S::BankProcessing, A::ProviderCompleted, true, S::Completed, false, false},
        {S::BankProcessing, A::ProviderDeclined, false, S::Declined, false, false},
        {S::BankProcessing, A::ProviderDeclined, true, S::Declined, false, false},
        {S::Completed, A::ReversalCompleted, true, S::Reversed, false, false},
        // extra_charge and refund queue their own provider operation (with the amount)
        {S::Completed, A::ExtraCharge, false, S::Completed, false, false},
        {S::Completed, A::Refund, false, S::Completed, false, false},
    };
    int allowed_count = 0;
    int forbidden_count = 0;
    for (S from : kStatuses) {
        for (A action : kActions) {
            for (bool flag : {false, true}) {
                const Allowed* want = nullptr;
                for (const Allowed& a : allowed) {
                    if (a.from == from && a.action == action && a.reversal_requested == flag) want = &a;
                }
                std::optional<Transition> got = transition(from, action, flag);
                if (got.has_value() != (want != nullptr)) {
                    print_error("%s --%s (reversal_requested=%d)--> %s, want %s\n", str(status_name(from)).c_str(),
                                str(action_name(action)).c_str(), flag, got ? "allowed" : "refused",
                                want ? "allowed" : "refused");
                }
                if (want == nullptr) {
                    assert_false(got.has_value());
                    ++forbidden_count;
                    continue;
                }
                assert_true(got.has_value());
                assert_true(got->to == want->to);
                assert_int_equal(got->requests_charge, want->charge);
                assert_int_equal(got->requests_reversal, want->reversal);
                ++allowed_count;
            }
        }
    }
    assert_int_equal(allowed_count, 14);
    assert_int_equal(forbidden_count, 6 * kActionCount * 2 - 14);
    // The cases docs/api.md names explicitly.
    assert_false(transition(S::BankProcessing, A::Edit, false).has_value());
    assert_false(transition(S::BankProcessing, A::Cancel, false).has_value());
    assert_false(transition(S::Completed, A::Cancel, true).has_value());   // a second cancel
    assert_false(transition(S::Cancelled, A::Cancel, false).has_value());
    assert_false(transition(S::Completed, A::ReversalCompleted, false).has_value());
    // extra_charge and refund: only a completed payment whose full reversal was not asked
    for (A action : {A::ExtraCharge, A::Refund}) {
        assert_false(transition(S::Completed, action, true).has_value());
        assert_false(transition(S::Created, action, false).has_value());
        assert_false(transition(S::Declined, action, false).has_value());
        assert_false(transition(S::Reversed, action, false).has_value());
    }
}

// ---- helpers ---------------------------------------------------------------------------------

void content_types(void**) {
    for (const char* ok : {"application/json", "Application/JSON", "APPLICATION/JSON", "application/json; charset=utf-8",
                           "application/json;charset=UTF-8", " application/json ", "application/json ;charset=utf-8",
                           "application/json;", "\tapplication/json"}) {
        if (!is_json_content_type(ok)) print_error("%s should be JSON\n", ok);
        assert_true(is_json_content_type(ok));
    }
    for (const char* bad : {"", "text/plain", "application/jsonx", "application/json-patch+json", "text/json",
                            "application/x-www-form-urlencoded", "multipart/form-data", "application/ json",
                            "application /json", "json", "application/json,text/plain", "application/problem+json",
                            "application"}) {
        if (is_json_content_type(bad)) print_error("%s should not be JSON\n", bad);
        assert_false(is_json_content_type(bad));
    }
}

void uuids(void**) {
    assert_string_equal(canonical_uuid("0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f")->c_str(),
                        "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f");
    assert_string_equal(canonical_uuid("0B6F7A52-8C1E-4C1B-9F7E-2F4A1D3C5E6F")->c_str(),
                        "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f");
    assert_string_equal(canonical_uuid("00000000-0000-0000-0000-000000000000")->c_str(),
                        "00000000-0000-0000-0000-000000000000");
    for (const char* bad : {"", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f0",
                            "0b6f7a528c1e4c1b9f7e2f4a1d3c5e6f", "{0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f}",
                            "0b6f7a52-8c1e-4c1b-9f7e_2f4a1d3c5e6f", "0b6f7a5-28c1e-4c1b-9f7e-2f4a1d3c5e6f",
                            "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6g", "0b6f7a52 8c1e 4c1b 9f7e 2f4a1d3c5e6f",
                            " b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f", "urn:uuid:0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e",
                            "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6\xc3", "------------------------------------"}) {
        assert_false(canonical_uuid(bad).has_value());
    }
}

void opaque_ids(void**) {
    for (const char* ok : {"a", "merchant-42", "card-7781", "user_1001", "A.B:C-D_E", "0", "urn:x:y"}) {
        assert_true(is_opaque_id(ok));
    }
    assert_true(is_opaque_id(std::string(128, 'x')));
    assert_false(is_opaque_id(std::string(129, 'x')));
    for (const char* bad : {"", " ", "a b", "a/b", "a@b.com", "4111 1111 1111 1111", "\xc3\xa9", "a\n", "a+b", "a,b",
                            "a\"b", "a'b", "a#b", "a%20b", "a\\b", "(a)"}) {
        assert_false(is_opaque_id(bad));
    }
    assert_false(is_opaque_id(std::string_view("a\0b", 3)));
}

// ---- validators ------------------------------------------------------------------------------

using Validate = std::function<bool(const ipc::Request&, Invalid&)>;

const Validate kCreate = [](const ipc::Request& r, Invalid& i) { return validate_create(r, i).has_value(); };
const Validate kEdit = [](const ipc::Request& r, Invalid& i) { return validate_edit(r, i).has_value(); };
const Validate kCancel = [](const ipc::Request& r, Invalid& i) { return validate_cancel(r, i).has_value(); };
const Validate kAccept = [](const ipc::Request& r, Invalid& i) { return validate_accept(r, i).has_value(); };
const Validate kExtraCharge = [](const ipc::Request& r, Invalid& i) { return validate_extra_charge(r, i).has_value(); };
const Validate kRefund = [](const ipc::Request& r, Invalid& i) { return validate_refund(r, i).has_value(); };

void expect_invalid(const Validate& validate, const ipc::Request& request, const char* message, int status = 400,
                    const char* code = "validation_error") {
    Invalid invalid;
    bool ok = validate(request, invalid);
    if (ok || invalid.message != message || invalid.status != status || invalid.code != code) {
        print_error("body [%.*s]\n  got %s %d %s \"%s\"\n want %d %s \"%s\"\n",
                    static_cast<int>(std::min<std::size_t>(request.body.size(), 200)), request.body.c_str(),
                    ok ? "accepted" : "refused", invalid.status, invalid.code.c_str(), invalid.message.c_str(), status,
                    code, message);
    }
    assert_false(ok);
    assert_int_equal(invalid.status, status);
    assert_string_equal(invalid.code.c_str(), code);
    assert_string_equal(invalid.message.c_str(), message);
}

void expect_invalid(const Validate& validate, const std::string& body, const char* message) {
    expect_invalid(validate, post(body), message);
}

std::string create_body(const std::string& money_info = "{\"method_id\":\"card-7781\",\"currency\":\"BTC\",\"amount\":1.0}",
                        const std::string& recipient = "{\"recipcient_id\":\"merchant-42\"}",
                        const std::string& sender = "{\"sender_id\":\"user-1001\"}") {
    return std::string("{\"idempotency_token\":\"") + kToken + "\",\"money_info\":" + money_info +
           ",\"recipcient\":" + recipient + ",\"sender\":" + sender + "}";
}

std::string money(const std::string& amount, const std::string& currency = "\"USD\"") {
    return "{\"method_id\":\"m-1\",\"currency\":" + currency + ",\"amount\":" + amount + "}";
}

void create_valid(void**) {
    Invalid invalid;
    // The example of docs/api.md, verbatim.
    std::optional<CreateRequest> r = validate_create(post(R"({
    "idempotency_token": "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f",
    "money_info": {"method_id": "card-7781", "currency": "BTC", "amount": 1.0},
    "recipcient": {"recipcient_id": "merchant-42"},
    "sender": {"sender_id": "user-1001"}
})"),
                                                     invalid);
    assert_true(r.has_value());
    assert_string_equal(r->idempotency_token.c_str(), kToken);
    assert_string_equal(r->money.method_id.c_str(), "card-7781");
    assert_string_equal(r->money.amount.minor_units.c_str(), "100000000");
    assert_non_null(r->money.amount.currency);
    assert_string_equal(str(r->money.amount.currency->code).c_str(), "BTC");
    assert_string_equal(r->recipient_id.c_str(), "merchant-42");
    assert_string_equal(r->sender_id.c_str(), "user-1001");
    assert_false(r->sender_method_id.has_value());

    // Upper-case token stored lower-case; sender.method_id given; amount as a string; any key order.
    r = validate_create(post("{\"sender\":{\"method_id\":\"wallet:9\",\"sender_id\":\"u.1\"},\"recipcient\":{\"recipcient_id\":"
                             "\"r_1\"},\"money_info\":{\"amount\":\"12.50\",\"currency\":\"USD\",\"method_id\":\"m\"},"
                             "\"idempotency_token\":\"0B6F7A52-8C1E-4C1B-9F7E-2F4A1D3C5E6F\"}",
                             "Application/JSON; charset=utf-8"),
                        invalid);
    assert_true(r.has_value());
    assert_string_equal(r->idempotency_token.c_str(), kToken);
    assert_string_equal(r->money.amount.minor_units.c_str(), "1250");
    assert_true(r->sender_method_id.has_value());
    assert_string_equal(r->sender_method_id->c_str(), "wallet:9");

    // An optional field given as null counts as absent.
    r = validate_create(post(create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"sender_id\":\"s\",\"method_id\":null}")),
                        invalid);
    assert_true(r.has_value());
    assert_false(r->sender_method_id.has_value());

    // Number forms of one amount give the same minor units.
    for (const char* amount : {"12.5", "12.50", "1250e-2", "0.125e2", "\"12.5\"", "\"12.500\""}) {
        r = validate_create(post(create_body(money(amount))), invalid);
        assert_true(r.has_value());
        assert_string_equal(r->money.amount.minor_units.c_str(), "1250");
    }
}

void content_type_and_body(void**) {
    const Validate* all[] = {&kCreate, &kEdit, &kCancel, &kAccept};
    for (const Validate* v : all) {
        const char* kMedia = "the body must be JSON, sent with Content-Type: application/json";
        expect_invalid(*v, post(create_body(), nullptr), kMedia, 415, "unsupported_media_type");
        expect_invalid(*v, post(create_body(), "text/plain"), kMedia, 415, "unsupported_media_type");
        expect_invalid(*v, post(create_body(), "application/x-www-form-urlencoded"), kMedia, 415,
                       "unsupported_media_type");
        expect_invalid(*v, post("", nullptr), kMedia, 415, "unsupported_media_type");
        expect_invalid(*v, "", "body: must be a JSON object (the body is empty)");
        expect_invalid(*v, " \r\n ", "body: must be a JSON object (the body is empty)");
        expect_invalid(*v, "[]", "body: must be a JSON object, not an array");
        expect_invalid(*v, "\"x\"", "body: must be a JSON object, not a string");
        expect_invalid(*v, "1", "body: must be a JSON object, not a number");
        expect_invalid(*v, "null", "body: must be a JSON object, not a null");
        expect_invalid(*v, "true", "body: must be a JSON object, not a boolean");
        expect_invalid(*v, "{", "body: malformed JSON at byte 1: unexpected end of input");
        expect_invalid(*v, "{\"idempotency_token\": \"x\",}", "body: malformed JSON at byte 26: trailing comma in object");
        expect_invalid(*v, "{\"a\":1} {}", "body: malformed JSON at byte 8: unexpected data after the JSON value");
        expect_invalid(*v, "{\"a\":01}", "body: malformed JSON at byte 5: leading zeros are not allowed in numbers");
        expect_invalid(*v, "{\"a\":NaN}", "body: malformed JSON at byte 5: unexpected character 'N'");
        expect_invalid(*v, "{'a':1}", "body: malformed JSON at byte 1: expected a string key in object");
        expect_invalid(*v, "{\"a\":\"\xc0\xaf\"}", "body: malformed JSON at byte 6: invalid UTF-8 in string");
        expect_invalid(*v, "{\"a\":\"\\ud800\"}", "body: malformed JSON at byte 6: high surrogate not followed by a low surrogate escape");
        expect_invalid(*v, "{\"a\":\"x\ty\"}", "body: malformed JSON at byte 7: control character in string (must be escaped)");
        expect_invalid(*v, "{\"idempotency_token\":\"a\",\"idempotency_token\":\"b\"}",
                       "body: malformed JSON at byte 25: duplicate key \"idempotency_token\"");
        expect_invalid(*v, "\xef\xbb\xbf{}", "body: malformed JSON at byte 0: unexpected byte 0xef");
        // Strings over 64 KiB are refused by the parser.
        expect_invalid(*v, "{\"a\":\"" + std::string(64 * 1024 + 1, 'x') + "\"}",
                       "body: malformed JSON at byte 5: string longer than 65536 bytes");
        // Nesting: the body plus at most 32 levels inside it.
        std::string deep = "{\"a\":" + std::string(33, '[') + std::string(33, ']') + "}";
        expect_invalid(*v, deep, "body: nested too deeply at byte 37 (at most 32 levels inside the body)");
        expect_invalid(*v, std::string(100000, '['), "body: nested too deeply at byte 33 (at most 32 levels inside the body)");
    }
}

void create_invalid(void**) {
    const Validate& v = kCreate;
    // Unknown fields, at every level, reported before anything else about that object.
    expect_invalid(v, "{\"foo\":1}", "unknown field \"foo\"");
    expect_invalid(v, create_body().insert(1, "\"Idempotency_token\":1,"), "unknown field \"Idempotency_token\"");
    expect_invalid(v, create_body(money("1").insert(1, "\"amount2\":1,")), "money_info: unknown field \"amount2\"");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\",\"recipient_id\":\"r\"}"),
                   "recipcient: unknown field \"recipient_id\"");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\",\"method_id\":\"m\"}"),
                   "recipcient: unknown field \"method_id\"");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"sender_id\":\"s\",\"name\":\"Bob\"}"),
                   "sender: unknown field \"name\"");
    expect_invalid(v, "{\"recipient\":{}}", "unknown field \"recipient\"");
    {
        // The key is quoted as decoded (json_error escapes it on the way out).
        Invalid invalid;
        assert_false(validate_create(post("{\"a\\u0000b\":1}"), invalid).has_value());
        assert_true(invalid.message == std::string("unknown field \"a\0b\"", 19));
    }
    // A long unknown key is cut in the message.
    {
        Invalid invalid;
        assert_false(validate_create(post("{\"" + std::string(1000, 'k') + "\":1}"), invalid).has_value());
        assert_true(invalid.message.size() < 100);
        assert_non_null(strstr(invalid.message.c_str(), "unknown field \"kkkk"));
    }

    // Missing fields, in the documented order.
    expect_invalid(v, "{}", "idempotency_token: required");
    expect_invalid(v, std::string("{\"idempotency_token\":\"") + kToken + "\"}", "money_info: required");
    expect_invalid(v, std::string("{\"idempotency_token\":\"") + kToken + "\",\"money_info\":" + money("1") + "}",
                   "recipcient: required");
    expect_invalid(v,
                   std::string("{\"idempotency_token\":\"") + kToken + "\",\"money_info\":" + money("1") +
                       ",\"recipcient\":{\"recipcient_id\":\"r\"}}",
                   "sender: required");
    expect_invalid(v, create_body("{}"), "money_info.method_id: required");
    expect_invalid(v, create_body("{\"method_id\":\"m\"}"), "money_info.currency: required");
    expect_invalid(v, create_body("{\"method_id\":\"m\",\"currency\":\"USD\"}"), "money_info.amount: required");
    expect_invalid(v, create_body(money("1"), "{}"), "recipcient.recipcient_id: required");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{}"), "sender.sender_id: required");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"method_id\":\"m\"}"),
                   "sender.sender_id: required");
    // null is no value for a required field.
    expect_invalid(v, "{\"idempotency_token\":null}", "idempotency_token: required");
    expect_invalid(v, create_body("null"), "money_info: required");
    expect_invalid(v, create_body(money("null")), "money_info.amount: required");

    // Wrong types.
    expect_invalid(v, "{\"idempotency_token\":123}", "idempotency_token: must be a string, not a number");
    expect_invalid(v, "{\"idempotency_token\":[\"x\"]}", "idempotency_token: must be a string, not an array");
    expect_invalid(v, create_body("[]"), "money_info: must be an object, not an array");
    expect_invalid(v, create_body("\"USD 1\""), "money_info: must be an object, not a string");
    expect_invalid(v, create_body("{\"method_id\":7,\"currency\":\"USD\",\"amount\":1}"),
                   "money_info.method_id: must be a string, not a number");
    expect_invalid(v, create_body(money("1", "840")), "money_info.currency: must be a string, not a number");
    expect_invalid(v, create_body(money("1", "{\"code\":\"USD\"}")), "money_info.currency: must be a string, not an object");
    expect_invalid(v, create_body(money("true")), "money_info.amount: must be a number or a decimal string, not a boolean");
    expect_invalid(v, create_body(money("[1]")), "money_info.amount: must be a number or a decimal string, not an array");
    expect_invalid(v, create_body(money("{\"value\":1}")),
                   "money_info.amount: must be a number or a decimal string, not an object");
    expect_invalid(v, create_body(money("1"), "\"r\""), "recipcient: must be an object, not a string");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":42}"),
                   "recipcient.recipcient_id: must be a string, not a number");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "[\"s\"]"), "sender: must be an object, not an array");
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"sender_id\":\"s\",\"method_id\":false}"),
                   "sender.method_id: must be a string, not a boolean");

    // Bad UUIDs.
    const char* kUuid = "idempotency_token: must be a UUID such as \"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"";
    for (const char* bad : {"", "x", "0b6f7a528c1e4c1b9f7e2f4a1d3c5e6f", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6",
                            "{0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f}", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6z"}) {
        expect_invalid(v, std::string("{\"idempotency_token\":\"") + bad + "\"}", kUuid);
    }

    // Bad ids.
    const char* kIdRule = ": must be 1-128 characters of A-Z a-z 0-9 . _ : -";
    expect_invalid(v, create_body("{\"method_id\":\"\",\"currency\":\"USD\",\"amount\":1}"),
                   (std::string("money_info.method_id") + kIdRule).c_str());
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"john@example.com\"}"),
                   (std::string("recipcient.recipcient_id") + kIdRule).c_str());
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"" + std::string(129, 'r') + "\"}"),
                   (std::string("recipcient.recipcient_id") + kIdRule).c_str());
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"sender_id\":\"4111 1111 1111 1111\"}"),
                   (std::string("sender.sender_id") + kIdRule).c_str());
    expect_invalid(v, create_body(money("1"), "{\"recipcient_id\":\"r\"}", "{\"sender_id\":\"s\",\"method_id\":\"\"}"),
                   (std::string("sender.method_id") + kIdRule).c_str());

    // Unknown currencies.
    const char* kHint = " (an upper-case ISO 4217 code such as \"USD\", or BTC, ETH, USDT)";
    for (const char* code : {"usd", "XAU", "XXX", "ABC", "", "US Dollar"}) {
        expect_invalid(v, create_body(money("1", std::string("\"") + code + "\"")),
                       (std::string("money_info.currency: unknown currency \"") + code + "\"" + kHint).c_str());
    }

    // Every amount failure, named with its field.
    struct Bad {
        const char* amount;
        const char* currency;
        const char* message;
    };
    const Bad bad[] = {
        {"0", "USD", "must be greater than zero"},
        {"-0", "USD", "must be greater than zero"},
        {"0.00", "USD", "must be greater than zero"},
        {"-1.5", "USD", "must be greater than zero"},
        {"\"0\"", "USD", "must be greater than zero"},
        {"\"-0\"", "USD", "must be greater than zero"},
        {"\"-1\"", "USD", "must be greater than zero"},
        {"1.001", "USD", "has more fraction digits than USD allows (at most 2)"},
        {"\"1.001\"", "USD", "has more fraction digits than USD allows (at most 2)"},
        {"1.5", "JPY", "must be a whole number of JPY (no fraction digits)"},
        {"0.000000001", "BTC", "has more fraction digits than BTC allows (at most 8)"},
        {"1e-999999999", "USD", "has more fraction digits than USD allows (at most 2)"},
        {"1000000000000000", "USD", "has more than 15 integer digits"},
        {"1e999999999", "USD", "has more than 15 integer digits"},
        {"\"1000000000000000\"", "USD", "has more than 15 integer digits"},
        {"\"\"", "USD", "must not be empty"},
        {"\" 1\"", "USD", "must not contain spaces"},
        {"\"+1\"", "USD", "must not have a sign"},
        {"\"1e2\"", "USD", "must not use exponent notation in a string (send a JSON number, or plain digits)"},
        {"\".5\"", "USD", "must have a digit before the decimal point (\"0.5\", not \".5\")"},
        {"\"1.\"", "USD", "must have a digit after the decimal point (\"1\" or \"1.0\", not \"1.\")"},
        {"\"01\"", "USD", "must not have leading zeros"},
        {"\"NaN\"", "USD", "must be a decimal number such as \"12.50\""},
        {"\"Infinity\"", "USD", "must be a decimal number such as \"12.50\""},
        {"\"1,50\"", "USD", "must be a decimal number such as \"12.50\""},
    };
    for (const Bad& b : bad) {
        expect_invalid(v, create_body(money(b.amount, std::string("\"") + b.currency + "\"")),
                       (std::string("money_info.amount: ") + b.message).c_str());
    }

    // The first problem wins: the currency is checked before the amount, the token before all.
    expect_invalid(v, create_body(money("-1", "\"usd\"")),
                   (std::string("money_info.currency: unknown currency \"usd\"") + kHint).c_str());
    expect_invalid(v, "{\"money_info\":[],\"idempotency_token\":\"x\"}", kUuid);
    expect_invalid(v, "{\"money_info\":[],\"zzz\":1,\"idempotency_token\":\"x\"}", "unknown field \"zzz\"");
}

void edit_rules(void**) {
    Invalid invalid;
    std::optional<EditRequest> r = validate_edit(
        post(std::string("{\"idempotency_token\":\"") + kToken + "\",\"money_info\":" + money("\"12.50\"") + "}"), invalid);
    assert_true(r.has_value());
    assert_string_equal(r->idempotency_token.c_str(), kToken);
    assert_string_equal(r->money.method_id.c_str(), "m-1");
    assert_string_equal(r->money.amount.minor_units.c_str(), "1250");
    assert_string_equal(str(r->money.amount.currency->code).c_str(), "USD");

    const Validate& v = kEdit;
    const std::string token = std::string("\"idempotency_token\":\"") + kToken + "\"";
    expect_invalid(v, "{}", "idempotency_token: required");
    expect_invalid(v, "{" + token + "}", "money_info: required");
    expect_invalid(v, "{" + token + ",\"money_info\":" + money("1") + ",\"recipcient\":{}}", "unknown field \"recipcient\"");
    expect_invalid(v, "{" + token + ",\"money_info\":" + money("1") + ",\"reason\":\"other\"}", "unknown field \"reason\"");
    expect_invalid(v, "{" + token + ",\"money_info\":" + money("0.001") + "}",
                   "money_info.amount: has more fraction digits than USD allows (at most 2)");
    expect_invalid(v, "{" + token + ",\"money_info\":" + money("1", "\"EURO\"") + "}",
                   "money_info.currency: unknown currency \"EURO\" (an upper-case ISO 4217 code such as \"USD\", or BTC, "
                   "ETH, USDT)");
    expect_invalid(v, "{" + token + ",\"money_info\":{\"currency\":\"USD\",\"amount\":1}}", "money_info.method_id: required");
    expect_invalid(v, "{\"idempotency_token\":\"nope\",\"money_info\":" + money("1") + "}",
                   "idempotency_token: must be a UUID such as \"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"");
}

void cancel_rules(void**) {
    const char* names[] = {"user_request", "merchant_request", "expired", "fraud_suspected", "other"};
    const CancelReason reasons[] = {CancelReason::UserRequest, CancelReason::MerchantRequest, CancelReason::Expired,
                                    CancelReason::FraudSuspected, CancelReason::Other};
    for (std::size_t i = 0; i < 5; ++i) {
        Invalid invalid;
        std::optional<CancelRequest> r = validate_cancel(
            post(std::string("{\"reason\":\"") + names[i] + "\",\"idempotency_token\":\"" + kToken + "\"}"), invalid);
        assert_true(r.has_value());
        assert_string_equal(r->idempotency_token.c_str(), kToken);
        assert_true(r->reason == reasons[i]);
    }
    const Validate& v = kCancel;
    const std::string token = std::string("\"idempotency_token\":\"") + kToken + "\"";
    const char* kReasons = "reason: must be one of user_request, merchant_request, expired, fraud_suspected, other";
    expect_invalid(v, "{}", "idempotency_token: required");
    expect_invalid(v, "{" + token + "}", "reason: required");
    expect_invalid(v, "{" + token + ",\"reason\":null}", "reason: required");
    expect_invalid(v, "{" + token + ",\"reason\":1}", "reason: must be a string, not a number");
    for (const char* bad : {"", "User_Request", "because", "user request", "fraud"}) {
        expect_invalid(v, "{" + token + ",\"reason\":\"" + bad + "\"}", kReasons);
    }
    expect_invalid(v, "{" + token + ",\"reason\":\"other\",\"comment\":\"x\"}", "unknown field \"comment\"");
    expect_invalid(v, "{\"reason\":\"other\",\"idempotency_token\":\"\"}",
                   "idempotency_token: must be a UUID such as \"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"");
}

void accept_rules(void**) {
    const std::string token = std::string("\"idempotency_token\":\"") + kToken + "\"";
    struct Case {
        std::string body;
        const char* stored;
    };
    const Case ok[] = {
        {"{" + token + "}", "{}"},
        {"{" + token + ",\"accept_info\":null}", "{}"},
        {"{" + token + ",\"accept_info\":{}}", "{}"},
        // Re-serialized compactly, in document order, numbers as written.
        {"{\"accept_info\": { \"z\" : [1.50, {\"b\":null}], \"a\": \"\\u0041\\n\" }, " + token + "}",
         "{\"z\":[1.50,{\"b\":null}],\"a\":\"A\\n\"}"},
    };
    for (const Case& c : ok) {
        Invalid invalid;
        std::optional<AcceptRequest> r = validate_accept(post(c.body), invalid);
        if (!r) print_error("%s: %s\n", c.body.c_str(), invalid.message.c_str());
        assert_true(r.has_value());
        assert_string_equal(r->idempotency_token.c_str(), kToken);
        assert_string_equal(r->accept_info_json.c_str(), c.stored);
    }

    // accept_info may be 32 levels deep (itself included), not 33.
    auto nested = [](int depth) {
        std::string s;
        for (int i = 0; i < depth; ++i) s += "{\"k\":";
        s += "1";
        for (int i = 0; i < depth; ++i) s += "}";
        return s;
    };
    {
        Invalid invalid;
        std::optional<AcceptRequest> r = validate_accept(post("{" + token + ",\"accept_info\":" + nested(32) + "}"), invalid);
        assert_true(r.has_value());
        assert_string_equal(r->accept_info_json.c_str(), nested(32).c_str());
    }
    const std::string prefix = "{" + token + ",\"accept_info\":";
    expect_invalid(kAccept, prefix + nested(33) + "}",
                   ("body: nested too deeply at byte " + std::to_string(prefix.size() + 5 * 32) +
                    " (at most 32 levels inside the body)")
                       .c_str());

    const Validate& v = kAccept;
    expect_invalid(v, "{}", "idempotency_token: required");
    expect_invalid(v, "{\"accept_info\":{}}", "idempotency_token: required");
    expect_invalid(v, "{" + token + ",\"accept_info\":[]}", "accept_info: must be an object, not an array");
    expect_invalid(v, "{" + token + ",\"accept_info\":\"x\"}", "accept_info: must be an object, not a string");
    expect_invalid(v, "{" + token + ",\"accept_info\":1}", "accept_info: must be an object, not a number");
    expect_invalid(v, "{" + token + ",\"accept_info\":{},\"extra\":1}", "unknown field \"extra\"");
    // Inside accept_info anything goes, but JSON rules still hold.
    expect_invalid(v, "{" + token + ",\"accept_info\":{\"a\":1,\"a\":2}}",
                   ("body: malformed JSON at byte " + std::to_string(prefix.size() + 7) + ": duplicate key \"a\"").c_str());
    // What PostgreSQL's jsonb cannot store is refused, not a 500.
    expect_invalid(v, prefix + "{\"note\":\"a\\u0000b\"}}", "accept_info: text must not contain U+0000");
    expect_invalid(v, prefix + "{\"\\u0000\":1}}", "accept_info: keys must not contain U+0000");
    expect_invalid(v, prefix + "{\"n\":[1e999999]}}", "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude");
    expect_invalid(v, prefix + "{\"n\":-1e-999999}}", "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude");
    expect_invalid(v, prefix + "{\"n\":1e99999999999999999999}}",
                   "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude");
    {
        Invalid invalid;
        assert_true(validate_accept(post(prefix + "{\"n\":1e300,\"m\":-2.5e-300}}"), invalid).has_value());
    }
    // Found by fuzz_payment_body ({"note":0e-3505550503}): numeric reads a number as written, so
    // a zero with a large exponent, or trailing zeros past its scale, made the insert fail (a 500)
    // although the canonical form ("0", "1") looked harmless.
    const std::string fraction = "accept_info: numbers may have at most 16000 fraction digits (as written, counting the exponent)";
    const std::string exponent = "accept_info: number exponents may be at most 16000 in magnitude";
    expect_invalid(v, prefix + "{\"n\":0e-3505550503}}", exponent.c_str());
    expect_invalid(v, prefix + "{\"n\":0e99999999999}}", exponent.c_str());
    expect_invalid(v, prefix + "{\"n\":[0E+16001]}}", exponent.c_str());
    expect_invalid(v, prefix + "{\"n\":0.0e-16000}}", fraction.c_str());
    expect_invalid(v, prefix + "{\"n\":1." + std::string(16001, '0') + "}}", fraction.c_str());
    expect_invalid(v, prefix + "{\"n\":0." + std::string(16001, '1') + "}}", fraction.c_str());
    expect_invalid(v, prefix + "{\"n\":0." + std::string(15990, '1') + "e-11}}", fraction.c_str());
    for (const std::string& fine : {std::string("0e-16000"), std::string("0e16000"), "1." + std::string(16000, '0'),
                                    "0." + std::string(16000, '1'), std::string("12.5e-200"),
                                    "0." + std::string(400, '0') + "1e400"}) {
        Invalid invalid;
        if (!validate_accept(post(prefix + "{\"n\":" + fine + "}}"), invalid)) {
            print_error("%.40s...: %s\n", fine.c_str(), invalid.message.c_str());
            fail();
        }
    }
}

// extra_charge and refund share one body: {idempotency_token, amount}; the amount is read in the
// payment's currency by amount_in() once the payment is known.
void money_operation_rules(void**) {
    const std::string token = std::string("\"idempotency_token\":\"") + kToken + "\"";
    struct Good {
        std::string amount;   // as it stands in the body
        bool is_number;
        const char* text;     // AmountText.text
        const char* code;
        const char* minor;    // amount_in(...) in `code`
    };
    const Good good[] = {
        {"\"12.50\"", false, "12.50", "USD", "1250"},
        {"\"12.5\"", false, "12.5", "USD", "1250"},
        {"\"7\"", false, "7", "USD", "700"},
        {"12.50", true, "12.50", "USD", "1250"},
        {"1.5", true, "1.5", "USD", "150"},
        {"15e-1", true, "15e-1", "USD", "150"},
        {"3", true, "3", "USD", "300"},
        {"1.500", true, "1.500", "USD", "150"},           // trailing zeros beyond the exponent
        {"150", true, "150", "JPY", "150"},
        {"\"0.00000001\"", false, "0.00000001", "BTC", "1"},
        {"\"1.000000000000000001\"", false, "1.000000000000000001", "ETH", "1000000000000000001"},
    };
    for (const Validate& v : {kExtraCharge, kRefund}) {
        for (const Good& g : good) {
            Invalid invalid;
            ipc::Request request = post("{\"amount\":" + g.amount + "," + token + "}");
            assert_true(v(request, invalid));
            std::optional<MoneyOperationRequest> r = validate_refund(request, invalid);
            assert_true(r.has_value());
            assert_string_equal(r->idempotency_token.c_str(), kToken);
            assert_string_equal(r->amount.text.c_str(), g.text);
            assert_int_equal(r->amount.is_number, g.is_number);
            std::optional<Amount> a = amount_in(r->amount, *find_currency(g.code), invalid);
            if (!a) print_error("%s in %s: %s\n", g.amount.c_str(), g.code, invalid.message.c_str());
            assert_true(a.has_value());
            assert_string_equal(a->minor_units.c_str(), g.minor);
            assert_string_equal(str(a->currency->code).c_str(), g.code);
        }
    }
    {
        Invalid invalid;
        std::optional<ExtraChargeRequest> r = validate_extra_charge(post("{" + token + ",\"amount\":\"1.00\"}"), invalid);
        assert_true(r.has_value());
        assert_string_equal(r->amount.text.c_str(), "1.00");
    }

    // The body: unknown or missing fields, wrong types, the token.
    for (const Validate& v : {kExtraCharge, kRefund}) {
        expect_invalid(v, "{}", "idempotency_token: required");
        expect_invalid(v, "{\"amount\":\"1.00\"}", "idempotency_token: required");
        expect_invalid(v, "{" + token + "}", "amount: required");
        expect_invalid(v, "{" + token + ",\"amount\":null}", "amount: required");
        expect_invalid(v, "{" + token + ",\"amount\":true}", "amount: must be a number or a decimal string, not a boolean");
        expect_invalid(v, "{" + token + ",\"amount\":[1]}", "amount: must be a number or a decimal string, not an array");
        expect_invalid(v, "{" + token + ",\"amount\":{\"value\":1}}",
                       "amount: must be a number or a decimal string, not an object");
        expect_invalid(v, "{" + token + ",\"amount\":1,\"currency\":\"USD\"}", "unknown field \"currency\"");
        expect_invalid(v, "{" + token + ",\"amount\":1,\"reason\":\"other\"}", "unknown field \"reason\"");
        expect_invalid(v, "{" + token + ",\"money_info\":" + money("1") + "}", "unknown field \"money_info\"");
        expect_invalid(v, "{\"idempotency_token\":\"nope\",\"amount\":1}",
                       "idempotency_token: must be a UUID such as \"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"");
        expect_invalid(v, "{\"idempotency_token\":7,\"amount\":1}", "idempotency_token: must be a string, not a number");
        expect_invalid(v, "[]", "body: must be a JSON object, not an array");
        expect_invalid(v, "", "body: must be a JSON object (the body is empty)");
        expect_invalid(v, post("{" + token + ",\"amount\":1}", "text/plain"),
                       "the body must be JSON, sent with Content-Type: application/json", 415, "unsupported_media_type");
    }

    // The amount in the payment's currency: the rules of money_info.amount, named "amount".
    struct Bad {
        const char* amount;
        bool is_number;
        const char* code;
        const char* message;
    };
    const Bad bad[] = {
        {"0.001", true, "USD", "amount: has more fraction digits than USD allows (at most 2)"},
        {"12.505", false, "USD", "amount: has more fraction digits than USD allows (at most 2)"},
        {"1.5", true, "JPY", "amount: must be a whole number of JPY (no fraction digits)"},
        {"0.000000001", false, "BTC", "amount: has more fraction digits than BTC allows (at most 8)"},
        {"0", true, "USD", "amount: must be greater than zero"},
        {"0.00", false, "USD", "amount: must be greater than zero"},
        {"-1", true, "USD", "amount: must be greater than zero"},
        {"-5.00", false, "USD", "amount: must be greater than zero"},
        {"+5", false, "USD", "amount: must not have a sign"},
        {"abc", false, "USD", "amount: must be a decimal number such as \"12.50\""},
        {"1e2", false, "USD", "amount: must not use exponent notation in a string (send a JSON number, or plain digits)"},
        {"", false, "USD", "amount: must not be empty"},
        {"1000000000000000", true, "USD", "amount: has more than 15 integer digits"},
    };
    for (const Bad& b : bad) {
        Invalid invalid;
        std::optional<Amount> a = amount_in(AmountText{b.amount, b.is_number}, *find_currency(b.code), invalid);
        if (a || invalid.message != b.message) {
            print_error("%s in %s: got \"%s\"\n", b.amount, b.code, invalid.message.c_str());
        }
        assert_false(a.has_value());
        assert_int_equal(invalid.status, 400);
        assert_string_equal(invalid.code.c_str(), "validation_error");
        assert_string_equal(invalid.message.c_str(), b.message);
    }
}

void refund_too_large_names_what_is_left(void**) {
    assert_string_equal(refund_too_large("4000", "2750", *find_currency("USD")).c_str(),
                        "amount: only 12.50 USD of the captured 40.00 USD can still be refunded");
    assert_string_equal(refund_too_large("4000", "4000", *find_currency("USD")).c_str(),
                        "amount: only 0.00 USD of the captured 40.00 USD can still be refunded");
    assert_string_equal(refund_too_large("500", "0", *find_currency("JPY")).c_str(),
                        "amount: only 500 JPY of the captured 500 JPY can still be refunded");
    assert_string_equal(refund_too_large("1000000000000000001", "1", *find_currency("ETH")).c_str(),
                        "amount: only 1.000000000000000000 ETH of the captured 1.000000000000000001 ETH can still be "
                        "refunded");
}

}  // namespace

// The state machine has one truth in two places: the daemon's rules and PostgreSQL's
// payment_transitions (sql/0004). Every status change a rule can make must be in the table (or
// PostgreSQL would refuse it at run time), and every row of the table must be some rule's.
void rules_and_database_transitions_agree(void**) {
    std::ifstream in(std::string(PAYGATE_SOURCE_DIR) + "/sql/0004_provider_engine.sql");
    assert_true(in.good());
    std::string sql((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t start = sql.find("INSERT INTO payment_transitions");
    assert_true(start != std::string::npos);
    std::size_t end = sql.find(';', start);
    std::set<std::pair<std::string, std::string>> table;
    std::regex row("\\('([a-z_]+)',\\s*'([a-z_]+)'\\)");
    std::string values = sql.substr(start, end - start);
    for (std::sregex_iterator it(values.begin(), values.end(), row), stop; it != stop; ++it) {
        table.emplace((*it)[1].str(), (*it)[2].str());
    }
    assert_int_equal(table.size(), 5);

    using S = PaymentStatus;
    using A = Action;
    std::set<std::pair<std::string, std::string>> made;
    for (S from : {S::Created, S::BankProcessing, S::Completed, S::Declined, S::Cancelled, S::Reversed}) {
        for (A action : {A::Edit, A::Cancel, A::Accept, A::ProviderCompleted, A::ProviderDeclined, A::ReversalCompleted,
                         A::ExtraCharge, A::Refund}) {
            for (bool reversal_requested : {false, true}) {
                std::optional<Transition> t = transition(from, action, reversal_requested);
                if (!t || t->to == from) continue;
                std::pair<std::string, std::string> change{std::string(status_name(from)), std::string(status_name(t->to))};
                if (!table.count(change)) {
                    std::fprintf(stderr, "%s: %s -> %s is not in payment_transitions\n",
                                 std::string(action_name(action)).c_str(), change.first.c_str(), change.second.c_str());
                    fail();
                }
                made.insert(change);
            }
        }
    }
    for (const auto& change : table) {
        if (!made.count(change)) {
            std::fprintf(stderr, "payment_transitions has %s -> %s, which no rule makes\n", change.first.c_str(),
                         change.second.c_str());
            fail();
        }
    }
}

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names),
        cmocka_unit_test(every_transition),
        cmocka_unit_test(content_types),
        cmocka_unit_test(uuids),
        cmocka_unit_test(opaque_ids),
        cmocka_unit_test(create_valid),
        cmocka_unit_test(content_type_and_body),
        cmocka_unit_test(create_invalid),
        cmocka_unit_test(edit_rules),
        cmocka_unit_test(cancel_rules),
        cmocka_unit_test(accept_rules),
        cmocka_unit_test(money_operation_rules),
        cmocka_unit_test(refund_too_large_names_what_is_left),
        cmocka_unit_test(rules_and_database_transitions_agree),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
