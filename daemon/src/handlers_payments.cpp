// Handlers of the client payment API (docs/api.md): create, retrieve, status, cancel, edit, accept.
//
// Each request: the principal (client id) is required (403 before anything else). Reads then
// validate the path id and run one statement. Changes (create, cancel, edit, accept) run as the
// work of run_idempotent (idempotent.hpp): inside the transaction it opened for the request's
// idempotency key, the path id and the body are validated (payment_rules.hpp), then the change
// is made; the wrapper commits it together with the key's recorded outcome. Changes lock the
// payment row (SELECT ... FOR UPDATE), so concurrent actions on one payment are serialized: one
// wins, the other sees the new status. The SQL is in store.cpp.
#include <string>

#include "paygated/handlers.hpp"
#include "paygated/idempotent.hpp"
#include "paygated/money.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/provider.hpp"
#include "paygated/store.hpp"
#include "paygated/tasks.hpp"

namespace paygate::daemon {

std::optional<std::string> client_principal(std::string_view principal) {
    if (principal.empty() || principal.size() > 18 || principal.front() == '0') return std::nullopt;
    for (char c : principal) {
        if (c < '0' || c > '9') return std::nullopt;
    }
    return std::string(principal);
}

namespace {

using json::Value;

struct Caller {
    std::string client_id;  // decimal
    std::string actor;      // "client:<id>", recorded in payment_events
};

Caller require_client(const ipc::Request& request) {
    std::optional<std::string> id = client_principal(request.principal);
    if (!id) throw Refusal{403, "access_error", "access denied"};
    return Caller{*id, "client:" + *id};
}

struct PaymentRef {
    std::string id;        // canonical lower-case UUID
    std::string as_given;  // for messages
};

PaymentRef payment_ref(const ipc::Request& request) {
    const std::string* given = request.param("payment_id");
    if (!given) throw Refusal{400, "validation_error", "payment_id: missing"};
    std::optional<std::string> id = canonical_uuid(*given);
    if (!id) throw Refusal{400, "validation_error", "payment_id: must be a UUID"};
    return PaymentRef{*id, *given};
}

[[noreturn]] void refuse(const Invalid& invalid) {
    throw Refusal{static_cast<std::uint16_t>(invalid.status), invalid.code, invalid.message};
}

// 404 for a payment that does not exist, 403 for another client's.
void check_owner(bool found, const std::string& owner, const PaymentRef& ref, const Caller& caller) {
    if (!found) throw Refusal{404, "not_found", "payment " + ref.as_given + " not found"};
    if (owner != caller.client_id) throw Refusal{403, "access_error", "access denied"};
}

PaymentStatus stored_status(const std::string& name) {
    std::optional<PaymentStatus> s = parse_status(name);
    if (!s) throw std::runtime_error("payment with unknown status in the database");
    return *s;
}

Value changed_reply(const std::string& id, PaymentStatus status) {
    return Value::object({
        {"transaction_id", Value::string(id)},
        {"payment_status", Value::string(std::string(status_name(status)))},
    });
}

// Accept: the routing rule picks the provider; the charge operation and its task are queued in
// the accept's own transaction (outbox).
void queue_charge(Session& s, const WorkerContext& ctx, const PaymentRow& row) {
    std::optional<std::string> provider = route_provider(ctx.provider_routes, row.currency);
    if (!provider) throw Refusal{503, "service_unavailable", "no payment provider serves " + row.currency};
    set_provider(s, row.id, *provider);
    queue_operation(s, row.id, *provider, "charge", row.amount_minor, row.currency, std::nullopt);
}

// Cancel of a completed payment: everything captured and not yet refunded goes back.
void queue_reversal(Session& s, const PaymentRow& row, const PaymentRef& ref) {
    std::optional<std::string> charge = completed_charge(s, row.id);
    std::string amount = charge && row.provider ? reserve_refund(s, row.id, std::nullopt) : std::string();
    if (amount.empty()) throw Refusal{400, "invalid_state", "payment " + ref.as_given + " has nothing left to reverse"};
    queue_operation(s, row.id, *row.provider, "reversal", amount, row.currency, charge);
}

// What one client action does to the locked row, besides the event and the tasks.
using Apply = std::function<void(Session&, const PaymentRow&, const Transition&)>;

// The common path of cancel, edit and accept, inside the request's transaction: lock, check
// owner and transition, change, record the event (and queue provider work).
ipc::Reply change_payment(Session& s, const WorkerContext& ctx, const Caller& caller, const PaymentRef& ref, Action action,
                          const std::string& idempotency_token, std::optional<std::string> reason,
                          const Apply& apply) {
    std::optional<PaymentRow> row = find_payment(s, ref.id, true);
    check_owner(row.has_value(), row ? row->client_id : std::string(), ref, caller);
    PaymentStatus from = stored_status(row->status);
    std::optional<Transition> t = transition(from, action, row->reversal_requested);
    if (!t) {
        std::string message = "payment " + ref.as_given + " is " + row->status + ": " +
                              std::string(action_name(action)) + " is not allowed";
        if (action == Action::Cancel && from == PaymentStatus::Completed && row->reversal_requested) {
            message += " (its reversal was requested already)";
        }
        throw Refusal{400, "invalid_state", message};
    }
    apply(s, *row, *t);
    insert_event(s, PaymentEvent{row->id, std::string(action_name(action)), row->status,
                                 std::string(status_name(t->to)), caller.actor, std::move(reason), idempotency_token});
    if (t->requests_charge) queue_charge(s, ctx, *row);
    if (t->requests_reversal) queue_reversal(s, *row, ref);
    return value_reply(200, changed_reply(row->id, t->to));
}

}  // namespace

ipc::Reply handle_payment_create(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        Caller caller = require_client(request);
        std::optional<CreateRequest> body;
        auto check = [&] {
            Invalid invalid;
            body = validate_create(request, invalid);
            if (!body) refuse(invalid);
        };
        return run_idempotent(request, ctx, caller.client_id, {check, [&](Session& s) {
            std::string id;
            try {
                id = create_payment(s, caller.client_id, caller.actor, *body);
            } catch (const DbError& e) {
                // The principal names no client (deleted behind the module's back): not a fault of ours.
                if (e.sqlstate == "23503") throw Refusal{403, "access_error", "access denied"};
                throw;
            }
            return value_reply(200, Value::object({{"transaction_id", Value::string(id)}}));
        }});
    });
}

ipc::Reply handle_payment_retrieve(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        Caller caller = require_client(request);
        PaymentRef ref = payment_ref(request);
        Session s(ctx.db);
        std::optional<PaymentRow> row = find_payment(s, ref.id, false);
        check_owner(row.has_value(), row ? row->client_id : std::string(), ref, caller);
        const Currency* currency = find_currency(row->currency);
        if (!currency) throw std::runtime_error("payment with unknown currency in the database");
        Value sender_method = row->sender_method_id ? Value::string(*row->sender_method_id) : Value::null();
        Value payment = Value::object({
            {"transaction_id", Value::string(row->id)},
            {"sender", Value::object({{"user_id", Value::string(row->sender_id)}, {"method_id", sender_method}})},
            {"recipcient",
             Value::object({{"user_id", Value::string(row->recipient_id)}, {"method_id", Value::string(row->method_id)}})},
            {"currency", Value::string(row->currency)},
            {"amount", Value::number(format_amount(row->amount_minor, *currency))},
            {"status", Value::string(row->status)},
            {"created_at", Value::string(row->created_at)},
            {"updated_at", Value::string(row->updated_at)},
        });
        return value_reply(200, Value::object({{"payment", payment}}));
    });
}

ipc::Reply handle_payment_status(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        Caller caller = require_client(request);
        PaymentRef ref = payment_ref(request);
        Session s(ctx.db);
        std::optional<PaymentStatusRow> row = find_payment_status(s, ref.id);
        check_owner(row.has_value(), row ? row->client_id : std::string(), ref, caller);
        return value_reply(200, Value::object({{"payment_status", Value::string(row->status)}}));
    });
}

namespace {

// The request side of cancel, edit and accept: the caller, the path id and the body are checked
// (before any SQL), then change_payment() runs under the idempotency wrapper. `Body` is the
// validated body; `apply(tx, row, transition, body)` makes the action's own change to the row.
template <typename Body, typename Apply>
ipc::Reply handle_change(const ipc::Request& request, WorkerContext& ctx,
                         std::optional<Body> (*validate)(const ipc::Request&, Invalid&), Action action,
                         std::optional<std::string> (*reason_of)(const Body&), Apply apply) {
    return guarded(request, ctx, [&] {
        Caller caller = require_client(request);
        PaymentRef ref;
        std::optional<Body> body;
        auto check = [&] {
            ref = payment_ref(request);
            Invalid invalid;
            body = validate(request, invalid);
            if (!body) refuse(invalid);
        };
        return run_idempotent(request, ctx, caller.client_id, {check, [&](Session& s) {
            return change_payment(s, ctx, caller, ref, action, body->idempotency_token, reason_of(*body),
                                  [&](Session& tx, const PaymentRow& row, const Transition& t) {
                                      apply(tx, row, t, *body);
                                  });
        }});
    });
}

template <typename Body>
std::optional<std::string> no_reason(const Body&) {
    return std::nullopt;
}

std::optional<std::string> cancel_reason(const CancelRequest& body) { return std::string(reason_name(body.reason)); }

}  // namespace

ipc::Reply handle_payment_cancel(const ipc::Request& request, WorkerContext& ctx) {
    return handle_change(request, ctx, validate_cancel, Action::Cancel, cancel_reason,
                         [](Session& tx, const PaymentRow& row, const Transition& t, const CancelRequest& body) {
                             update_cancelled(tx, row.id, t.to, body.reason, t.requests_reversal);
                         });
}

ipc::Reply handle_payment_edit(const ipc::Request& request, WorkerContext& ctx) {
    return handle_change(request, ctx, validate_edit, Action::Edit, no_reason<EditRequest>,
                         [](Session& tx, const PaymentRow& row, const Transition&, const EditRequest& body) {
                             update_money(tx, row.id, body.money);
                         });
}

ipc::Reply handle_payment_accept(const ipc::Request& request, WorkerContext& ctx) {
    return handle_change(request, ctx, validate_accept, Action::Accept, no_reason<AcceptRequest>,
                         [](Session& tx, const PaymentRow& row, const Transition& t, const AcceptRequest& body) {
                             update_accepted(tx, row.id, t.to, body.accept_info_json);
                         });
}

}  // namespace paygate::daemon
