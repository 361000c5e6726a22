// Every SQL statement paygated's request handlers run (payments, their history, the task outbox,
// the token list for the module), over a Session that turns libpq failures into exceptions.
//
// Handlers never build SQL: they call these functions, which use parameterized queries only.
// Failures are DbUnavailable (no connection, or it broke: 503) or DbError (anything else: 500,
// logged, never shown to the caller). A Session rolls back an open transaction when it dies.
#pragma once

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
};

using SqlParam = std::optional<std::string>;  // nullopt is SQL NULL

class Session {
public:
    // Takes the worker's connection; throws DbUnavailable when there is none.
    explicit Session(Db& db);
    ~Session();  // ROLLBACK if a transaction is still open
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void begin();
    void commit();

    // Runs one parameterized statement (text parameters, text results). Throws DbUnavailable or
    // DbError unless it succeeded.
    PgResult exec(const char* sql, const std::vector<SqlParam>& params = {});

private:
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

// Queues provider work in the outbox (kind "charge" or "reversal").
void insert_task(Session& s, const std::string& kind, const std::string& payment_id);

// --- tokens (route auth.tokens) ---------------------------------------------------------------

struct TokenEntry {
    std::string sha256;     // lower-case hex
    std::string client_id;  // decimal
};

struct TokenSnapshot {
    std::string version;              // max(api_tokens.version), decimal ("0" when there are none)
    bool unchanged = false;           // version equals the caller's `since` (not 0): no list was read
    std::vector<TokenEntry> tokens;   // every non-revoked token (empty when unchanged)
};

// Reads the version and, unless it equals `since` (canonical decimal; "0" = the caller holds no
// list and always gets one), the live tokens: both from one snapshot, in one statement.
TokenSnapshot read_tokens(Session& s, const std::string& since);

}  // namespace paygate::daemon
