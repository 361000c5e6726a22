// libpq connection handling for one thread: defaults, lazy connect, backoff, stale-connection checks.
#include "paygated/db.hpp"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <vector>

#include "paygated/log.hpp"

namespace paygate::daemon {

namespace {

struct ConninfoOptionsDeleter {
    void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};
using ConninfoOptions = std::unique_ptr<PQconninfoOption, ConninfoOptionsDeleter>;

ConninfoOptions parse(const std::string& conninfo, std::string* error) {
    char* err = nullptr;
    ConninfoOptions opts(PQconninfoParse(conninfo.c_str(), &err));
    if (!opts && error) {
        // libpq's message may quote a piece of the string; keep it out when a password is in there.
        std::string why = err ? err : "out of memory";
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        if (conninfo.find("password") != std::string::npos || conninfo.find('@') != std::string::npos) {
            why = "not a valid libpq connection string";
        }
        *error = why;
    }
    if (err) PQfreemem(err);
    return opts;
}

const char* find(const PQconninfoOption* opts, const char* keyword) {
    for (const PQconninfoOption* o = opts; o && o->keyword; ++o) {
        if (std::strcmp(o->keyword, keyword) == 0) return o->val && *o->val ? o->val : nullptr;
    }
    return nullptr;
}

std::string one_line(const char* text) {
    std::string out;
    bool space = false;
    for (const char* p = text ? text : ""; *p; ++p) {
        char c = *p;
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            space = !out.empty();
            continue;
        }
        if (space) out.push_back(' ');
        space = false;
        out.push_back(c);
    }
    return out.empty() ? "unknown error" : out;
}

// Server notices (and the FATAL a server sends before it closes an idle connection) go to the
// event log instead of libpq's default raw stderr print.
void notice_processor(void*, const char* message) {
    log::debug("db_notice").kv("message", one_line(message));
}

}  // namespace

bool check_conninfo(const std::string& conninfo, std::string& error) {
    return parse(conninfo, &error) != nullptr;
}

std::string describe_conninfo(const std::string& conninfo) {
    ConninfoOptions opts = parse(conninfo, nullptr);
    if (!opts) return "(invalid)";
    std::string out;
    for (const char* key : {"host", "hostaddr", "port", "dbname", "user"}) {
        if (const char* v = find(opts.get(), key)) {
            if (!out.empty()) out.push_back(' ');
            out += key;
            out.push_back('=');
            out += v;
        }
    }
    return out.empty() ? "(libpq defaults)" : out;
}

PgConn pg_connect(const std::string& conninfo, const char* application_name, std::string& error) {
    ConninfoOptions given = parse(conninfo, &error);
    if (!given) return nullptr;

    // The conninfo goes in as an expanded "dbname"; our defaults follow only for keys it leaves unset.
    std::vector<const char*> keys{"dbname"};
    std::vector<const char*> values{conninfo.c_str()};
    const std::pair<const char*, const char*> defaults[] = {
        {"connect_timeout", kDefaultConnectTimeout},
        {"keepalives_idle", "30"},
        {"keepalives_interval", "10"},
        {"keepalives_count", "3"},
        {"tcp_user_timeout", "30000"},
        {"application_name", application_name},
    };
    for (const auto& [key, value] : defaults) {
        if (!find(given.get(), key)) {
            keys.push_back(key);
            values.push_back(value);
        }
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

    PgConn conn(PQconnectdbParams(keys.data(), values.data(), 1));
    if (!conn) {
        error = "out of memory";
        return nullptr;
    }
    if (PQstatus(conn.get()) != CONNECTION_OK) {
        error = pg_error_line(conn.get());
        return nullptr;
    }
    PQsetNoticeProcessor(conn.get(), notice_processor, nullptr);
    return conn;
}

std::string pg_error_line(const PGconn* conn) { return one_line(conn ? PQerrorMessage(conn) : nullptr); }
std::string pg_error_line(const PGresult* result) {
    return one_line(result ? PQresultErrorMessage(result) : "out of memory");
}

Db::Db(std::string conninfo, std::shared_ptr<RetryGate> retry, int worker, unsigned lease_ms)
    : conninfo_(std::move(conninfo)), worker_(worker), who_(std::to_string(worker)), lease_ms_(lease_ms),
      retry_(std::move(retry)) {}

Db::Db(std::string conninfo, std::shared_ptr<RetryGate> retry, std::string who, unsigned lease_ms)
    : conninfo_(std::move(conninfo)), worker_(0), who_(std::move(who)), lease_ms_(lease_ms), retry_(std::move(retry)) {}

PGconn* Db::connection() {
    if (conn_) {
        if (usable(conn_.get())) return conn_.get();
        lost("connection closed");
    }
    if (!retry_->ready()) return nullptr;

    std::string error;
    auto started = Backoff::Clock::now();
    PgConn conn = pg_connect(conninfo_, "paygated", error);
    if (conn && lease_ms_ > 0) {
        // Session-level, so it holds for every transaction of this connection (under a pooler in
        // transaction mode set it on the role instead: docs/idempotency.md).
        std::string lease = std::to_string(lease_ms_);
        const char* values[] = {lease.c_str()};
        PgResult r(PQexecParams(conn.get(), "SELECT set_config('idle_in_transaction_session_timeout', $1, false)", 1,
                                nullptr, values, nullptr, nullptr, 0));
        if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
            error = "setting idle_in_transaction_session_timeout: " + pg_error_line(r.get());
            conn.reset();
        }
    }
    auto now = Backoff::Clock::now();
    if (!conn) {
        auto wait = retry_->failure();
        log::warn("db_unavailable")
            .kv("worker", who_)
            .kv("backoff_ms", static_cast<long long>(wait.count()))
            .kv("error", error);
        return nullptr;
    }
    retry_->success();
    log::info("db_connected")
        .kv("worker", who_)
        .kv("db", describe_conninfo(conninfo_))
        // which of several hosts answered (multi-host conninfo: the primary after a failover)
        .kv("server", std::string(PQhost(conn.get())) + ":" + PQport(conn.get()))
        .kv("server_version", PQserverVersion(conn.get()))
        .kv("ms", std::chrono::duration<double, std::milli>(now - started).count());
    conn_ = std::move(conn);
    prepared_.clear();
    return conn_.get();
}

bool Db::usable(PGconn* conn) {
    if (PQstatus(conn) != CONNECTION_OK) return false;
    switch (PQtransactionStatus(conn)) {
        case PQTRANS_IDLE:
            break;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR: {
            // A previous handler left a transaction open: never let it leak into this request.
            log::warn("db_leftover_transaction").kv("worker", who_);
            PgResult r(PQexec(conn, "ROLLBACK"));
            if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return false;
            break;
        }
        default:  // a command still active, or unknown: start over
            return false;
    }
    // Anything readable on an idle connection is the server talking first: usually the FATAL
    // it sends before closing (restart, pg_terminate_backend), then EOF.
    pollfd p{PQsocket(conn), POLLIN, 0};
    if (p.fd < 0) return false;
    for (int i = 0; i < 8; ++i) {
        int ready = ::poll(&p, 1, 0);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return false;
        if (ready == 0) break;
        if (!PQconsumeInput(conn)) return false;
        while (PGnotify* n = PQnotifies(conn)) PQfreemem(n);
        if (PQstatus(conn) != CONNECTION_OK) return false;
    }
    return PQstatus(conn) == CONNECTION_OK;
}

void Db::lost(const char* why) {
    log::warn("db_connection_lost").kv("worker", who_).kv("reason", why).kv("error", pg_error_line(conn_.get()));
    conn_.reset();
    prepared_.clear();
}

namespace {

// Statements worth preparing: queries and DML. Transaction control (BEGIN, COMMIT, SAVEPOINT…)
// and session settings stay unnamed.
bool preparable(const char* sql) {
    for (const char* verb : {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}) {
        std::size_t n = std::strlen(verb);
        if (std::strncmp(sql, verb, n) == 0 && (sql[n] == ' ' || sql[n] == '\n')) return true;
    }
    return false;
}

}  // namespace

const char* Db::prepared_already(const char* sql) const {
    auto it = prepared_.find(sql);
    return it == prepared_.end() ? nullptr : it->second.c_str();
}

const char* Db::prepared(PGconn* conn, const char* sql) {
    if (conn != conn_.get() || !preparable(sql)) return nullptr;
    if (const char* name = prepared_already(sql)) return name;
    if (prepared_.size() >= kMaxPrepared) return nullptr;
    std::string name = "pg" + std::to_string(prepared_.size() + 1);
    PgResult r(PQprepare(conn, name.c_str(), sql, 0, nullptr));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        drop_if_broken();
        return nullptr;
    }
    return prepared_.emplace(sql, std::move(name)).first->second.c_str();
}

bool Db::drop_if_broken() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_BAD) {
        lost("connection broken");
        return true;
    }
    return false;
}

PgResult Db::exec(const char* sql) {
    PGconn* conn = connection();
    if (!conn) return nullptr;
    PgResult result(PQexec(conn, sql));
    ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) drop_if_broken();
    return result;
}

}  // namespace paygate::daemon
