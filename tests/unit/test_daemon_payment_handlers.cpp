// The payment handlers' gates that come before any SQL: principal, and (for reads, and for
// changes whose body carries no idempotency key) path id and body validation; and 503 when
// PostgreSQL cannot be reached, which includes any change that has a key: its answer, even a
// refusal, is recorded in PostgreSQL first (docs/idempotency.md). (With a database: tests/e2e.)
#include <chrono>
#include <memory>
#include <string>

#include "paygate/routes.hpp"
#include "paygated/handlers.hpp"
#include "paygated/log.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using namespace paygate;
using namespace paygate::daemon;

namespace {

const char* const kPaymentRoutes[] = {"payment.create", "payment.retrieve", "payment.status",
                                      "payment.cancel", "payment.edit",     "payment.accept",
                                      "payment.extra_charge", "payment.refund"};
const char* const kId = "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b";
const char* const kCreateBody =
    "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\","
    "\"money_info\":{\"method_id\":\"card-7781\",\"currency\":\"BTC\",\"amount\":1.0},"
    "\"recipcient\":{\"recipcient_id\":\"merchant-42\"},\"sender\":{\"sender_id\":\"user-1001\"}}";
const char* const kCancelBody = "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\",\"reason\":\"other\"}";

ipc::Request request(const char* route, const char* principal, const char* payment_id = nullptr,
                     const char* body = nullptr) {
    ipc::Request r;
    r.id = 21;
    r.route = route;
    r.request_id = "rid-pay";
    r.principal = principal;
    if (payment_id) r.params.emplace_back("payment_id", payment_id);
    if (body) {
        r.method = ipc::Method::Post;
        r.headers.emplace_back("content-type", "application/json");
        r.body = body;
    }
    return r;
}

// A worker whose database refuses connections; `gate` records whether a connect was attempted.
struct Fixture {
    std::shared_ptr<RetryGate> gate = std::make_shared<RetryGate>(std::chrono::milliseconds(2000));
    Db db{"host=127.0.0.1 port=1 dbname=none user=none", gate, 4};
    WorkerContext ctx{4, db};
    bool tried_database() { return !gate->ready(); }
};

std::string error_body(const char* code, const char* message) {
    return std::string("{\"code\":\"") + code + "\",\"message\":\"" + message + "\"}";
}

void expect(const ipc::Reply& r, int status, const char* code, const char* message) {
    assert_int_equal(r.id, 21);
    assert_int_equal(r.status, status);
    assert_string_equal(r.body.c_str(), error_body(code, message).c_str());
}

void expect_code(const ipc::Reply& r, int status, const char* code) {
    assert_int_equal(r.status, status);
    assert_true(r.body.find(std::string("\"code\":\"") + code + "\"") != std::string::npos);
}

void routes_have_worker_handlers(void**) {
    for (const char* name : kPaymentRoutes) {
        const HandlerEntry* e = find_handler(name);
        assert_non_null(e);
        assert_true(e->runs == Runs::OnWorker);
    }
}

void principal_parsing(void**) {
    for (const char* ok : {"1", "12", "900", "999999999999999999"}) {
        std::optional<std::string> id = client_principal(ok);
        assert_true(id.has_value());
        assert_string_equal(id->c_str(), ok);
    }
    for (const char* bad : {"", "0", "012", "-1", "+1", "1a", " 1", "1 ", "client:1", "1000000000000000000"}) {
        assert_false(client_principal(bad).has_value());
    }
}

void no_principal_is_403(void**) {
    log::set_level(LogLevel::Error);
    Fixture f;
    for (const char* principal : {"", "abc", "0", "-3"}) {
        expect(dispatch(request("payment.create", principal, nullptr, kCreateBody), f.ctx), 403, "acces_error",
               "access denied");
        expect(dispatch(request("payment.retrieve", principal, kId), f.ctx), 403, "acces_error", "access denied");
        expect(dispatch(request("payment.status", principal, kId), f.ctx), 403, "acces_error", "access denied");
        expect(dispatch(request("payment.cancel", principal, kId, kCancelBody), f.ctx), 403, "acces_error",
               "access denied");
        // The principal is checked before anything else, even a malformed id.
        expect(dispatch(request("payment.edit", principal, "nope", "{}"), f.ctx), 403, "acces_error", "access denied");
    }
}

void malformed_payment_id_is_400(void**) {
    Fixture f;
    for (const char* route : {"payment.retrieve", "payment.status"}) {
        for (const char* id : {"nope", "6f1c2b9e0d7a4f3e8b5c1a2d3e4f5a6b", "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6", ""}) {
            expect(dispatch(request(route, "5", id), f.ctx), 400, "validation_error", "payment_id: must be a UUID");
        }
    }
    // A change without an idempotency key is refused before any SQL, the path id first.
    for (const char* route : {"payment.cancel", "payment.edit", "payment.accept", "payment.extra_charge",
                              "payment.refund"}) {
        expect(dispatch(request(route, "5", "x", "{}"), f.ctx), 400, "validation_error", "payment_id: must be a UUID");
    }
    assert_false(f.tried_database());
}

void keyed_refusals_are_recorded_first(void**) {
    // With a key, a refusal is the key's recorded outcome: no database, no answer but 503.
    Fixture f;
    const char* message = "the payment database is unavailable; retry later";
    for (const char* route : {"payment.cancel", "payment.edit", "payment.accept", "payment.extra_charge",
                              "payment.refund"}) {
        ipc::Reply r = dispatch(request(route, "5", "x", kCancelBody), f.ctx);
        expect(r, 503, "service_unavailable", message);
        for (const auto& [name, value] : r.headers) assert_true(name != "x-paygate-idempotency");
    }
    assert_true(f.tried_database());
}

void invalid_bodies_are_refused_before_the_database(void**) {
    Fixture f;
    // validate_* decides the message; here only that it is a 4xx and not a 503 (no DB was asked).
    expect_code(dispatch(request("payment.create", "5", nullptr, "{}"), f.ctx), 400, "validation_error");
    expect_code(dispatch(request("payment.create", "5", nullptr, "not json"), f.ctx), 400, "validation_error");
    expect_code(dispatch(request("payment.cancel", "5", kId, "{\"reason\":\"other\"}"), f.ctx), 400,
                "validation_error");
    expect_code(dispatch(request("payment.edit", "5", kId, "{\"x\":1}"), f.ctx), 400, "validation_error");
    expect_code(dispatch(request("payment.accept", "5", kId, "[]"), f.ctx), 400, "validation_error");
    expect_code(dispatch(request("payment.extra_charge", "5", kId, "{\"amount\":\"1.00\"}"), f.ctx), 400,
                "validation_error");
    expect_code(dispatch(request("payment.refund", "5", kId, "{\"amount\":1}"), f.ctx), 400, "validation_error");
    ipc::Request wrong_type = request("payment.cancel", "5", kId, "{\"reason\":\"other\"}");
    wrong_type.headers = {{"content-type", "text/plain"}};
    expect_code(dispatch(wrong_type, f.ctx), 415, "unsupported_media_type");
    assert_false(f.tried_database());
}

void database_unreachable_is_503(void**) {
    Fixture f;
    const char* message = "the payment database is unavailable; retry later";
    expect(dispatch(request("payment.create", "5", nullptr, kCreateBody), f.ctx), 503, "service_unavailable", message);
    expect(dispatch(request("payment.retrieve", "5", kId), f.ctx), 503, "service_unavailable", message);
    expect(dispatch(request("payment.status", "5", kId), f.ctx), 503, "service_unavailable", message);
    expect(dispatch(request("payment.cancel", "5", kId, kCancelBody), f.ctx), 503, "service_unavailable", message);
    expect(dispatch(request("payment.accept", "5", kId,
                            "{\"idempotency_token\":\"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"}"),
                    f.ctx),
           503, "service_unavailable", message);
    assert_true(f.tried_database());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_have_worker_handlers),
        cmocka_unit_test(principal_parsing),
        cmocka_unit_test(no_principal_is_403),
        cmocka_unit_test(malformed_payment_id_is_400),
        cmocka_unit_test(keyed_refusals_are_recorded_first),
        cmocka_unit_test(invalid_bodies_are_refused_before_the_database),
        cmocka_unit_test(database_unreachable_is_503),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
