// The SQL of durable tasks and provider operations (see tasks.hpp, docs/tasks.md).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "paygated/tasks.hpp"

namespace paygate::daemon {

namespace {

#define PAYGATE_TASK_COLUMNS                                                                                 \
    "id, kind, payment_id, operation_key, payload::text, state, attempts, reschedules, " PAYGATE_UTC_US("run_at") \
    ", coalesce(lease_owner, ''), coalesce(" PAYGATE_UTC_US("lease_expires_at") ", ''), coalesce(last_error, ''), " \
    PAYGATE_UTC_US("created_at") ", " PAYGATE_UTC_US("updated_at")

TaskRow task_row(const PGresult* r, int i) {
    TaskRow t;
    t.id = value(r, i, 0);
    t.kind = value(r, i, 1);
    t.payment_id = value(r, i, 2);
    t.operation_key = value(r, i, 3);
    t.payload = value(r, i, 4);
    t.state = value(r, i, 5);
    t.attempts = std::atoi(value(r, i, 6).c_str());
    t.reschedules = std::atoi(value(r, i, 7).c_str());
    t.run_at = value(r, i, 8);
    t.lease_owner = value(r, i, 9);
    t.lease_expires_at = value(r, i, 10);
    t.last_error = value(r, i, 11);
    t.created_at = value(r, i, 12);
    t.updated_at = value(r, i, 13);
    return t;
}

bool one_row(const PgResult& r) { return std::strcmp(PQcmdTuples(r.get()), "1") == 0; }

// Errors go to a column operators read: bounded, one line.
std::string error_text(const std::string& e) {
    std::string out = e.substr(0, 500);
    std::replace(out.begin(), out.end(), '\n', ' ');
    return out;
}

}  // namespace

const char* send_task_kind(const std::string& operation_kind, const std::string& provider) {
    if (provider == "mserver") return operation_kind == "reversal" ? kTaskMserverProcessReversal : kTaskMserverProcessPayment;
    if (operation_kind == "extra_charge") return kTaskProcessExtraPayment;
    if (operation_kind == "reversal") return kTaskProcessReversal;
    return kTaskProcessPayment;
}

std::string insert_operation(Session& s, const std::string& payment_id, const std::string& provider,
                             const std::string& kind, const std::string& amount_minor, const std::string& currency,
                             const std::optional<std::string>& original_id) {
    PgResult r = s.exec(
        "INSERT INTO provider_operations (payment_id, provider, kind, amount_minor, currency, original_id)"
        " VALUES ($1::uuid, $2::text, $3::text, $4::numeric, $5::text, $6::uuid) RETURNING id",
        {payment_id, provider, kind, amount_minor, currency, original_id});
    return value(r.get(), 0, 0);
}

bool enqueue_task(Session& s, const std::string& kind, const std::string& payment_id, const std::string& operation_key,
                  const std::string& payload_json, unsigned delay_ms) {
    PgResult r = s.exec(
        "INSERT INTO tasks (kind, payment_id, operation_key, payload, run_at)"
        " VALUES ($1::text, $2::uuid, $3::text, $4::jsonb, now() + $5::bigint * interval '1 millisecond')"
        " ON CONFLICT (operation_key) DO NOTHING",
        {kind, payment_id, operation_key, payload_json, std::to_string(delay_ms)});
    return one_row(r);
}

std::string queue_operation(Session& s, const std::string& payment_id, const std::string& provider,
                            const std::string& kind, const std::string& amount_minor, const std::string& currency,
                            const std::optional<std::string>& original_id) {
    std::string id = insert_operation(s, payment_id, provider, kind, amount_minor, currency, original_id);
    const char* task = send_task_kind(kind, provider);
    enqueue_task(s, task, payment_id, std::string(task) + ":" + id, "{\"operation_id\":\"" + id + "\"}");
    return id;
}

std::optional<Operation> find_operation(Session& s, const std::string& id, bool for_update) {
    static const char* const kSelect =
        "SELECT o.id, o.payment_id, o.provider, o.kind, o.amount_minor, o.currency, p.method_id, o.original_id, o.state,"
        " coalesce(p.accept_info::text, '{}'), coalesce(o.provider_ref, '')"
        " FROM provider_operations o JOIN payments p ON p.id = o.payment_id WHERE o.id = $1::uuid";
    static const char* const kSelectForUpdate =
        "SELECT o.id, o.payment_id, o.provider, o.kind, o.amount_minor, o.currency, p.method_id, o.original_id, o.state,"
        " coalesce(p.accept_info::text, '{}'), coalesce(o.provider_ref, '')"
        " FROM provider_operations o JOIN payments p ON p.id = o.payment_id WHERE o.id = $1::uuid FOR UPDATE OF o";
    PgResult r = s.exec(for_update ? kSelectForUpdate : kSelect, {id});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    return Operation{value(p, 0, 0), value(p, 0, 1), value(p, 0, 2), value(p, 0, 3), value(p, 0, 4),
                     value(p, 0, 5), value(p, 0, 6), nullable(p, 0, 7), value(p, 0, 8), value(p, 0, 9),
                     value(p, 0, 10)};
}

void set_operation_state(Session& s, const std::string& id, const std::string& state, const std::string& error,
                         bool sent) {
    // Never over a final state: a concurrent task may have resolved the operation meanwhile.
    s.exec("UPDATE provider_operations SET state = $2::text, last_error = nullif($3::text, ''),"
           " calls = calls + $4::int WHERE id = $1::uuid AND state NOT IN ('completed', 'declined')",
           {id, state, error_text(error), std::string(sent ? "1" : "0")});
}

void count_status_check(Session& s, const std::string& id, const std::string& error) {
    s.exec("UPDATE provider_operations SET status_checks = status_checks + 1,"
           " last_error = coalesce(nullif($2::text, ''), last_error) WHERE id = $1::uuid",
           {id, error_text(error)});
}

std::optional<TaskRow> claim_task(Session& s, const std::string& owner, unsigned lease_ms) {
    // Two statements, each served by its partial index (tasks_lease_idx, tasks_due_idx): one
    // query with an OR of both would scan and sort the whole backlog on every claim. Tasks whose
    // lease ran out (a dead or frozen daemon's) go first: they are the oldest work.
    static const char* const kClaimExpired =
        "UPDATE tasks SET state = 'running', lease_owner = $1::text,"
        " lease_expires_at = now() + $2::bigint * interval '1 millisecond', attempts = attempts + 1"
        " WHERE id = (SELECT id FROM tasks WHERE state = 'running' AND lease_expires_at < now()"
        "  ORDER BY lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING " PAYGATE_TASK_COLUMNS;
    static const char* const kClaimDue =
        "UPDATE tasks SET state = 'running', lease_owner = $1::text,"
        " lease_expires_at = now() + $2::bigint * interval '1 millisecond', attempts = attempts + 1"
        " WHERE id = (SELECT id FROM tasks WHERE state = 'pending' AND run_at <= now()"
        "  ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING " PAYGATE_TASK_COLUMNS;
    for (const char* sql : {kClaimExpired, kClaimDue}) {
        PgResult r = s.exec(sql, {owner, std::to_string(lease_ms)});
        if (PQntuples(r.get()) == 1) return task_row(r.get(), 0);
    }
    return std::nullopt;
}

bool finish_task(Session& s, const std::string& id, const std::string& owner) {
    return one_row(s.exec("UPDATE tasks SET state = 'done', lease_owner = NULL, lease_expires_at = NULL,"
                          " finished_at = now(), last_error = NULL"
                          " WHERE id = $1::bigint AND lease_owner = $2::text AND state = 'running'",
                          {id, owner}));
}

bool retry_task(Session& s, const std::string& id, const std::string& owner, unsigned delay_ms, const std::string& error) {
    return one_row(s.exec("UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,"
                          " run_at = now() + $3::bigint * interval '1 millisecond', last_error = $4::text"
                          " WHERE id = $1::bigint AND lease_owner = $2::text AND state = 'running'",
                          {id, owner, std::to_string(delay_ms), error_text(error)}));
}

bool reschedule_task(Session& s, const std::string& id, const std::string& owner, unsigned delay_ms,
                     const std::string& note) {
    return one_row(s.exec("UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,"
                          " run_at = now() + $3::bigint * interval '1 millisecond', last_error = nullif($4::text, ''),"
                          " attempts = 0, reschedules = reschedules + 1"
                          " WHERE id = $1::bigint AND lease_owner = $2::text AND state = 'running'",
                          {id, owner, std::to_string(delay_ms), error_text(note)}));
}

bool kill_task(Session& s, const std::string& id, const std::string& owner, const std::string& error) {
    return one_row(s.exec("UPDATE tasks SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL,"
                          " finished_at = now(), last_error = $3::text"
                          " WHERE id = $1::bigint AND lease_owner = $2::text AND state = 'running'",
                          {id, owner, error_text(error)}));
}

bool lock_own_task(Session& s, const std::string& id, const std::string& owner) {
    PgResult r = s.exec("SELECT 1 FROM tasks WHERE id = $1::bigint AND lease_owner = $2::text AND state = 'running'"
                        " AND lease_expires_at > now() FOR UPDATE",
                        {id, owner});
    return PQntuples(r.get()) == 1;
}

std::vector<TaskRow> list_tasks(Session& s, const TaskFilter& f) {
    PgResult r = s.exec("SELECT " PAYGATE_TASK_COLUMNS " FROM tasks"
                        " WHERE ($1::text IS NULL OR state = $1::text) AND ($2::text IS NULL OR kind = $2::text)"
                        " AND ($3::uuid IS NULL OR payment_id = $3::uuid) ORDER BY id DESC LIMIT $4::int",
                        {f.state, f.kind, f.payment_id, std::to_string(f.limit)});
    std::vector<TaskRow> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(task_row(r.get(), i));
    return out;
}

std::optional<TaskRow> find_task(Session& s, const std::string& id) {
    PgResult r = s.exec("SELECT " PAYGATE_TASK_COLUMNS " FROM tasks WHERE id = $1::bigint", {id});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return task_row(r.get(), 0);
}

bool operator_retry_task(Session& s, const std::string& id) {
    return one_row(s.exec("UPDATE tasks SET state = 'pending', run_at = now(), attempts = 0, finished_at = NULL"
                          " WHERE id = $1::bigint AND state IN ('pending', 'dead', 'cancelled')",
                          {id}));
}

bool operator_cancel_task(Session& s, const std::string& id, const std::string& reason) {
    return one_row(s.exec("UPDATE tasks SET state = 'cancelled', finished_at = now(), last_error = $2::text"
                          " WHERE id = $1::bigint AND state IN ('pending', 'dead')",
                          {id, error_text("cancelled by operator: " + reason)}));
}

unsigned retry_delay_ms(unsigned attempts, unsigned base_ms, unsigned max_ms, double unit_random) {
    double delay = base_ms;
    for (unsigned i = 1; i < attempts && delay < max_ms; ++i) delay *= 2;
    delay = std::min(delay, static_cast<double>(max_ms));
    double r = std::clamp(unit_random, 0.0, 1.0);
    return static_cast<unsigned>(delay / 2 + r * delay / 2);
}

unsigned recheck_delay_ms(unsigned reschedules, unsigned base_ms, unsigned max_ms) {
    double delay = base_ms;
    for (unsigned i = 0; i < reschedules && delay < max_ms; ++i) delay *= 2;
    return static_cast<unsigned>(std::min(delay, static_cast<double>(max_ms)));
}

}  // namespace paygate::daemon
