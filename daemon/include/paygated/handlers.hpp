// Request handlers and the one table that maps a route name to its handler.
//
// Adding a feature: write its handlers in a handlers_<area>.cpp, declare them below, and add one
// line per route to the table in handlers.cpp (the route itself lives in ipc's routes.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <jansson.h>

#include "paygate/ipc.hpp"
#include "paygate/json.hpp"
#include "paygated/config.hpp"
#include "paygated/db.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

class TokenLog;   // token_feed.hpp
namespace zooticket {
struct Settings;   // zooticket.hpp
}
class DaemonMetrics;   // metrics.hpp

// What a handler gets besides the request: state owned by the worker thread running it.
struct WorkerContext {
    int worker = 0;
    Db& db;
    unsigned idempotency_retention_s = 86400;   // config idempotency_retention_s
    TestFault test_fault = TestFault::None;     // $PAYGATED_TEST_FAULT (test-only)
    // provider_route rules: which provider charges an accepted payment (provider.hpp).
    std::vector<std::pair<std::string, std::string>> provider_routes = {};
    // Rows read ahead for a batch of payment.status requests (prefetch_for_batch), by payment id;
    // valid only while that batch is being served, then cleared.
    std::unordered_map<std::string, std::optional<PaymentStatusRow>> prefetched_status = {};
    std::size_t batch = 1;   // requests in the job being served (its log lines say batch=N when > 1)
    // The token feed's log (token_feed.hpp): set on the broker thread, which serves auth.tokens.
    const TokenLog* tokens = nullptr;
    // The ZooTicket merchant API's keys and settings (zooticket.hpp); null in unit tests.
    std::shared_ptr<const zooticket::Settings> zooticket = nullptr;
    // The daemon's counters (metrics.hpp); null in tests.
    DaemonMetrics* metrics = nullptr;
};

// Routes whose requests a worker may take several at a time (the broker batches consecutive
// queued requests of one such route), reading their rows in one round trip.
bool batchable(std::string_view route);
// Reads ahead, in one pipeline, what a batch of `requests` (one batchable route) will need.
// Failures are not errors here: each request then reads for itself.
void prefetch_for_batch(const std::vector<ipc::Request>& requests, WorkerContext& ctx);

using Handler = ipc::Reply (*)(const ipc::Request& request, WorkerContext& ctx);

// Where a handler runs. Inline handlers run on the broker thread the moment their request
// arrives, skipping the hand-off to a worker: only for handlers that never block (no database,
// no I/O, no locks), because while one runs no other request is read or answered.
enum class Runs { OnWorker, Inline };

struct HandlerEntry {
    std::string_view route;  // a route name from routes.hpp
    Handler handler;
    Runs runs = Runs::OnWorker;
};

// Every route paygated serves.
const std::vector<HandlerEntry>& handler_table();

// The entry of `route` in handler_table(), or nullptr.
const HandlerEntry* find_handler(std::string_view route);

// Runs the handler of request.route from `table`: 404 not_found for a route it does not know,
// 500 internal_error (no details) when the handler throws. The reply always carries request.id
// and a content-type header.
ipc::Reply dispatch(const std::vector<HandlerEntry>& table, const ipc::Request& request, WorkerContext& ctx);
inline ipc::Reply dispatch(const ipc::Request& request, WorkerContext& ctx) {
    return dispatch(handler_table(), request, ctx);
}

// Helpers for handlers.
struct JsonDeleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDeleter>;

// A reply whose body is `body` serialized compactly, with content-type application/json.
ipc::Reply json_reply(std::uint16_t status, const Json& body);

// A reply whose body is `body` serialized compactly with json::serialize (number lexemes kept as
// built, so an amount can read 1.50), with content-type application/json.
ipc::Reply value_reply(std::uint16_t status, const json::Value& body);

// A handler's refusal of a request: thrown inside guarded(), answered {"code","message"}.
struct Refusal {
    std::uint16_t status;
    std::string code;
    std::string message;
};

// Runs `fn` and turns the failures of a database handler into replies: Refusal -> that error;
// DbUnavailable (store.hpp) -> 503 service_unavailable; DbError -> 500 internal_error, logged as
// event=db_error with request_id, sqlstate and the server's primary message (never in the reply).
// Anything else propagates to dispatch (500). A Session opened in `fn` rolls back as it unwinds.
ipc::Reply guarded(const ipc::Request& request, WorkerContext& ctx, const std::function<ipc::Reply()>& fn);

// --- handlers_system.cpp ---
ipc::Reply handle_health(const ipc::Request& request, WorkerContext& ctx);  // GET /health
ipc::Reply handle_ping(const ipc::Request& request, WorkerContext& ctx);    // GET /ping

// --- handlers_payments.cpp (docs/api.md) ---
ipc::Reply handle_payment_create(const ipc::Request& request, WorkerContext& ctx);    // POST .../create
ipc::Reply handle_payment_retrieve(const ipc::Request& request, WorkerContext& ctx);  // GET .../{id}/retrieve
ipc::Reply handle_payment_status(const ipc::Request& request, WorkerContext& ctx);    // GET .../retrieve/status
ipc::Reply handle_payment_cancel(const ipc::Request& request, WorkerContext& ctx);    // POST .../{id}/cancel
ipc::Reply handle_payment_edit(const ipc::Request& request, WorkerContext& ctx);      // POST .../{id}/edit
ipc::Reply handle_payment_accept(const ipc::Request& request, WorkerContext& ctx);    // POST .../{id}/accept
ipc::Reply handle_payment_extra_charge(const ipc::Request& request, WorkerContext& ctx);  // POST .../{id}/extra_charge
ipc::Reply handle_payment_refund(const ipc::Request& request, WorkerContext& ctx);    // POST .../{id}/refund

// The core's state machine for another surface (the ZooTicket page): inside the caller's
// transaction, locks the payment, checks the transition, makes the change with its event and its
// provider work (accept queues the charge at the routed provider). Nothing when the action is not
// allowed from the payment's status. Accept takes accept_info_json; cancel a reason.
std::optional<PaymentStatus> apply_core_action(Session& s, const WorkerContext& ctx, const std::string& payment_id,
                                               Action action, const std::string& actor,
                                               std::optional<CancelReason> reason, const std::string& accept_info_json);

// For the partner APIs: a payment created and accepted in the caller's transaction (its
// history, created -> bank_processing, the charge queued at the provider provider_route picks),
// as a client's create + accept would. Returns its id.
std::string create_accepted_payment(Session& s, const WorkerContext& ctx, const std::string& client_id,
                                    const std::string& actor, const CreateRequest& request,
                                    const std::string& accept_info_json);
// Cancels a payment that is still created, or asks the reversal of a completed one (reason
// "expired"), in the caller's transaction; false when neither applies (in flight, or final).
bool cancel_or_reverse(Session& s, const std::string& payment_id, const std::string& actor);

// --- handlers_whitebird.cpp (docs/partners/whitebird.md) ---
ipc::Reply handle_whitebird_order(const ipc::Request& request, WorkerContext& ctx);    // POST /partners/whitebird/orders
ipc::Reply handle_whitebird_timeout(const ipc::Request& request, WorkerContext& ctx);  // POST /partners/whitebird/timeout

// The client id in request.principal (set by the module from the caller's token): a positive
// decimal without leading zeros, at most 18 digits. Nothing when empty or malformed (-> 403).
std::optional<std::string> client_principal(std::string_view principal);

// --- handlers_zooticket.cpp (docs/partners/zooticket.md): the merchant API of seed 002 ---
ipc::Reply handle_zooticket_payment_get(const ipc::Request& request, WorkerContext& ctx);   // GET /v1/payments/{id}
ipc::Reply handle_zooticket_session_create(const ipc::Request& request, WorkerContext& ctx);  // POST /v1/payments/sessions
ipc::Reply handle_zooticket_payment_put(const ipc::Request& request, WorkerContext& ctx);      // PUT /v1/payments/{id}
ipc::Reply handle_zooticket_payment_patch(const ipc::Request& request, WorkerContext& ctx);    // PATCH /v1/payments/{id}
ipc::Reply handle_zooticket_payment_delete(const ipc::Request& request, WorkerContext& ctx);   // DELETE /v1/payments/{id}
// --- handlers_zooticket_page.cpp: the hosted payment page (HTML) ---
ipc::Reply handle_zooticket_page_show(const ipc::Request& request, WorkerContext& ctx);     // GET /pay/{token}
ipc::Reply handle_zooticket_page_pay(const ipc::Request& request, WorkerContext& ctx);      // POST /pay/{token}/pay
ipc::Reply handle_zooticket_page_cancel(const ipc::Request& request, WorkerContext& ctx);   // POST /pay/{token}/cancel

inline constexpr std::size_t kMaxMerchantName = 48;   // zooticket_merchants.name
// The merchant of request.principal ("merchant:<name>", set by the module from the verified JWT):
// 1-48 of [A-Za-z0-9._-]. Nothing when absent or malformed (-> 401).
std::optional<std::string> merchant_principal(std::string_view principal);
// "ZT_" and 10 digits: the one payment id format of this surface.
bool is_merchant_payment_id(std::string_view id);
// The surface's status of a core status (docs/partners/zooticket.md, "Statuses").
std::string_view merchant_status(std::string_view core_status, std::string_view cancel_reason);

// --- handlers_callbacks.cpp (docs/callbacks.md) ---
// POST /callbacks/sky-technologies/v1/on_payment_completed, verified by the module: inbox + status check.
ipc::Reply handle_callback_sky_technologies(const ipc::Request& request, WorkerContext& ctx);
ipc::Reply handle_callback_mserver(const ipc::Request& request, WorkerContext& ctx);

// --- handlers_auth.cpp ---
// auth.tokens (internal, the module polls it; inline): the token changes since the module's
// version, one chunk, from the token feed's memory (token_sync.hpp).
ipc::Reply handle_auth_tokens(const ipc::Request& request, WorkerContext& ctx);

// auth.tokens' `since` parameter: absent or "" means 0; otherwise decimal digits (at most 18).
// Nothing when malformed (-> 400).
std::optional<std::uint64_t> parse_token_version(const std::string* since);
// Its `limit` parameter: absent means token_sync::kMaxChunkEntries; else 1..that many.
std::optional<std::size_t> parse_token_limit(const std::string* limit);

}  // namespace paygate::daemon
