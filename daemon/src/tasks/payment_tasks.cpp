// What each task kind does: send an operation, check its status, apply the provider's answer.
//
// The rule that keeps money exact: an operation is sent only while it is 'new' (never sent, or a
// status check found the provider never recorded it). Once a call may have reached the provider
// ('sending', 'unknown', 'processing'), only paymentStatus decides; a 409 duplicate also leads
// there. Answers are applied in one transaction fenced by the task's lease, together with the
// payment's change, its history row and the follow-up task (docs/tasks.md).
#include "paygate/json.hpp"
#include "paygated/handlers.hpp"
#include "paygated/log.hpp"
#include "paygated/mserver.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/tasks.hpp"

namespace paygate::daemon {

namespace {

using Next = TaskResult::Next;
using K = ProviderAnswer::Kind;

TaskResult result(Next next, std::string note = {}) { return TaskResult{next, std::move(note)}; }

std::optional<std::string> payload_operation(const std::string& payload) {
    json::Value doc;
    json::ParseError error;
    if (!json::parse(payload, doc, error)) return std::nullopt;
    const json::Value* id = doc.find("operation_id");
    if (!id || !id->is(json::Type::String)) return std::nullopt;
    return id->text();
}

struct Ctx {
    const TaskRow& task;
    Session& s;
    const Providers& providers;
    const TaskSettings& settings;
    const std::string& owner;
};

// Writes the final answer: the operation, the payment, its history, the follow-up task.
// Returns false when the lease was lost (another runner has the task now: it will do this).
bool apply_final(Ctx& c, const Operation& given, const ProviderAnswer& answer) {
    Session& s = c.s;
    s.begin();
    if (!lock_own_task(s, c.task.id, c.owner)) {
        s.rollback();
        return false;
    }
    std::optional<Operation> op = find_operation(s, given.id, true);
    if (!op || op->state == "completed" || op->state == "declined") {   // someone resolved it already
        s.commit();
        return true;
    }
    bool completed = answer.kind == K::Completed;
    s.exec("UPDATE provider_operations SET state = $2::text, decline_reason = nullif($3::text, ''),"
           " resolved_at = now(), last_error = NULL WHERE id = $1::uuid",
           {op->id, std::string(completed ? "completed" : "declined"), answer.decline_reason});
    PgResult pay = s.exec("SELECT status, captured_minor, refunded_minor FROM payments WHERE id = $1::uuid FOR UPDATE",
                          {op->payment_id});
    std::string from = value(pay.get(), 0, 0);
    std::string to = from;
    std::string action;
    std::optional<std::string> reason;
    const std::string actor = "provider:" + op->provider;
    if (op->kind == "charge") {
        if (completed) {
            to = "completed";
            action = "provider_completed";
            s.exec("UPDATE payments SET status = 'completed', captured_minor = captured_minor + $2::numeric"
                   " WHERE id = $1::uuid",
                   {op->payment_id, op->amount_minor});
        } else {
            to = "declined";
            action = "provider_declined";
            reason = answer.decline_reason;
            s.exec("UPDATE payments SET status = 'declined', decline_reason = $2::text WHERE id = $1::uuid",
                   {op->payment_id, answer.decline_reason});
        }
    } else if (op->kind == "extra_charge") {
        action = completed ? "extra_charge_completed" : "extra_charge_declined";
        if (completed) {
            s.exec("UPDATE payments SET captured_minor = captured_minor + $2::numeric WHERE id = $1::uuid",
                   {op->payment_id, op->amount_minor});
        } else {
            reason = answer.decline_reason;
        }
    } else {   // reversal: the amount was reserved in refunded_minor when it was asked
        if (completed) {
            action = "reversal_completed";
            // reversed once everything captured went back: reserved, and no reversal still open
            // (refunds reserve their amount at once; their reversals finish in any order).
            PgResult after = s.exec(
                "UPDATE payments SET status = CASE WHEN status = 'completed' AND refunded_minor = captured_minor"
                " AND NOT EXISTS (SELECT 1 FROM provider_operations WHERE payment_id = $1::uuid AND kind = 'reversal'"
                " AND state NOT IN ('completed', 'declined'))"
                " THEN 'reversed' ELSE status END WHERE id = $1::uuid RETURNING status",
                {op->payment_id});
            to = value(after.get(), 0, 0);
        } else {
            action = "reversal_declined";
            reason = answer.decline_reason;
            // The reservation goes back. A cancel may be asked again once no reversal is open.
            s.exec("UPDATE payments SET refunded_minor = refunded_minor - $2::numeric,"
                   " reversal_requested = reversal_requested AND EXISTS (SELECT 1 FROM provider_operations o"
                   "  WHERE o.payment_id = $1::uuid AND o.kind = 'reversal' AND o.id <> $3::uuid"
                   "  AND o.state NOT IN ('completed', 'declined'))"
                   " WHERE id = $1::uuid",
                   {op->payment_id, op->amount_minor, op->id});
        }
    }
    insert_event(s, PaymentEvent{op->payment_id, action, from, to, actor, reason, std::nullopt});
    enqueue_task(s, kTaskHandleCompleted, op->payment_id, std::string(kTaskHandleCompleted) + ":" + op->id,
                 "{\"operation_id\":\"" + op->id + "\"}");
    s.commit();
    log::info("provider_operation_final")
        .kv("payment_id", op->payment_id)
        .kv("operation_id", op->id)
        .kv("kind", op->kind)
        .kv("outcome", completed ? "completed" : "declined")
        .kv("payment_status", to);
    return true;
}

TaskResult recheck(const std::string& why) { return result(Next::Reschedule, why); }

// What the provider told about its own record (mserver: its payment id, the total with
// commission) is kept on the operation as soon as it is known, whatever the outcome.
void remember_provider_record(Session& s, const Operation& op, const ProviderAnswer& a) {
    if (a.provider_ref.empty() && a.total_minor.empty()) return;
    s.exec("UPDATE provider_operations SET provider_ref = coalesce(provider_ref, nullif($2::text, '')),"
           " provider_total_minor = coalesce(nullif($3::text, '')::numeric, provider_total_minor) WHERE id = $1::uuid",
           {op.id, a.provider_ref, a.total_minor});
}

// Sends a 'new' operation, then acts on the answer.
TaskResult send(Ctx& c, Provider& provider, Operation& op) {
    set_operation_state(c.s, op.id, "sending", "", true);   // committed before the call
    ProviderAnswer a = op.kind == "reversal" ? provider.reverse(op) : provider.charge(op);
    remember_provider_record(c.s, op, a);
    log::info("provider_call_done")
        .kv("payment_id", op.payment_id)
        .kv("operation_id", op.id)
        .kv("kind", op.kind)
        .kv("answer", answer_name(a.kind))
        .kv("detail", a.detail);
    switch (a.kind) {
        case K::Completed:
        case K::Declined:
            if (!apply_final(c, op, a)) return result(Next::Retry, "lease lost");
            return result(Next::Done);
        case K::Processing:
            set_operation_state(c.s, op.id, "processing", "", false);
            return recheck("processing at the provider");
        case K::NotSent:
            set_operation_state(c.s, op.id, "new", a.detail, false);
            return result(Next::Retry, a.detail);
        case K::Duplicate:
        case K::Unknown:
        case K::NotFound:
            set_operation_state(c.s, op.id, "unknown", a.detail, false);
            log::warn("provider_outcome_unknown").kv("payment_id", op.payment_id).kv("operation_id", op.id).kv("detail", a.detail);
            return recheck("outcome unknown: " + a.detail);
    }
    return result(Next::Retry, "unreachable");
}

// Drives operation `id` one step. `may_send`: only the operation's own sending task sends.
TaskResult drive(Ctx& c, const std::string& id, bool may_send) {
    std::optional<Operation> op = find_operation(c.s, id, false);
    if (!op) return result(Next::Dead, "provider operation " + id + " does not exist");
    if (op->state == "completed" || op->state == "declined") return result(Next::Done);
    Provider* provider = c.providers.find(op->provider);
    if (!provider) return result(Next::Retry, "provider " + op->provider + " is not configured in this daemon");
    if (op->state == "new") {
        if (!may_send) return result(Next::Done);   // never sent: its sending task owns it
        return send(c, *provider, *op);
    }
    ProviderAnswer a = provider->status(*op);
    remember_provider_record(c.s, *op, a);
    count_status_check(c.s, op->id, a.kind == K::Unknown ? a.detail : "");
    switch (a.kind) {
        case K::Completed:
        case K::Declined:
            if (!apply_final(c, *op, a)) return result(Next::Retry, "lease lost");
            return result(Next::Done);
        case K::Processing:
            // Only an operation that may have been sent becomes processing; 'sending' stays with
            // its sender, which is still waiting for its own answer.
            if (op->state == "unknown") set_operation_state(c.s, op->id, "processing", "", false);
            return recheck("processing at the provider");
        case K::NotFound:
            if (op->state == "processing") return result(Next::Retry, "provider no longer knows an accepted operation");
            if (!may_send) return result(Next::Done);
            // The call never reached the provider: sending again cannot charge twice.
            op->state = "new";
            return send(c, *provider, *op);
        default:
            // The check itself failed (provider down, 5xx, timeout) and the operation may have
            // moved money: check again on the re-check schedule, however long the outage, rather
            // than count attempts and leave the payment stuck in a dead task.
            return recheck("status check failed: " + a.detail);
    }
}

// Records how a notification ended (kept for operators; the row itself is never deleted).
void resolve_notification(Session& s, const std::string& inbox_id, const std::string& resolution) {
    s.exec("UPDATE callback_inbox SET resolved_at = now(), resolution = $2::text WHERE id = $1::bigint",
           {inbox_id, resolution.substr(0, 300)});
    log::info("mserver_notification_resolved").kv("inbox_id", inbox_id).kv("resolution", resolution);
}

// An mserver notification (stored in callback_inbox by the handler): re-read the payment from
// mserver and apply what it says now, as far as the database's state machine allows. The
// notification's own claim is never applied: an out-of-order one (undo before complete) or one
// about a payment we do not know only leads to this re-read.
TaskResult run_mserver_notification(Ctx& c, const TaskRow& task) {
    Session& s = c.s;
    json::Value doc;
    json::ParseError perr;
    const json::Value* idv = json::parse(task.payload, doc, perr) ? doc.find("inbox_id") : nullptr;
    if (!idv || !idv->is(json::Type::String)) return result(Next::Dead, "payload has no inbox_id");
    std::string inbox_id = idv->text();
    PgResult row = s.exec("SELECT provider_payment_id, notification_type, (resolved_at IS NOT NULL)::text"
                          " FROM callback_inbox WHERE id = $1::bigint AND provider = 'mserver'",
                          {inbox_id});
    if (PQntuples(row.get()) == 0) return result(Next::Dead, "inbox row " + inbox_id + " does not exist");
    if (value(row.get(), 0, 2) == "true") return result(Next::Done);
    std::string wallet_id = value(row.get(), 0, 0);
    std::string type = value(row.get(), 0, 1);
    auto* wallet = c.providers.find_as<Mserver>("mserver");
    if (!wallet) return result(Next::Retry, "provider mserver is not configured in this daemon");

    Mserver::Call read = wallet->get("/v1/payments/" + wallet_id);
    if (read.response.outcome != HttpResponse::Outcome::Answered) {
        return result(Next::Retry, "re-read: " + read.response.error);
    }
    if (!read.parsed) return result(Next::Retry, "re-read: " + read.why);
    if (read.envelope.code == 404 || read.response.status == 404) {
        log::warn("mserver_notification_unknown")
            .kv("inbox_id", inbox_id)
            .kv("mserver_payment_id", wallet_id)
            .kv("why", "mserver does not know it");
        resolve_notification(s, inbox_id, "mserver does not know payment " + wallet_id);
        return result(Next::Done);
    }
    if (read.response.status != 200 || read.envelope.code != 200) {
        return result(Next::Retry,
                      "re-read: HTTP " + std::to_string(read.response.status) + " " + read.envelope.error_type);
    }
    mserver::WalletPayment w;
    std::string why;
    if (!mserver::read_payment(read.envelope.data, w, why)) return result(Next::Retry, "re-read: " + why);

    std::optional<std::string> op_id = canonical_uuid(w.client_payment_id);
    std::optional<Operation> op = op_id ? find_operation(s, *op_id, false) : std::nullopt;
    if (!op || op->provider != "mserver" || op->amount_minor != w.amount_minor) {
        log::warn("mserver_notification_unknown").kv("inbox_id", inbox_id).kv("mserver_payment_id", wallet_id).kv("why", "no operation of ours");
        resolve_notification(s, inbox_id, "not a payment of ours (client_payment_id " + w.client_payment_id.substr(0, 40) + ")");
        return result(Next::Done);
    }
    s.exec("UPDATE callback_inbox SET operation_id = $2::uuid, request_id = $2::uuid WHERE id = $1::bigint",
           {inbox_id, op->id});
    if (op->provider_ref.empty()) {
        ProviderAnswer ref;
        ref.provider_ref = w.id;
        ref.total_minor = w.total_minor;
        remember_provider_record(s, *op, ref);
    }
    if (op->state != "completed" && op->state != "declined") {
        // Still open on our side: the ordinary status check applies mserver's answer.
        TaskResult r = drive(c, op->id, false);
        if (r.next == Next::Retry) return r;
        resolve_notification(s, inbox_id, type + ": re-read " + w.status + ", applied through the status check");
        return result(Next::Done);
    }
    if (op->kind != "charge") {
        resolve_notification(s, inbox_id, type + ": about a " + op->kind + ", nothing to apply");
        return result(Next::Done);
    }
    // Final on our side: only undo (completed -> declined at mserver) and redo (back to completed)
    // can still change the payment, and only as the state machine allows.
    s.begin();
    if (!lock_own_task(s, task.id, c.owner)) {
        s.rollback();
        return result(Next::Retry, "lease lost");
    }
    PgResult pay = s.exec("SELECT status FROM payments WHERE id = $1::uuid FOR UPDATE", {op->payment_id});
    std::string from = value(pay.get(), 0, 0);
    std::string resolution;
    if (from == "completed" && w.status == "declined") {
        s.exec("UPDATE payments SET status = 'reversed', refunded_minor = captured_minor WHERE id = $1::uuid", {op->payment_id});
        insert_event(s, PaymentEvent{op->payment_id, "provider_undo", from, "reversed", "provider:mserver",
                                     std::string("mserver ") + (type.empty() ? "notification" : type), std::nullopt});
        resolution = type + ": re-read declined, payment reversed (undo)";
    } else if (from == "reversed" && w.status == "completed") {
        s.exec("UPDATE payments SET status = 'completed', refunded_minor = 0 WHERE id = $1::uuid", {op->payment_id});
        insert_event(s, PaymentEvent{op->payment_id, "provider_redo", from, "completed", "provider:mserver",
                                     std::string("mserver ") + (type.empty() ? "notification" : type), std::nullopt});
        resolution = type + ": re-read completed, payment completed again (redo)";
    } else {
        resolution = type + ": re-read " + w.status + ", payment " + from + ": nothing to apply";
        log::warn("mserver_notification_unapplied").kv("inbox_id", inbox_id).kv("payment_id", op->payment_id).kv("type", type)
            .kv("payment_status", from).kv("mserver_status", w.status);
    }
    resolve_notification(s, inbox_id, resolution);
    s.commit();
    return result(Next::Done);
}

// A ZooTicket session at its expires_at: cancelled (reason expired) if still unpaid; a payment the
// customer has started paying (bank_processing) or finished is left to its own course.
TaskResult run_session_expiry(Ctx& c, const TaskRow& task) {
    Session& s = c.s;
    s.begin();
    if (!lock_own_task(s, task.id, c.owner)) {
        s.rollback();
        return result(Next::Retry, "lease lost");
    }
    PgResult pay = s.exec("SELECT p.status, z.expires_at <= now() FROM payments p"
                          " JOIN zooticket_payments z ON z.core_payment_id = p.id WHERE p.id = $1::uuid FOR UPDATE OF p",
                          {task.payment_id});
    if (PQntuples(pay.get()) == 0) {
        s.rollback();
        return result(Next::Dead, "no zooticket session for payment " + task.payment_id);
    }
    const std::string status = value(pay.get(), 0, 0);
    if (value(pay.get(), 0, 1) != "t") {
        // Early (clock skew between daemons and PostgreSQL): come back at the database's expires_at.
        s.rollback();
        return result(Next::Reschedule, "session not expired yet");
    }
    if (status == "created") {
        update_cancelled(s, task.payment_id, PaymentStatus::Cancelled, CancelReason::Expired, false);
        insert_event(s, PaymentEvent{task.payment_id, "cancel", status, "cancelled", "task:" + task.kind, "expired",
                                     std::nullopt});
        log::info("zooticket_session_expired").kv("payment_id", task.payment_id);
    }
    s.commit();
    return result(Next::Done);
}

// A partner's order that timed out (WhiteBird's timeout, docs/partners/whitebird.md) while its
// charge was in flight: the charge completed after all, so its money goes back.
void reverse_if_timed_out(Ctx& c, const std::string& payment_id) {
    Session& s = c.s;
    s.begin();
    PgResult r = s.exec("SELECT 1 FROM whitebird_operations WHERE payment_id = $1::uuid AND timeout_at IS NOT NULL",
                        {payment_id});
    bool reversed = PQntuples(r.get()) == 1 && cancel_or_reverse(s, payment_id, "partner:whitebird");
    s.commit();
    if (reversed) log::info("timed_out_order_reversed").kv("payment_id", payment_id);
}

}  // namespace

TaskResult run_task(const TaskRow& task, Session& s, const Providers& providers, const TaskSettings& settings,
                    const std::string& owner) {
    Ctx c{task, s, providers, settings, owner};
    try {
        std::optional<std::string> op = payload_operation(task.payload);
        if (task.kind == kTaskMserverNotification) return run_mserver_notification(c, task);
        if (task.kind == kTaskZooticketSessionExpiry) return run_session_expiry(c, task);
        if (task.kind == kTaskProcessPayment || task.kind == kTaskProcessExtraPayment || task.kind == kTaskProcessReversal ||
            task.kind == kTaskMserverProcessPayment || task.kind == kTaskMserverProcessReversal) {
            if (!op) return result(Next::Dead, "payload has no operation_id");
            return drive(c, *op, true);
        }
        if (task.kind == kTaskPaymentStatus) {
            if (!op) return result(Next::Dead, "payload has no operation_id");
            return drive(c, *op, false);
        }
        if (task.kind == kTaskHandleCompleted) {
            // Seed 001: "for a reversal does nothing (logs/metrics?); for an extra charge goes to
            // billing". Billing's interface is not defined yet: the event is logged for it.
            if (!op) return result(Next::Dead, "payload has no operation_id");
            std::optional<Operation> row = find_operation(s, *op, false);
            if (!row) return result(Next::Dead, "provider operation " + *op + " does not exist");
            log::info("payment_operation_handled")
                .kv("payment_id", row->payment_id)
                .kv("operation_id", row->id)
                .kv("kind", row->kind)
                .kv("state", row->state);
            if (row->kind == "charge" && row->state == "completed") reverse_if_timed_out(c, row->payment_id);
            return result(Next::Done);
        }
        return result(Next::Dead, "unknown task kind " + task.kind);
    } catch (const DbUnavailable& e) {
        return result(Next::Retry, std::string("database unavailable: ") + e.what());
    } catch (const DbError& e) {
        return result(Next::Retry, std::string("database error ") + e.sqlstate + ": " + e.what());
    } catch (const std::exception& e) {
        return result(Next::Retry, e.what());
    }
}

TaskSettings task_settings(const Config& config) {
    TaskSettings t;
    t.database = config.database;
    t.workers = config.task_workers;
    t.lease_ms = config.task_lease_ms;
    t.poll_ms = config.task_poll_ms;
    t.max_attempts = config.task_max_attempts;
    t.backoff_base_ms = config.task_backoff_base_ms;
    t.backoff_max_ms = config.task_backoff_max_ms;
    t.recheck_base_ms = config.status_check_base_ms;
    t.recheck_max_ms = config.status_check_max_ms;
    t.db_retry_max_ms = config.db_retry_max_ms;
    return t;
}

}  // namespace paygate::daemon
