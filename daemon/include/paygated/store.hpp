// Every SQL statement paygated's request handlers run (payments, their history, the task outbox,
// the token list for the module), over a Session that turns libpq failures into exceptions.
//
// Handlers never build SQL: they call these functions, which use parameterized queries only.
// Failures are DbUnavailable (no connection, or it broke: 503) or DbError (anything else: 500,
// logged, never shown to the caller). A Session rolls back an open transaction when it dies.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "paygated/db.hpp"
#include "paygated/payment_rules.hpp"

namespace paygate::daemon {

// The database cannot be reached (connect failed, or backing off) or the connection broke.
struct DbUnavailable : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Any other failure of a statement. what() is the server's primary message (for the log only).
struct DbError : std::runtime_error {
    DbError(std::string state, const std::string& message) : std::runtime_error(message), sqlstate(std::move(state)) {}
    std::string sqlstate;  // e.g. "23503" (foreign key violation); "" when libpq gave none

    // statement_timeout (57014) or lock_timeout (55P03) of the request's deadline: nothing was
    // changed (the transaction rolled back) and the module has given up on the request.
    bool deadline_exceeded() const { return sqlstate == "57014" || sqlstate == "55P03"; }
};

using SqlParam = std::optional<std::string>;  // nullopt is SQL NULL

// A result field as text / as text or nothing for SQL NULL.
std::string value(const PGresult* r, int row, int col);
std::optional<std::string> nullable(const PGresult* r, int row, int col);

// "2026-11-24T10:00:00.123456Z": UTC, always six fraction digits (a SELECT expression).
#define PAYGATE_UTC_US(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

class Session {
public:
    // Takes the worker's connection; throws DbUnavailable when there is none.
    explicit Session(Db& db);
    ~Session();  // ROLLBACK if a transaction is still open
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void begin();
    // COMMIT; throws DbError if the server rolled back instead (the transaction had failed).
    void commit();
    void rollback();
    // A savepoint inside begin()/commit(), and the way back to it (which also recovers a
    // transaction a failed statement aborted): how the idempotency wrapper undoes a refused
    // request's work but keeps its transaction (and its key's lock) to record the refusal.
    void savepoint();
    void rollback_to_savepoint();
    bool in_transaction() const { return in_transaction_; }
    // The connection this session works on (null once it broke). Anything that needs the
    // connection while a Session lives must take it here: Db::connection() may replace it.
    PGconn* connection() const { return conn_; }

    // Runs one parameterized statement (text parameters, text results). Throws DbUnavailable or
    // DbError unless it succeeded.
    PgResult exec(const char* sql, const std::vector<SqlParam>& params = {});

    // Runs several statements in one round trip (libpq pipeline mode), in order, each with its
    // own snapshot; returns their results. Throws like exec() at the first failure.
    struct Statement {
        const char* sql;
        std::vector<SqlParam> params;
    };
    std::vector<PgResult> exec_all(const std::vector<Statement>& statements);

private:
    // BEGIN and SAVEPOINT need no answer of their own: they wait here and travel in the same
    // round trip as the next statement, which saves a round trip each on every transaction.
    std::vector<const char*> queued_;
    bool queued(const char* sql) const;
    std::string limits_;            // ms left of the request's deadline, for kLimits queued after BEGIN
    void fail(const PGresult* r);   // throws DbUnavailable or DbError

    Db& db_;
    PGconn* conn_;
    bool in_transaction_ = false;
};

// --- payments -------------------------------------------------------------------------------

struct PaymentRow {
    std::string id;                   // canonical lower-case UUID
    std::string client_id;            // decimal
    std::string status;               // a status_name()
    std::string currency;
    std::string amount_minor;         // decimal minor units
    std::string method_id;
    std::string recipient_id;
    std::string sender_id;
    std::optional<std::string> sender_method_id;
    bool reversal_requested = false;
    std::string created_at;           // "2026-11-24T10:00:00.123456Z"
    std::string updated_at;
    std::string captured_minor = "0"; // what the provider charged (charge + extra charges)
    std::string refunded_minor = "0"; // refunds and reversals asked (reserved) or done
    std::optional<std::string> provider;
    std::optional<std::string> decline_reason;
};

// The one statement that creates a payment: the payments row and its "create" event, atomically.
// bench/create_payment.sql runs the same statement through pgbench: keep the two in step.
extern const char* const kCreatePaymentSql;

// Runs kCreatePaymentSql for `client_id` (decimal) and returns the new payment's id. A client id
// with no clients row fails with DbError sqlstate "23503".
std::string create_payment(Session& s, const std::string& client_id, const std::string& actor,
                           const CreateRequest& request);

// The payment `id` (canonical UUID), or nothing. With for_update the row stays locked until the
// transaction ends (call inside begin()/commit()), so concurrent changes are serialized.
std::optional<PaymentRow> find_payment(Session& s, const std::string& id, bool for_update);

// Only client_id and status: what GET .../retrieve/status needs.
struct PaymentStatusRow {
    std::string client_id;
    std::string status;
};
std::optional<PaymentStatusRow> find_payment_status(Session& s, const std::string& id);
// The same for several payments in one round trip (a pipeline, outside any transaction): one
// entry per id, in order.
std::vector<std::optional<PaymentStatusRow>> find_payment_statuses(Session& s, const std::vector<std::string>& ids);

// The changes of the client actions (the caller has locked the row and checked the transition).
void update_money(Session& s, const std::string& id, const MoneyInfo& money);
void update_cancelled(Session& s, const std::string& id, PaymentStatus to, CancelReason reason,
                      bool reversal_requested);
void update_accepted(Session& s, const std::string& id, PaymentStatus to, const std::string& accept_info_json);

// One row of a payment's history.
struct PaymentEvent {
    std::string payment_id;
    std::string action;                           // action_name() or "create"
    std::optional<std::string> from_status;
    std::string to_status;
    std::string actor;                            // "client:12"
    std::optional<std::string> reason;
    std::optional<std::string> idempotency_token;
};
void insert_event(Session& s, const PaymentEvent& event);

// Records the provider the routing rule chose for a payment.
void set_provider(Session& s, const std::string& id, const std::string& provider);

// Reserves a refund of `amount_minor` (nothing: all that is left) on a locked payment: refunded
// grows, never beyond captured (the CHECK is the last line of defence). Returns the amount
// reserved, or "" when it does not fit.
std::string reserve_refund(Session& s, const std::string& id, const std::optional<std::string>& amount_minor);

// Does the payment have an operation of `kind` that is not final yet?
bool has_open_operation(Session& s, const std::string& payment_id, const std::string& kind);


// One reversal of a refund: the completed charge it returns money of, and how much.
struct ReversalPart {
    std::string original_id;
    std::string amount_minor;
};

// Where a refund of `amount_minor` goes back (call with the payment locked, before queueing it):
// the payment's completed charges (the first charge, then extra charges, oldest first), each up
// to what is left of it (its amount less its reversals that were not declined). A provider
// reverses one charge at most by that charge's amount, so a refund larger than what is left of
// one charge is one reversal per charge. Empty when the charges cannot cover the amount.
std::vector<ReversalPart> plan_reversals(Session& s, const std::string& payment_id, const std::string& amount_minor);

// --- idempotency keys (docs/idempotency.md) ---------------------------------------------------

// The recorded outcome of a key (rows past expires_at do not count).
struct StoredOutcome {
    std::string request_hash;
    std::uint16_t status = 0;
    std::string body;
    std::uint64_t expires_in_ms = 0;   // expires_at - now(): how much longer it is replayed
};

struct KeyLookup {
    bool locked = false;                   // false: a request with this key is running right now
    std::optional<StoredOutcome> stored;   // when locked: the key's recorded outcome, if any
};
// Takes the transaction-scoped advisory lock of `scope` (pg_try_advisory_xact_lock on
// hashtextextended(scope, 0)) without waiting and, once held, reads the key's recorded outcome;
// both in one round trip. Call inside begin()/commit(): the lock lasts until the transaction
// ends (or the session dies).
KeyLookup lock_and_find_key(Session& s, const std::string& scope);

struct KeyRecord {
    std::string scope;
    std::string client_id;     // decimal
    std::string route;
    std::string request_hash;
    std::uint16_t status = 0;  // 200-499
    std::string body;          // the reply body exactly as sent
    unsigned retention_s = 0;  // expires_at = now() + retention_s
};
// Records a key's outcome (replacing an expired row of the key). False when a live row exists
// already: someone else recorded this key (never happens while the key's lock is held; the primary
// key is the last line of defence, and the caller must then roll back its work).
bool record_key(Session& s, const KeyRecord& record);

// Deletes up to `batch` expired keys, oldest first, skipping rows other transactions hold
// (FOR UPDATE SKIP LOCKED: several daemons' janitors never wait on each other). Autocommit.
// Returns how many rows went.
long purge_expired_keys(Session& s, int batch);

// --- tokens (the token feed behind auth.tokens, token_feed.hpp) -------------------------------

// The token feed's statements, binary results. kTokenChangesSql: $1 the version it holds, $2 the
// page size; up to $2 rows above $1 in version order, each with max(api_tokens.version) (int8),
// version (int8), the raw SHA-256 (bytea, 32 bytes), client_id (int8) and live (bool: not
// revoked), partner (text: "" for a client token, the partner's name for a partner API key). kTokenNewestSql: max(api_tokens.version) alone (int8, 0 with no tokens), asked when
// there was no change, to notice a database that went back in time.
extern const char* const kTokenChangesSql;
extern const char* const kTokenNewestSql;

}  // namespace paygate::daemon
