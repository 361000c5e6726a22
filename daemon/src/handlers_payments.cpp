// Handlers of the client payment API (docs/api.md): create, retrieve, status, cancel, edit, accept,
// extra_charge, refund.
//
// Each request: the principal (client id) is required (403 before anything else). Reads then
// validate the path id and run one statement. Changes (create, cancel, edit, accept, extra_charge,
// refund) run as the work of run_idempotent (idempotent.hpp): inside the transaction it opened for
// the request's idempotency key, the path id and the body are validated (payment_rules.hpp), then
// the change is made (the amount of extra_charge and refund is read in the payment's currency once
// the row is locked and the action allowed); the wrapper commits it together with the key's
// recorded outcome. Changes lock the payment row (SELECT ... FOR UPDATE), so concurrent actions on
// one payment are serialized: one wins, the other sees the new status. The SQL is in store.cpp.
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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
    if (!id) throw Refusal{403, "acces_error", "access denied"};
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
    if (owner != caller.client_id) throw Refusal{403, "acces_error", "access denied"};
}

PaymentStatus stored_status(const std::string& name) {
    std::optional<PaymentStatus> s = parse_status(name);
    if (!s) throw std::runtime_error("payment with unknown status in the database");
    return *s;
}

const Currency& stored_currency(const std::string& code) {
    const Currency* currency = find_currency(code);
    if (!currency) throw std::runtime_error("payment with unknown currency in the database");
    return *currency;
}

// The answer of a change; `operation_id` names the provider operation it queued (extra_charge, refund).
Value changed_reply(const std::string& id, PaymentStatus status, const std::optional<std::string>& operation_id) {
    std::vector<std::pair<std::string, Value>> members = {
        {"transaction_id", Value::string(id)},
        {"payment_status", Value::string(std::string(status_name(status)))},
    };
    if (operation_id) members.emplace_back("operation_id", Value::string(*operation_id));
    return Value::object(std::move(members));
}

// Accept: the routing rule picks the provider; the charge operation and its task are queued in
// the accept's own transaction (outbox).
void queue_charge(Session& s, const WorkerContext& ctx, const PaymentRow& row) {
    std::optional<std::string> provider = route_provider(ctx.provider_routes, row.currency);
    if (!provider) throw Refusal{503, "service_unavailable", "no payment provider serves " + row.currency};
    set_provider(s, row.id, *provider);
    queue_operation(s, row.id, *provider, "charge", row.amount_minor, row.currency, std::nullopt);
}

// Queues the reversals that return `amount` (reserved already in refunded_minor): one per
// completed charge it comes from (plan_reversals). Returns the first one's id.
std::string queue_reversals(Session& s, const PaymentRow& row, const std::string& amount) {
    std::vector<ReversalPart> parts = plan_reversals(s, row.id, amount);
    if (parts.empty() || !row.provider) {
        throw std::runtime_error("payment " + row.id + ": its completed charges do not cover the refund of " + amount);
    }
    std::string first;
    for (const ReversalPart& part : parts) {
        std::string id = queue_operation(s, row.id, *row.provider, "reversal", part.amount_minor, row.currency,
                                         part.original_id);
        if (first.empty()) first = std::move(id);
    }
    return first;
}

// Money going back while more is being taken would leave the totals to chance (the extra charge
// could complete on a reversed payment): refunds wait until the extra charge is final.
void refuse_during_extra_charge(Session& s, const PaymentRow& row, const PaymentRef& ref) {
    if (has_open_operation(s, row.id, "extra_charge")) {
        throw Refusal{400, "invalid_state",
                      "payment " + ref.as_given + " has an extra charge in progress: refund it once that is final"};
    }
}

// Cancel of a completed payment: everything captured and not yet refunded goes back.
void queue_reversal(Session& s, const PaymentRow& row, const PaymentRef& ref) {
    refuse_during_extra_charge(s, row, ref);
    std::string amount = row.provider ? reserve_refund(s, row.id, std::nullopt) : std::string();
    if (amount.empty()) throw Refusal{400, "invalid_state", "payment " + ref.as_given + " has nothing left to reverse"};
    queue_reversals(s, row, amount);
}

// The amount of an extra charge or refund, read in the payment's currency (400 validation_error).
Amount operation_amount(const MoneyOperationRequest& body, const PaymentRow& row) {
    Invalid invalid;
    std::optional<Amount> amount = amount_in(body.amount, stored_currency(row.currency), invalid);
    if (!amount) refuse(invalid);
    return std::move(*amount);
}

// Extra charge: the payment's provider charges the amount on top, in the payment's currency.
std::string queue_extra_charge(Session& s, const PaymentRow& row, const Amount& amount) {
    if (!row.provider) throw std::runtime_error("completed payment " + row.id + " has no provider");
    return queue_operation(s, row.id, *row.provider, "extra_charge", amount.minor_units, row.currency, std::nullopt);
}

// Refund: reserve the amount (refunded grows, never beyond captured: 400 naming what is left),
// then reverse it.
std::string queue_refund(Session& s, const PaymentRow& row, const Amount& amount) {
    refuse_during_extra_charge(s, row, PaymentRef{row.id, row.id});
    if (reserve_refund(s, row.id, amount.minor_units).empty()) {
        throw Refusal{400, "validation_error",
                      refund_too_large(row.captured_minor, row.refunded_minor, stored_currency(row.currency))};
    }
    return queue_reversals(s, row, amount.minor_units);
}

// What one client action does to the locked row, besides the event and the tasks: returns the
// provider operation it queued when the answer names one.
using Apply = std::function<std::optional<std::string>(Session&, const PaymentRow&, const Transition&)>;

// The common path of cancel, edit, accept, extra_charge and refund, inside the request's
// transaction: lock, check owner and transition, change, record the event (and queue provider work).
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
        if (from == PaymentStatus::Completed && row->reversal_requested) {
            message += " (its reversal was requested already)";
        }
        throw Refusal{400, "invalid_state", message};
    }
    std::optional<std::string> operation_id = apply(s, *row, *t);
    insert_event(s, PaymentEvent{row->id, std::string(action_name(action)), row->status,
                                 std::string(status_name(t->to)), caller.actor, std::move(reason), idempotency_token});
    if (t->requests_charge) queue_charge(s, ctx, *row);
    if (t->requests_reversal) queue_reversal(s, *row, ref);
    return value_reply(200, changed_reply(row->id, t->to, operation_id));
}

// Another surface's accept or cancel of the locked `row` (apply_core_action, cancel_or_reverse):
// the transition, the change, its event and its provider work. `ctx` is needed only by an accept
// (it queues the charge at the routed provider).
std::optional<PaymentStatus> apply_action(Session& s, const WorkerContext* ctx, const PaymentRow& row, Action action,
                                          const std::string& actor, std::optional<CancelReason> reason,
                                          const std::string& accept_info_json) {
    std::optional<Transition> t = transition(stored_status(row.status), action, row.reversal_requested);
    if (!t) return std::nullopt;
    if (action == Action::Accept && ctx != nullptr) {
        update_accepted(s, row.id, t->to, accept_info_json);
    } else if (action == Action::Cancel && reason) {
        update_cancelled(s, row.id, t->to, *reason, t->requests_reversal);
    } else {
        throw std::logic_error("apply_action: only accept (with a context), or cancel with a reason");
    }
    insert_event(s, PaymentEvent{row.id, std::string(action_name(action)), row.status, std::string(status_name(t->to)),
                                 actor, reason ? std::optional<std::string>(std::string(reason_name(*reason))) : std::nullopt,
                                 std::nullopt});
    if (t->requests_charge) queue_charge(s, *ctx, row);   // only an accept requests a charge
    if (t->requests_reversal) queue_reversal(s, row, PaymentRef{row.id, row.id});
    return t->to;
}

}  // namespace

std::optional<PaymentStatus> apply_core_action(Session& s, const WorkerContext& ctx, const std::string& payment_id,
                                               Action action, const std::string& actor,
                                               std::optional<CancelReason> reason, const std::string& accept_info_json) {
    std::optional<PaymentRow> row = find_payment(s, payment_id, true);
    if (!row) throw std::runtime_error("payment " + payment_id + " does not exist");
    return apply_action(s, &ctx, *row, action, actor, reason, accept_info_json);
}

std::string create_accepted_payment(Session& s, const WorkerContext& ctx, const std::string& client_id,
                                    const std::string& actor, const CreateRequest& request,
                                    const std::string& accept_info_json) {
    std::string id = create_payment(s, client_id, actor, request);
    std::optional<PaymentRow> row = find_payment(s, id, true);
    if (!row) throw std::runtime_error("payment " + id + " vanished in its own transaction");
    std::optional<Transition> t = transition(PaymentStatus::Created, Action::Accept, false);
    update_accepted(s, id, t->to, accept_info_json);
    insert_event(s, PaymentEvent{id, std::string(action_name(Action::Accept)), row->status,
                                 std::string(status_name(t->to)), actor, std::nullopt, request.idempotency_token});
    queue_charge(s, ctx, *row);
    return id;
}

bool cancel_or_reverse(Session& s, const std::string& payment_id, const std::string& actor) {
    std::optional<PaymentRow> row = find_payment(s, payment_id, true);
    return row && apply_action(s, nullptr, *row, Action::Cancel, actor, CancelReason::Expired, {}).has_value();
}

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
                if (e.sqlstate == "23503") throw Refusal{403, "acces_error", "access denied"};
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
        const Currency& currency = stored_currency(row->currency);
        Value sender_method = row->sender_method_id ? Value::string(*row->sender_method_id) : Value::null();
        Value payment = Value::object({
            {"transaction_id", Value::string(row->id)},
            {"sender", Value::object({{"user_id", Value::string(row->sender_id)}, {"method_id", sender_method}})},
            {"recipcient",
             Value::object({{"user_id", Value::string(row->recipient_id)}, {"method_id", Value::string(row->method_id)}})},
            {"currency", Value::string(row->currency)},
            {"amount", Value::number(format_amount(row->amount_minor, currency))},
            {"captured_amount", Value::number(format_amount(row->captured_minor, currency))},
            {"refunded_amount", Value::number(format_amount(row->refunded_minor, currency))},
            {"status", Value::string(row->status)},
            {"decline_reason", row->decline_reason ? Value::string(*row->decline_reason) : Value::null()},
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
        std::optional<PaymentStatusRow> row;
        auto ahead = ctx.prefetched_status.find(ref.id);
        if (ahead != ctx.prefetched_status.end()) {
            row = ahead->second;
        } else {
            Session s(ctx.db);
            row = find_payment_status(s, ref.id);
        }
        check_owner(row.has_value(), row ? row->client_id : std::string(), ref, caller);
        return value_reply(200, Value::object({{"payment_status", Value::string(row->status)}}));
    });
}

bool batchable(std::string_view route) { return route == "payment.status"; }

void prefetch_for_batch(const std::vector<ipc::Request>& requests, WorkerContext& ctx) {
    ctx.prefetched_status.clear();
    std::vector<std::string> ids;
    for (const ipc::Request& request : requests) {
        // Only what the handler would read: a malformed request is refused there, unread.
        if (request.route != "payment.status" || !client_principal(request.principal)) continue;
        const std::string* given = request.param("payment_id");
        if (!given) continue;
        if (std::optional<std::string> id = canonical_uuid(*given)) ids.push_back(std::move(*id));
    }
    if (ids.size() < 2) return;
    try {
        Session s(ctx.db);
        std::vector<std::optional<PaymentStatusRow>> rows = find_payment_statuses(s, ids);
        for (std::size_t i = 0; i < ids.size(); ++i) ctx.prefetched_status.emplace(ids[i], std::move(rows[i]));
    } catch (const std::exception&) {
        // Database trouble: each request reads (and reports) for itself.
        ctx.prefetched_status.clear();
    }
}

namespace {

// The request side of cancel, edit, accept, extra_charge and refund: the caller, the path id and
// the body are checked (before any SQL), then change_payment() runs under the idempotency wrapper.
// `Body` is the validated body; `apply(tx, row, transition, body)` makes the action's own change
// to the row, and returns the id of the provider operation it queued when the answer names one.
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
                                  [&](Session& tx, const PaymentRow& row,
                                      const Transition& t) -> std::optional<std::string> {
                                      if constexpr (std::is_void_v<decltype(apply(tx, row, t, *body))>) {
                                          apply(tx, row, t, *body);
                                          return std::nullopt;
                                      } else {
                                          return apply(tx, row, t, *body);
                                      }
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

ipc::Reply handle_payment_extra_charge(const ipc::Request& request, WorkerContext& ctx) {
    return handle_change(request, ctx, validate_extra_charge, Action::ExtraCharge, no_reason<ExtraChargeRequest>,
                         [](Session& tx, const PaymentRow& row, const Transition&, const ExtraChargeRequest& body) {
                             return queue_extra_charge(tx, row, operation_amount(body, row));
                         });
}

ipc::Reply handle_payment_refund(const ipc::Request& request, WorkerContext& ctx) {
    return handle_change(request, ctx, validate_refund, Action::Refund, no_reason<RefundRequest>,
                         [](Session& tx, const PaymentRow& row, const Transition&, const RefundRequest& body) {
                             return queue_refund(tx, row, operation_amount(body, row));
                         });
}

}  // namespace paygate::daemon
