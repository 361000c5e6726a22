// PostgreSQL access for one thread: connection defaults, lazy connect, reconnect backoff.
//
// A Db belongs to exactly one worker thread (libpq connections are not shared). connection()
// connects on first use; while PostgreSQL is unreachable it retries with exponential backoff
// (paced by a RetryGate the workers of a daemon share) and, between attempts, returns nullptr at
// once so handlers fail fast with 503 instead of blocking. A connect attempt is bounded by
// connect_timeout (added when the conninfo has none).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <libpq-fe.h>

#include "paygated/backoff.hpp"

namespace paygate::daemon {

struct PgResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
struct PgConnDeleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;

// Seconds libpq may spend on one connect attempt when the conninfo does not say.
inline constexpr const char* kDefaultConnectTimeout = "3";

// Does `conninfo` parse (key=value string or URI)? On failure `error` says why, without the value.
bool check_conninfo(const std::string& conninfo, std::string& error);

// "host=… port=… dbname=… user=…" of a conninfo, for logs: never the password.
std::string describe_conninfo(const std::string& conninfo);

// Connects (blocking, bounded by connect_timeout) with paygate's defaults for what `conninfo`
// leaves unset: connect_timeout, TCP keepalives, tcp_user_timeout, application_name. On failure
// returns null and `error` holds libpq's message on one line.
PgConn pg_connect(const std::string& conninfo, const char* application_name, std::string& error);

// libpq's last error message of a connection or a result, on one line.
std::string pg_error_line(const PGconn* conn);
std::string pg_error_line(const PGresult* result);

class Db {
public:
    // `worker` names the owner in log lines (worker=<id>). With lease_ms > 0 every connection
    // gets idle_in_transaction_session_timeout = lease_ms: the server ends a session that sits in
    // an open transaction that long (a frozen daemon), which releases its transaction's locks,
    // the in-flight marker of an idempotency key among them (docs/idempotency.md, "The lease").
    Db(std::string conninfo, std::shared_ptr<RetryGate> retry, int worker, unsigned lease_ms = 0);
    // The same for a thread that is not a worker; `who` appears as worker=<who> (e.g. "janitor").
    Db(std::string conninfo, std::shared_ptr<RetryGate> retry, std::string who, unsigned lease_ms = 0);
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    // An open, idle connection, or nullptr while the database is unavailable (the connect
    // attempt just failed, or the backoff since the last failure has not run out yet).
    // Drops a connection the server has closed (restart, idle kill) and leaves no transaction
    // open from a previous request.
    PGconn* connection();

    // Call after a command failed. If the connection broke, drops it (the next connection()
    // reconnects) and returns true; an ordinary SQL error returns false.
    bool drop_if_broken();

    // Runs `sql` (no parameters). Null when the database is unavailable; otherwise the result,
    // whatever its status (a broken connection is dropped already).
    PgResult exec(const char* sql);

    int worker() const { return worker_; }
    // Holds an open connection (as of its last use).
    bool connected() const { return conn_ != nullptr; }

    // The deadline of the request this thread is serving (none for tasks and the janitor). Each
    // transaction begun under it runs with statement_timeout and lock_timeout set to the time
    // left, so a lock wait never holds a worker after the module has given up on the request.
    using Deadline = std::chrono::steady_clock::time_point;
    void set_deadline(std::optional<Deadline> deadline) { deadline_ = deadline; }
    const std::optional<Deadline>& deadline() const { return deadline_; }

    // The name of `sql` prepared on the current connection, preparing it on first use (one
    // round trip, once per connection): the server then skips parsing and planning on every
    // later run. Only plain DML/queries are prepared (not transaction control), at most
    // kMaxPrepared per connection; null for anything else, or when preparing failed (the caller
    // runs the statement unprepared and gets the server's error from that).
    const char* prepared(PGconn* conn, const char* sql);
    // The name of `sql` when already prepared on the current connection, else null.
    const char* prepared_already(const char* sql) const;
    static constexpr std::size_t kMaxPrepared = 256;
    bool connection_is(const PGconn* conn) const { return conn_.get() == conn; }

private:
    bool usable(PGconn* conn);
    void lost(const char* why);

    std::string conninfo_;
    int worker_;
    std::string who_;          // worker_ as text, or the name given
    unsigned lease_ms_;
    std::shared_ptr<RetryGate> retry_;
    PgConn conn_;
    std::optional<Deadline> deadline_;
    std::unordered_map<std::string, std::string> prepared_;   // SQL text -> statement name, of conn_
};

}  // namespace paygate::daemon
