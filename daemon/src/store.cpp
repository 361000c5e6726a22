// The SQL of paygated's handlers (see store.hpp): parameterized statements over a Session.
#include "paygated/store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace paygate::daemon {

namespace {

std::string primary_message(const PGresult* r, PGconn* conn) {
    const char* primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    // Only the primary message: DETAIL lines may quote the row's values.
    if (primary && *primary) return primary;
    return conn ? pg_error_line(conn) : "unknown error";
}

}  // namespace

std::string value(const PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}

std::optional<std::string> nullable(const PGresult* r, int row, int col) {
    if (PQgetisnull(r, row, col)) return std::nullopt;
    return value(r, row, col);
}

Session::Session(Db& db) : db_(db), conn_(db.connection()) {
    if (!conn_) throw DbUnavailable("database unavailable");
}

namespace {
constexpr const char* kBegin = "BEGIN";
constexpr const char* kSavepoint = "SAVEPOINT paygate_work";
constexpr const char* kLimits =
    "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)";
}  // namespace

Session::~Session() {
    // A BEGIN still queued never reached the server: nothing to undo.
    if (conn_ && in_transaction_ && !queued(kBegin) && PQstatus(conn_) == CONNECTION_OK) {
        PgResult r(PQexec(conn_, "ROLLBACK"));
        // If even that failed, Db::connection() sees the open transaction (or the broken
        // connection) before the next request and deals with it.
    }
}

bool Session::queued(const char* sql) const {
    for (const char* q : queued_) {
        if (q == sql) return true;
    }
    return false;
}

void Session::fail(const PGresult* r) {
    std::string message = primary_message(r, conn_);
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string sqlstate = state ? state : "";
    if (db_.drop_if_broken()) {
        conn_ = nullptr;  // freed by Db
        throw DbUnavailable(message);
    }
    throw DbError(sqlstate, message);
}

PgResult Session::exec(const char* sql, const std::vector<SqlParam>& params) {
    if (!conn_) throw DbUnavailable("connection lost");
    if (!queued_.empty()) return std::move(exec_all({{sql, params}}).front());
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const SqlParam& p : params) values.push_back(p ? p->c_str() : nullptr);
    // (A PREPARE fails only where the statement itself would: a missing table or column.)
    const char* name = db_.prepared(conn_, sql);
    if (!db_.connection_is(conn_)) {
        conn_ = nullptr;   // preparing found it broken: freed by Db
        throw DbUnavailable("connection lost");
    }
    PgResult r(name ? PQexecPrepared(conn_, name, static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0)
                    : PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                                   nullptr, 0));
    ExecStatusType st = PQresultStatus(r.get());
    if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) return r;
    fail(r.get());
    return r;  // not reached
}

std::vector<PgResult> Session::exec_all(const std::vector<Statement>& statements) {
    if (!conn_) throw DbUnavailable("connection lost");
    std::vector<Statement> all;
    all.reserve(queued_.size() + statements.size());
    for (const char* q : queued_) {
        if (q == kLimits) all.push_back({q, {limits_}});
        else all.push_back({q, {}});
    }
    queued_.clear();
    all.insert(all.end(), statements.begin(), statements.end());

    // Prepared before the batch (BEGIN, still queued, has not reached the server yet).
    std::vector<const char*> names;
    names.reserve(all.size());
    for (const Statement& st : all) names.push_back(db_.prepared(conn_, st.sql));
    if (!db_.connection_is(conn_)) {
        conn_ = nullptr;
        throw DbUnavailable("connection lost");
    }
    if (PQenterPipelineMode(conn_) != 1) fail(nullptr);
    bool sent = true;
    for (std::size_t k = 0; k < all.size(); ++k) {
        const Statement& st = all[k];
        std::vector<const char*> values;
        values.reserve(st.params.size());
        for (const SqlParam& p : st.params) values.push_back(p ? p->c_str() : nullptr);
        const char* name = names[k];
        int sent_one = name ? PQsendQueryPrepared(conn_, name, static_cast<int>(values.size()), values.data(),
                                                  nullptr, nullptr, 0)
                            : PQsendQueryParams(conn_, st.sql, static_cast<int>(values.size()), nullptr,
                                                values.data(), nullptr, nullptr, 0);
        if (sent_one != 1) {
            sent = false;
            break;
        }
    }
    if (!sent || PQpipelineSync(conn_) != 1) {
        PQexitPipelineMode(conn_);
        fail(nullptr);
    }
    // Each statement answers with its result and then a null; the sync point ends the batch.
    std::vector<PgResult> results;
    results.reserve(all.size());
    PgResult first_error;
    for (std::size_t i = 0; i < all.size(); ++i) {
        PgResult r(PQgetResult(conn_));
        if (!r) break;   // the connection failed: no more answers
        while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
        ExecStatusType st = PQresultStatus(r.get());
        if (!first_error && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) first_error = std::move(r);
        results.push_back(std::move(r));
    }
    for (;;) {   // through the sync result, whatever came before it
        PgResult r(PQgetResult(conn_));
        if (!r || PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) break;
    }
    PQexitPipelineMode(conn_);
    if (first_error || results.size() != all.size()) fail(first_error.get());
    std::vector<PgResult> mine;
    for (std::size_t i = all.size() - statements.size(); i < all.size(); ++i) mine.push_back(std::move(results[i]));
    return mine;
}

void Session::begin() {
    queued_.push_back(kBegin);
    in_transaction_ = true;
    if (const auto& deadline = db_.deadline()) {
        // Whole milliseconds left, at least 1 (0 would mean "no limit" to PostgreSQL). Both
        // limits are LOCAL: they end with this transaction, and travel in BEGIN's round trip.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
        long long ms = std::max<long long>(1, left.count());
        limits_ = std::to_string(ms);
        queued_.push_back(kLimits);
    }
}

void Session::commit() {
    PgResult r = exec("COMMIT");
    in_transaction_ = false;
    // COMMIT of a transaction that failed earlier "succeeds" with the tag ROLLBACK.
    if (std::strcmp(PQcmdStatus(r.get()), "COMMIT") != 0) throw DbError("", "transaction rolled back at COMMIT");
}

void Session::rollback() {
    bool begun_on_server = !queued(kBegin);
    queued_.clear();
    in_transaction_ = false;  // whatever happens: the server has no transaction left, or the connection is gone
    if (begun_on_server) exec("ROLLBACK");
}

void Session::savepoint() { queued_.push_back(kSavepoint); }

void Session::rollback_to_savepoint() {
    if (queued(kSavepoint)) {   // nothing ran since: nothing to undo
        queued_.erase(std::remove(queued_.begin(), queued_.end(), kSavepoint), queued_.end());
        return;
    }
    exec("ROLLBACK TO SAVEPOINT paygate_work");
}

// --- payments -------------------------------------------------------------------------------

// $1 client id, $2 currency, $3 amount in minor units, $4 method_id, $5 recipient_id, $6 sender_id,
// $7 sender's method_id (NULL when not given), $8 actor, $9 idempotency_token.
const char* const kCreatePaymentSql =
    "WITH payment AS ("
    " INSERT INTO payments (client_id, status, currency, amount_minor, method_id, recipient_id, sender_id,"
    " sender_method_id)"
    " VALUES ($1::bigint, 'created', $2::text, $3::numeric, $4::text, $5::text, $6::text, $7::text)"
    " RETURNING id)"
    " INSERT INTO payment_events (payment_id, action, from_status, to_status, actor, idempotency_token)"
    " SELECT id, 'create', NULL, 'created', $8::text, $9::uuid FROM payment"
    " RETURNING payment_id";

std::string create_payment(Session& s, const std::string& client_id, const std::string& actor,
                           const CreateRequest& request) {
    PgResult r = s.exec(kCreatePaymentSql, {
                                               client_id,
                                               std::string(request.money.amount.currency->code),
                                               request.money.amount.minor_units,
                                               request.money.method_id,
                                               request.recipient_id,
                                               request.sender_id,
                                               request.sender_method_id,
                                               actor,
                                               request.idempotency_token,
                                           });
    if (PQntuples(r.get()) != 1) throw DbError("", "create payment returned no row");
    return value(r.get(), 0, 0);
}

std::optional<PaymentRow> find_payment(Session& s, const std::string& id, bool for_update) {
    static const char* const kSelect =
        "SELECT id, client_id, status, currency, amount_minor, method_id, recipient_id, sender_id,"
        " sender_method_id, reversal_requested, " PAYGATE_UTC_US("created_at") ", " PAYGATE_UTC_US("updated_at")
        ", captured_minor, refunded_minor, provider, decline_reason FROM payments WHERE id = $1::uuid";
    static const char* const kSelectForUpdate =
        "SELECT id, client_id, status, currency, amount_minor, method_id, recipient_id, sender_id,"
        " sender_method_id, reversal_requested, " PAYGATE_UTC_US("created_at") ", " PAYGATE_UTC_US("updated_at")
        ", captured_minor, refunded_minor, provider, decline_reason FROM payments WHERE id = $1::uuid FOR UPDATE";
    PgResult r = s.exec(for_update ? kSelectForUpdate : kSelect, {id});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    PaymentRow row;
    row.id = value(p, 0, 0);
    row.client_id = value(p, 0, 1);
    row.status = value(p, 0, 2);
    row.currency = value(p, 0, 3);
    row.amount_minor = value(p, 0, 4);
    row.method_id = value(p, 0, 5);
    row.recipient_id = value(p, 0, 6);
    row.sender_id = value(p, 0, 7);
    row.sender_method_id = nullable(p, 0, 8);
    row.reversal_requested = value(p, 0, 9) == "t";
    row.created_at = value(p, 0, 10);
    row.updated_at = value(p, 0, 11);
    row.captured_minor = value(p, 0, 12);
    row.refunded_minor = value(p, 0, 13);
    row.provider = nullable(p, 0, 14);
    row.decline_reason = nullable(p, 0, 15);
    return row;
}

namespace {
const char* const kFindPaymentStatusSql = "SELECT client_id, status FROM payments WHERE id = $1::uuid";

std::optional<PaymentStatusRow> status_row(const PgResult& r) {
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return PaymentStatusRow{value(r.get(), 0, 0), value(r.get(), 0, 1)};
}
}  // namespace

std::optional<PaymentStatusRow> find_payment_status(Session& s, const std::string& id) {
    return status_row(s.exec(kFindPaymentStatusSql, {id}));
}

std::vector<std::optional<PaymentStatusRow>> find_payment_statuses(Session& s, const std::vector<std::string>& ids) {
    std::vector<Session::Statement> statements;
    statements.reserve(ids.size());
    for (const std::string& id : ids) statements.push_back({kFindPaymentStatusSql, {id}});
    std::vector<std::optional<PaymentStatusRow>> rows;
    rows.reserve(ids.size());
    for (const PgResult& r : s.exec_all(statements)) rows.push_back(status_row(r));
    return rows;
}

namespace {

void expect_one_row(const PgResult& r, const char* what) {
    const char* n = PQcmdTuples(r.get());
    if (std::strcmp(n, "1") != 0) throw DbError("", std::string(what) + " changed " + n + " rows, expected 1");
}

}  // namespace

void update_money(Session& s, const std::string& id, const MoneyInfo& money) {
    PgResult r = s.exec(
        "UPDATE payments SET currency = $2::text, amount_minor = $3::numeric, method_id = $4::text"
        " WHERE id = $1::uuid",
        {id, std::string(money.amount.currency->code), money.amount.minor_units, money.method_id});
    expect_one_row(r, "edit");
}

void update_cancelled(Session& s, const std::string& id, PaymentStatus to, CancelReason reason,
                      bool reversal_requested) {
    PgResult r = s.exec(
        "UPDATE payments SET status = $2::text, cancel_reason = $3::text,"
        " reversal_requested = reversal_requested OR $4::boolean WHERE id = $1::uuid",
        {id, std::string(status_name(to)), std::string(reason_name(reason)),
         std::string(reversal_requested ? "true" : "false")});
    expect_one_row(r, "cancel");
}

void update_accepted(Session& s, const std::string& id, PaymentStatus to, const std::string& accept_info_json) {
    PgResult r = s.exec("UPDATE payments SET status = $2::text, accept_info = $3::jsonb WHERE id = $1::uuid",
                        {id, std::string(status_name(to)), accept_info_json});
    expect_one_row(r, "accept");
}

void insert_event(Session& s, const PaymentEvent& e) {
    s.exec(
        "INSERT INTO payment_events (payment_id, action, from_status, to_status, actor, reason, idempotency_token)"
        " VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::uuid)",
        {e.payment_id, e.action, e.from_status, e.to_status, e.actor, e.reason, e.idempotency_token});
}

void set_provider(Session& s, const std::string& id, const std::string& provider) {
    expect_one_row(s.exec("UPDATE payments SET provider = $2::text WHERE id = $1::uuid", {id, provider}), "provider");
}

std::string reserve_refund(Session& s, const std::string& id, const std::optional<std::string>& amount_minor) {
    PgResult r = s.exec(
        "WITH ask AS (SELECT id, coalesce($2::numeric, captured_minor - refunded_minor) AS amount"
        " FROM payments WHERE id = $1::uuid)"
        " UPDATE payments p SET refunded_minor = p.refunded_minor + ask.amount FROM ask"
        " WHERE p.id = ask.id AND ask.amount > 0 AND p.refunded_minor + ask.amount <= p.captured_minor"
        " RETURNING ask.amount",
        {id, amount_minor});
    if (PQntuples(r.get()) != 1) return {};
    return value(r.get(), 0, 0);
}

bool has_open_operation(Session& s, const std::string& payment_id, const std::string& kind) {
    PgResult r = s.exec("SELECT 1 FROM provider_operations WHERE payment_id = $1::uuid AND kind = $2::text"
                        " AND state NOT IN ('completed', 'declined') LIMIT 1",
                        {payment_id, kind});
    return PQntuples(r.get()) == 1;
}

std::vector<ReversalPart> plan_reversals(Session& s, const std::string& payment_id, const std::string& amount_minor) {
    // left: what each completed charge still holds; before: what the older charges hold. Each
    // charge gives min(left, what the older ones did not cover); `covered` checks the total.
    PgResult r = s.exec(
        "WITH charge AS ("
        " SELECT c.id, c.created_at, c.amount_minor - coalesce((SELECT sum(v.amount_minor) FROM provider_operations v"
        " WHERE v.original_id = c.id AND v.state <> 'declined'), 0) AS left_minor"
        " FROM provider_operations c WHERE c.payment_id = $1::uuid AND c.kind IN ('charge', 'extra_charge')"
        " AND c.state = 'completed'),"
        " run AS (SELECT id, created_at, left_minor,"
        " sum(left_minor) OVER (ORDER BY created_at, id) - left_minor AS before FROM charge WHERE left_minor > 0),"
        " part AS (SELECT id, created_at, least(left_minor, $2::numeric - before) AS amount FROM run"
        " WHERE before < $2::numeric)"
        " SELECT id, amount, sum(amount) OVER () = $2::numeric AS covered FROM part ORDER BY created_at, id",
        {payment_id, amount_minor});
    std::vector<ReversalPart> parts;
    const int rows = PQntuples(r.get());
    if (rows == 0 || value(r.get(), 0, 2) != "t") return parts;
    for (int i = 0; i < rows; ++i) parts.push_back(ReversalPart{value(r.get(), i, 0), value(r.get(), i, 1)});
    return parts;
}

// --- idempotency keys ------------------------------------------------------------------------

KeyLookup lock_and_find_key(Session& s, const std::string& scope) {
    // One round trip; the lookup runs after the lock is taken, with a snapshot of its own, so it
    // sees an outcome committed by whoever held the lock before us.
    std::vector<PgResult> r = s.exec_all({
        {"SELECT pg_try_advisory_xact_lock(hashtextextended($1::text, 0))", {scope}},
        {"SELECT request_hash, response_status, response_body,"
         " floor(extract(epoch FROM expires_at - now()) * 1000)::bigint FROM idempotency_keys"
         " WHERE scope = $1::text AND expires_at > now()",
         {scope}},
    });
    if (PQntuples(r[0].get()) != 1) throw DbError("", "advisory lock returned no row");
    KeyLookup out;
    out.locked = value(r[0].get(), 0, 0) == "t";
    if (!out.locked || PQntuples(r[1].get()) == 0) return out;
    StoredOutcome stored;
    stored.request_hash = value(r[1].get(), 0, 0);
    int status = std::atoi(PQgetvalue(r[1].get(), 0, 1));
    if (status < 100 || status > 599) throw DbError("", "idempotency key with a bad response_status");
    stored.status = static_cast<std::uint16_t>(status);
    stored.body = value(r[1].get(), 0, 2);
    long long left_ms = std::atoll(PQgetvalue(r[1].get(), 0, 3));
    stored.expires_in_ms = left_ms > 0 ? static_cast<std::uint64_t>(left_ms) : 0;
    out.stored = std::move(stored);
    return out;
}

bool record_key(Session& s, const KeyRecord& k) {
    // ON CONFLICT replaces only an expired row: a live one is someone else's recorded outcome.
    PgResult r = s.exec(
        "INSERT INTO idempotency_keys (scope, client_id, route, request_hash, response_status, response_body,"
        " expires_at)"
        " VALUES ($1::text, $2::bigint, $3::text, $4::text, $5::integer, $6::text,"
        " now() + $7::integer * interval '1 second')"
        " ON CONFLICT (scope) DO UPDATE SET client_id = EXCLUDED.client_id, route = EXCLUDED.route,"
        " request_hash = EXCLUDED.request_hash, response_status = EXCLUDED.response_status,"
        " response_body = EXCLUDED.response_body, created_at = now(), expires_at = EXCLUDED.expires_at"
        " WHERE idempotency_keys.expires_at <= now()",
        {k.scope, k.client_id, k.route, k.request_hash, std::to_string(k.status), k.body,
         std::to_string(k.retention_s)});
    return std::strcmp(PQcmdTuples(r.get()), "1") == 0;
}

long purge_expired_keys(Session& s, int batch) {
    PgResult r = s.exec(
        "DELETE FROM idempotency_keys WHERE scope IN ("
        " SELECT scope FROM idempotency_keys WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT $1::integer FOR UPDATE SKIP LOCKED)",
        {std::to_string(batch)});
    return std::atol(PQcmdTuples(r.get()));
}

// --- tokens ----------------------------------------------------------------------------------

// Ordered by the version index itself: no sort (an outer ORDER BY over a join spilled 50,000 rows
// to disk per page).
const char* const kTokenChangesSql =
    "SELECT (SELECT coalesce(max(version), 0) FROM api_tokens)::bigint,"
    " version, decode(token_sha256, 'hex'), client_id, revoked_at IS NULL, coalesce(partner, '')"
    " FROM api_tokens WHERE version > $1::bigint ORDER BY version LIMIT $2::integer";

const char* const kTokenNewestSql = "SELECT coalesce(max(version), 0)::bigint FROM api_tokens";

}  // namespace paygate::daemon
