// WhiteBird's calls on paygate as its fiat PaymentProvider (seed 004, docs/partners/whitebird.md):
// POST /partners/whitebird/orders and POST /partners/whitebird/timeout. The module has checked the
// X-Api-Key (principal "partner:whitebird"); the body rules are in whitebird.cpp.
//
// An order becomes a payment of the client "partner.whitebird", created and accepted at once, so
// the provider charge is queued with it (the same state machine and tasks as a client payment).
// Idempotency rests on whitebird_operations' primary key. Concurrent first attempts (and a timeout
// of the same id) also queue on a transaction-scoped advisory lock of the operation id, so the
// later ones find the winner's row before doing any work; should one get past anyway, its INSERT
// waits for the winner's commit, finds the row, and rolls back its own payment and charge.
#include <string>
#include <utility>
#include <vector>

#include "paygate/digest.hpp"
#include "paygated/handlers.hpp"
#include "paygated/store.hpp"
#include "paygated/whitebird.hpp"

namespace paygate::daemon {

namespace {

using json::Value;
namespace wb = whitebird;

struct OperationRow {
    std::string fingerprint;
    std::string payment_id;
    PaymentStatus status = PaymentStatus::Created;
    std::optional<std::string> decline_reason;
    bool timed_out = false;
};

const char* const kFindOperationSql =
    "SELECT o.request_sha256, o.payment_id, p.status, p.decline_reason,"
    " o.timeout_at IS NOT NULL"
    " FROM whitebird_operations o JOIN payments p ON p.id = o.payment_id"
    " WHERE o.partner = $1::text AND o.external_operation_id = $2::text";

std::optional<OperationRow> find_operation_row(Session& s, const std::string& operation_id, bool for_update) {
    std::string sql = std::string(kFindOperationSql) + (for_update ? " FOR UPDATE OF o, p" : "");
    PgResult r = s.exec(sql.c_str(), {std::string(wb::kPartner), operation_id});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    OperationRow row;
    row.fingerprint = value(r.get(), 0, 0);
    row.payment_id = value(r.get(), 0, 1);
    std::optional<PaymentStatus> status = parse_status(value(r.get(), 0, 2));
    if (!status) throw std::runtime_error("payment with unknown status in the database");
    row.status = *status;
    row.decline_reason = nullable(r.get(), 0, 3);
    row.timed_out = value(r.get(), 0, 4) == "t";
    return row;
}

// What WhiteBird sees. timeout_at is set only while the payment was not final, so a payment that
// completed after it is being reversed (or about to be, by the charge's follow-up task): FAILED,
// never SUCCESS, also in the moment before the reversal is asked.
Value order_answer(const OperationRow& row) {
    wb::Status status = wb::order_status(row.status);
    if (status == wb::Status::Success && row.timed_out) status = wb::Status::Failed;
    std::vector<std::pair<std::string, Value>> members = {{"status", Value::string(std::string(wb::status_name(status)))}};
    if (status == wb::Status::Failed) {
        members.emplace_back("errorMessage", Value::string(wb::failure_message(row.status, row.decline_reason, row.timed_out)));
    }
    return Value::object(std::move(members));
}

void require_whitebird(const ipc::Request& request) {
    if (request.principal != wb::kPrincipal) throw Refusal{403, "acces_error", "access denied"};
}

Value parsed_body(const ipc::Request& request) {
    Value body;
    Invalid invalid;
    if (!parse_json_body(request, body, invalid)) {
        throw Refusal{static_cast<std::uint16_t>(invalid.status), invalid.code, invalid.message};
    }
    return body;
}

// A repeat must be the same order: anything else is refused and changes nothing.
void check_same_order(const OperationRow& row, const wb::Order& order) {
    if (row.fingerprint != order.fingerprint) {
        throw Refusal{409, "operation_conflict",
                      "externalOperationId " + order.external_operation_id +
                          " was used already for a different order; nothing was changed"};
    }
}

// The payment event's idempotency token (a uuid column): derived from the operation id, so every
// attempt of one order carries the same one.
std::string event_token(const std::string& operation_id) {
    std::string h = sha256_hex("whitebird-operation\n" + operation_id);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-8" + h.substr(13, 3) + "-8" + h.substr(17, 3) + "-" + h.substr(20, 12);
}

// The order and the timeout of one operation id serialize on this lock (until their commit).
void lock_operation_id(Session& s, const std::string& operation_id) {
    s.exec("SELECT pg_advisory_xact_lock(hashtextextended('whitebird-operation:' || $1::text, 0))", {operation_id});
}

bool timed_out_before_order(Session& s, const std::string& operation_id) {
    PgResult r = s.exec("SELECT 1 FROM whitebird_timeouts WHERE partner = $1::text AND external_operation_id = $2::text",
                        {std::string(wb::kPartner), operation_id});
    return PQntuples(r.get()) == 1;
}

std::string partner_client_id(Session& s) {
    PgResult r = s.exec("SELECT id FROM clients WHERE name = $1::text", {std::string(wb::kClientName)});
    if (PQntuples(r.get()) != 1) throw std::runtime_error("no clients row 'partner.whitebird' (is migration 0007 applied?)");
    return value(r.get(), 0, 0);
}

}  // namespace

ipc::Reply handle_whitebird_order(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        require_whitebird(request);
        Value body = parsed_body(request);
        Invalid invalid;
        std::optional<wb::Order> order = wb::validate_order(body, invalid);
        if (!order) throw Refusal{static_cast<std::uint16_t>(invalid.status), invalid.code, invalid.message};

        Session s(ctx.db);
        // A retry (WhiteBird polls this way while it sees PROCESSING) reads and writes nothing.
        if (std::optional<OperationRow> row = find_operation_row(s, order->external_operation_id, false)) {
            check_same_order(*row, *order);
            return value_reply(200, order_answer(*row));
        }
        s.begin();
        lock_operation_id(s, order->external_operation_id);
        // Attempts that waited on the lock find the winner's row; a timeout that came first
        // means WhiteBird gave up on this order: it is never executed.
        if (std::optional<OperationRow> row = find_operation_row(s, order->external_operation_id, false)) {
            s.rollback();
            check_same_order(*row, *order);
            return value_reply(200, order_answer(*row));
        }
        if (timed_out_before_order(s, order->external_operation_id)) {
            s.rollback();
            return value_reply(200, Value::object({
                                        {"status", Value::string(std::string(wb::status_name(wb::Status::Failed)))},
                                        {"errorMessage", Value::string(wb::failure_message(PaymentStatus::Cancelled,
                                                                                           std::nullopt, true))},
                                    }));
        }
        std::string actor(wb::kPrincipal);
        CreateRequest payment;
        payment.idempotency_token = event_token(order->external_operation_id);
        payment.money.method_id = order->payment_method_token.value_or(std::string(wb::kPartner));
        payment.money.amount = order->amount;
        // PAYMENT credits the user (WhiteBird pays), DISBURSEMENT debits the user (WhiteBird is paid).
        bool credit = order->type == wb::OrderType::Payment;
        payment.sender_id = credit ? std::string(wb::kPartner) : order->external_user_id;
        payment.recipient_id = credit ? order->external_user_id : std::string(wb::kPartner);
        std::string accept_info = json::serialize(Value::object({
            {"partner", Value::string(std::string(wb::kPartner))},
            {"externalOperationId", Value::string(order->external_operation_id)},
            {"externalUserId", Value::string(order->external_user_id)},
            {"type", Value::string(std::string(wb::type_name(order->type)))},
        }));
        std::string payment_id =
            create_accepted_payment(s, ctx, partner_client_id(s), actor, payment, accept_info);
        PgResult inserted = s.exec(
            "INSERT INTO whitebird_operations (partner, external_operation_id, external_user_id, payment_method_token,"
            " type, currency, amount_minor, request_sha256, payment_id)"
            " VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::numeric, $8::text, $9::uuid)"
            " ON CONFLICT (partner, external_operation_id) DO NOTHING RETURNING payment_id",
            {std::string(wb::kPartner), order->external_operation_id, order->external_user_id,
             order->payment_method_token, std::string(wb::type_name(order->type)),
             std::string(order->amount.currency->code), order->amount.minor_units, order->fingerprint, payment_id});
        if (PQntuples(inserted.get()) == 1) {
            s.commit();
            OperationRow fresh;
            fresh.status = PaymentStatus::BankProcessing;
            return value_reply(200, order_answer(fresh));
        }
        // Another attempt of this order committed first (the INSERT waited for it): ours goes,
        // payment and charge with it, and the answer is the winner's.
        s.rollback();
        std::optional<OperationRow> row = find_operation_row(s, order->external_operation_id, false);
        if (!row) throw std::runtime_error("whitebird operation conflicted but cannot be read");
        check_same_order(*row, *order);
        return value_reply(200, order_answer(*row));
    });
}

ipc::Reply handle_whitebird_timeout(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        require_whitebird(request);
        Value body = parsed_body(request);
        Invalid invalid;
        std::optional<std::string> operation_id = wb::validate_timeout(body, invalid);
        if (!operation_id) throw Refusal{static_cast<std::uint16_t>(invalid.status), invalid.code, invalid.message};

        Session s(ctx.db);
        s.begin();
        lock_operation_id(s, *operation_id);
        std::optional<OperationRow> row = find_operation_row(s, *operation_id, true);
        std::string state;
        if (!row) {
            // Nothing to cancel; remembered, so that a late order with this id is never executed.
            s.exec("INSERT INTO whitebird_timeouts (partner, external_operation_id) VALUES ($1::text, $2::text)"
                   " ON CONFLICT DO NOTHING",
                   {std::string(wb::kPartner), *operation_id});
            state = "NOT_FOUND";
        } else if (row->status == PaymentStatus::Completed && !row->timed_out) {
            state = "SUCCESS";     // a success is never undone by a timeout
        } else if (row->status == PaymentStatus::Created || row->status == PaymentStatus::BankProcessing) {
            // Not final: remember the timeout. A payment not sent yet is cancelled now; a charge in
            // flight is reversed as soon as the provider completes it (payment_tasks.cpp).
            s.exec("UPDATE whitebird_operations SET timeout_at = coalesce(timeout_at, now())"
                   " WHERE partner = $1::text AND external_operation_id = $2::text",
                   {std::string(wb::kPartner), *operation_id});
            bool cancelled = cancel_or_reverse(s, row->payment_id, std::string(wb::kPrincipal));
            state = cancelled ? "CANCELLED" : "CANCELLING";
        } else if (row->status == PaymentStatus::Completed) {
            state = "CANCELLING";  // completed after the timeout: its reversal is under way
        } else if (row->status == PaymentStatus::Declined) {
            state = "FAILED";
        } else {
            state = row->status == PaymentStatus::Cancelled || row->timed_out ? "CANCELLED" : "FAILED";
        }
        s.commit();
        return value_reply(200, Value::object({
                                    {"externalOperationId", Value::string(*operation_id)},
                                    {"status", Value::string(state)},
                                }));
    });
}

}  // namespace paygate::daemon
