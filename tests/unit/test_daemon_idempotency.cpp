// paygated's idempotency wrapper without a database: what becomes of each outcome, the exact
// bytes and headers of replayed / in-progress / reused answers, and the janitor's start and
// prompt stop. (The protocol against PostgreSQL is exercised end to end in tests/e2e.)
#include <chrono>
#include <memory>
#include <string>

#include "paygate/idempotency.hpp"
#include "paygate/json_error.hpp"
#include "paygated/handlers.hpp"
#include "paygated/idempotent.hpp"
#include "paygated/janitor.hpp"
#include "paygated/log.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using namespace paygate;
using namespace paygate::daemon;

namespace {

const char* const kUnreachable = "host=127.0.0.1 port=1 dbname=none user=none connect_timeout=1";

const std::string* header(const ipc::Reply& r, std::string_view name) {
    const std::string* found = nullptr;
    for (const auto& [key, value] : r.headers) {
        if (key == name) {
            assert_null(found);  // at most once
            found = &value;
        }
    }
    return found;
}

void which_outcomes_are_kept(void**) {
    for (std::uint16_t st : {200, 201, 204, 299}) assert_true(keep_outcome(st) == Keep::Work);
    for (std::uint16_t st : {400, 401, 404, 405, 409, 413, 415, 422, 499}) assert_true(keep_outcome(st) == Keep::Refusal);
    // 403 is an access decision, made afresh on every attempt; 5xx means nothing was committed.
    for (std::uint16_t st : {403, 500, 502, 503, 504, 599, 100, 302}) assert_true(keep_outcome(st) == Keep::Nothing);
}

void in_progress_is_409_and_not_recorded(void**) {
    ipc::Reply r = in_progress_reply(7);
    assert_int_equal(r.id, 7);
    assert_int_equal(r.status, 409);
    assert_true(r.body.rfind("{\"code\":\"idempotency_in_progress\",\"message\":\"", 0) == 0);
    assert_non_null(header(r, "content-type"));
    // Not an outcome of the key: the module must not cache it.
    assert_null(header(r, idempotency::kOutcomeHeader));
    assert_null(header(r, idempotency::kReplayedHeader));
}

void key_reused_is_422_with_the_modules_bytes(void**) {
    ipc::Reply r = key_reused_reply(8);
    assert_int_equal(r.status, 422);
    // Byte for byte what the module answers from its zone for the same case.
    assert_string_equal(r.body.c_str(),
                        ipc::json_error(idempotency::kKeyReusedCode, idempotency::kKeyReusedMessage).c_str());
    assert_true(r.body.find("\"code\":\"idempotency_key_reused\"") != std::string::npos);
    assert_null(header(r, idempotency::kOutcomeHeader));
}

void replay_is_byte_identical_with_headers(void**) {
    StoredOutcome stored;
    stored.request_hash = std::string(64, 'a');
    stored.status = 200;
    // Exact number lexemes, escapes and non-ASCII text come back as they were sent.
    stored.body = "{\"transaction_id\":\"6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b\",\"amount\":1.50,\"x\":\"\\u00e9\xc3\xa9\"}";
    stored.expires_in_ms = 4321;
    ipc::Reply r = replayed_reply(9, stored);
    assert_int_equal(r.id, 9);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.record_expires_in_ms, 4321);   // the module's copy lives no longer than the row
    assert_true(r.body == stored.body);
    const std::string* ct = header(r, "content-type");
    assert_non_null(ct);
    assert_string_equal(ct->c_str(), "application/json");
    const std::string* replayed = header(r, idempotency::kReplayedHeader);
    assert_non_null(replayed);
    assert_string_equal(replayed->c_str(), "true");
    const std::string* outcome = header(r, idempotency::kOutcomeHeader);
    assert_non_null(outcome);
    assert_string_equal(outcome->c_str(), std::string(idempotency::kOutcomeReplayed).c_str());
    assert_int_equal(r.headers.size(), 3);

    stored.status = 404;  // a recorded refusal replays with its own status
    stored.body = "{\"code\":\"not_found\",\"message\":\"payment 6F1C2B9E-0D7A-4F3E-8B5C-1A2D3E4F5A6B not found\"}";
    r = replayed_reply(10, stored);
    assert_int_equal(r.status, 404);
    assert_true(r.body == stored.body);
}

void worker_context_defaults(void**) {
    Db db(kUnreachable, std::make_shared<RetryGate>(std::chrono::milliseconds(2000)), 1, 10000);
    WorkerContext ctx{1, db};
    assert_int_equal(ctx.idempotency_retention_s, 86400);
    assert_true(ctx.test_fault == TestFault::None);
}

void keyless_change_never_asks_the_database(void**) {
    // No idempotency_token: refused by validation as before, without a connect attempt.
    auto gate = std::make_shared<RetryGate>(std::chrono::milliseconds(2000));
    Db db(kUnreachable, gate, 1, 10000);
    WorkerContext ctx{1, db};
    ipc::Request r;
    r.id = 3;
    r.route = "payment.create";
    r.principal = "5";
    r.method = ipc::Method::Post;
    r.headers.emplace_back("content-type", "application/json");
    r.body = "{\"money_info\":{}}";
    ipc::Reply reply = dispatch(r, ctx);
    assert_int_equal(reply.status, 400);
    assert_null(header(reply, idempotency::kOutcomeHeader));
    assert_true(gate->ready());  // no failed connect recorded
}

void janitor_without_database(void**) {
    JanitorSettings settings;
    settings.database = kUnreachable;
    settings.interval = std::chrono::hours(1);
    Janitor janitor(settings);
    Db db(kUnreachable, std::make_shared<RetryGate>(std::chrono::milliseconds(2000)), "janitor", 10000);
    assert_int_equal(janitor.purge_once(db), -1);
}

void janitor_stops_promptly(void**) {
    JanitorSettings settings;
    settings.database = kUnreachable;
    settings.interval = std::chrono::hours(1);
    auto started = std::chrono::steady_clock::now();
    {
        Janitor janitor(settings);
        janitor.start();
        janitor.start();  // once
        janitor.stop();
        janitor.stop();   // idempotent
    }
    {
        Janitor never_started(settings);
        never_started.stop();
    }
    {
        Janitor janitor(settings);
        janitor.start();
        // destroyed while waiting for its next pass: the destructor stops it
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    assert_true(ms.count() < 5000);  // not the hour of the interval (a connect attempt takes < 1 s)
}

}  // namespace

int main() {
    log::set_level(LogLevel::Error);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(which_outcomes_are_kept),
        cmocka_unit_test(in_progress_is_409_and_not_recorded),
        cmocka_unit_test(key_reused_is_422_with_the_modules_bytes),
        cmocka_unit_test(replay_is_byte_identical_with_headers),
        cmocka_unit_test(worker_context_defaults),
        cmocka_unit_test(keyless_change_never_asks_the_database),
        cmocka_unit_test(janitor_without_database),
        cmocka_unit_test(janitor_stops_promptly),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
