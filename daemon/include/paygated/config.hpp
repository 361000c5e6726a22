// paygated's configuration: `key = value` lines parsed into a Config (plain C++, no I/O but load_config).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace paygate::daemon {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

// "debug" | "info" | "warn" | "error".
bool parse_log_level(std::string_view name, LogLevel& out);
const char* log_level_name(LogLevel level);

// Test-only fault injection, armed by the environment variable PAYGATED_TEST_FAULT (never by the
// configuration file). KillAfterCommit: the daemon SIGKILLs itself right after the first COMMIT
// that records an idempotency key, before the reply leaves (docs/idempotency.md).
// StopBeforeCommit: the daemon SIGSTOPs itself right before the first COMMIT that would record an
// idempotency key (the transaction holds the key's lock, idle), once per process: a frozen daemon.
// JanitorStall: the janitor's first purge waits 2 s between opening its session and its first
// statement, so a test can take PostgreSQL away in that window.
// The switch exists only in test builds (PAYGATED_TEST_HOOKS, defined by the Debug build): a
// release build has neither the variable's name nor the faults; test_fault stays None there.
enum class TestFault { None, KillAfterCommit, StopBeforeCommit, JanitorStall };
#ifdef PAYGATED_TEST_HOOKS
inline constexpr const char* kTestFaultEnv = "PAYGATED_TEST_FAULT";

// "" (or unset: pass nullptr) -> None; "kill-after-commit" -> KillAfterCommit;
// "stop-before-commit" -> StopBeforeCommit; "janitor-stall" -> JanitorStall; anything else false.
bool parse_test_fault(const char* value, TestFault& out);
#endif

struct Config {
    std::vector<std::string> listen;       // ZeroMQ endpoints the front ROUTER binds (ipc:// or tcp://)
    unsigned workers = 4;                  // worker threads, each with its own PostgreSQL connection
    std::string database;                  // libpq conninfo (key=value string or postgresql:// URI)
    unsigned socket_mode = 0660;           // chmod of ipc:// socket files after bind
    LogLevel log_level = LogLevel::Info;
    unsigned db_retry_max_ms = 2000;       // cap of the reconnect backoff
    unsigned queue_max_depth = 1000;       // requests waiting for a worker; beyond: 503 overloaded
    unsigned queue_max_age_ms = 2000;      // longest wait for a worker; beyond: 503 overloaded
    unsigned shutdown_timeout_ms = 10000;  // how long SIGTERM waits for in-flight requests
    unsigned idempotency_retention_s = 86400;    // how long a key's recorded outcome is replayed
    unsigned idempotency_purge_interval_s = 60;  // how often the janitor deletes expired keys
    unsigned idempotency_lease_ms = 10000;       // idle_in_transaction_session_timeout: the in-flight lease
    TestFault test_fault = TestFault::None;      // from $PAYGATED_TEST_FAULT (paygated_main), not the file

    // The link to nginx (docs/security.md): CURVE unless `curve = off` says otherwise, explicitly.
    bool curve = true;
    std::string curve_secret_key;                // this daemon's secret key file (0600)
    std::string curve_allowed_keys;              // the module public keys allowed to connect

    // Durable tasks (docs/tasks.md): runner threads have their own connections, apart from the API's.
    unsigned task_workers = 2;                   // 0: this daemon runs no tasks
    unsigned task_lease_ms = 60000;              // a taken task is another daemon's again after this
    unsigned task_poll_ms = 200;                 // idle runners look for due work this often
    unsigned task_max_attempts = 12;             // failed attempts before a task is dead
    unsigned task_backoff_base_ms = 500;         // first retry delay; doubled per attempt, with jitter
    unsigned task_backoff_max_ms = 300000;       // cap of the retry delay
    unsigned status_check_base_ms = 1000;        // first re-check of an operation still open
    unsigned status_check_max_ms = 600000;       // cap of the growing re-check interval

    // Providers (docs/providers/): routing by currency, "*" for any; first match wins.
    std::vector<std::pair<std::string, std::string>> provider_routes;   // (currency or "*", provider)
    unsigned provider_connect_timeout_ms = 3000;
    unsigned provider_timeout_ms = 10000;        // whole call; past it the outcome is unknown
    std::string sky_technologies_url;            // base URL, e.g. https://api.sky.example
    std::string sky_technologies_merchant_id;
    std::string sky_technologies_payment_key;    // PEM file: ECDSA P-521 private key for charges
    std::string sky_technologies_reversal_key;   // PEM file: the separate pair for reversals
    std::string mserver_url;                     // base URL of the mserver wallet API (seed 003)
    std::string mserver_login;                   // HTTP Basic user name at mserver
    std::string mserver_password_file;           // file holding the HTTP Basic password (one line)
    std::string callback_base_url;               // where providers reach our callback proxy
    std::string callback_keys;                   // capability keyring file (shared with nginx)

    // The ZooTicket merchant API (docs/partners/zooticket.md).
    std::vector<std::string> customer_data_keys; // "ID FILE": AES-256-GCM keys of personal data; first seals
    std::string zooticket_page_url;              // public base URL of the hosted payment page
    unsigned zooticket_session_lifetime_s = 900; // a session unpaid this long expires
    bool zooticket_allow_http_loopback = false;  // dev: return/cancel URLs may be http://127.0.0.1
};

// One entry of the key table (for docs and error messages).
struct ConfigKey {
    const char* name;
    bool repeatable;
    const char* help;
};
const std::vector<ConfigKey>& config_keys();

// Parses configuration text: one `key = value` per line; blank lines and lines whose first
// non-blank character is '#' are ignored (there are no trailing comments: a conninfo password may
// hold a '#'). Keys not given keep their defaults. On failure returns false and sets `error` to
// "<origin>:<line>: <what is wrong>". Says nothing about keys that are missing: see validate_for_daemon.
bool parse_config(std::string_view text, std::string_view origin, Config& out, std::string& error);

// Reads and parses the file at `path` (error names the path, or says why it could not be read).
bool load_config(const std::string& path, Config& out, std::string& error);

// Reads a whole file; on failure `error` is "<path>: <why>".
bool read_text_file(const std::string& path, std::string& out, std::string& error);

// What paygated needs beyond a well-formed file: at least one `listen` and a `database`.
bool validate_for_daemon(const Config& config, std::string& error);

}  // namespace paygate::daemon
