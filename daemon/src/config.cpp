// Parsing of paygated.conf: a table of keys, each with its own value parser and bounds.
#include "paygated/config.hpp"

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace paygate::daemon {

namespace {

// Longest path a Unix domain socket can have (sizeof sockaddr_un::sun_path - 1 on Linux).
constexpr std::size_t kMaxIpcPath = 107;

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// Decimal (base 10) or octal (base 8) digits only, no sign, within [min, max].
bool parse_unsigned(std::string_view value, unsigned base, unsigned long min, unsigned long max,
                    unsigned& out, std::string& why) {
    if (value.empty()) {
        why = "expected a number";
        return false;
    }
    unsigned long v = 0;
    for (char c : value) {
        if (c < '0' || c >= static_cast<char>('0' + base)) {
            why = base == 8 ? "expected octal digits (0-7), e.g. 0660" : "expected a whole number";
            return false;
        }
        v = v * base + static_cast<unsigned long>(c - '0');
        if (v > max) break;
    }
    if (v < min || v > max) {
        auto show = [base](unsigned long n) {
            std::ostringstream s;
            if (base == 8 && n != 0) s << '0' << std::oct;
            s << n;
            return s.str();
        };
        why = "must be between " + show(min) + " and " + show(max);
        return false;
    }
    out = static_cast<unsigned>(v);
    return true;
}

bool set_listen(std::string_view v, Config& c, std::string& why) {
    std::string_view rest;
    if (v.substr(0, 6) == "tcp://") {
        rest = v.substr(6);
        std::size_t colon = rest.rfind(':');
        if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
            why = "a tcp endpoint needs a host and a port, e.g. tcp://127.0.0.1:5555";
            return false;
        }
    } else if (v.substr(0, 6) == "ipc://") {
        rest = v.substr(6);
        if (rest.empty()) {
            why = "an ipc endpoint needs a path, e.g. ipc:///run/paygate/paygated.sock";
            return false;
        }
        if (rest.size() > kMaxIpcPath) {
            why = "ipc socket path is longer than " + std::to_string(kMaxIpcPath) + " bytes";
            return false;
        }
    } else {
        why = "expected an endpoint starting with ipc:// or tcp://";
        return false;
    }
    for (const std::string& existing : c.listen) {
        if (existing == v) {
            why = "endpoint listed twice";
            return false;
        }
    }
    c.listen.emplace_back(v);
    return true;
}

bool set_workers(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 256, c.workers, why);
}

bool set_database(std::string_view v, Config& c, std::string&) {
    c.database = std::string(v);
    return true;
}

bool set_socket_mode(std::string_view v, Config& c, std::string& why) {
    if (v.size() > 4) {
        why = "expected at most 4 octal digits, e.g. 0660";
        return false;
    }
    return parse_unsigned(v, 8, 0, 0777, c.socket_mode, why);
}

bool set_log_level(std::string_view v, Config& c, std::string& why) {
    if (!parse_log_level(v, c.log_level)) {
        why = "expected debug, info, warn or error";
        return false;
    }
    return true;
}

bool set_db_retry_max_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 100, 600000, c.db_retry_max_ms, why);
}

bool set_queue_max_depth(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 1000000, c.queue_max_depth, why);
}

bool set_queue_max_age_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 3600000, c.queue_max_age_ms, why);
}

bool set_shutdown_timeout_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 0, 3600000, c.shutdown_timeout_ms, why);
}

bool set_idempotency_retention_s(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 31536000, c.idempotency_retention_s, why);
}

bool set_idempotency_purge_interval_s(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 86400, c.idempotency_purge_interval_s, why);
}

bool set_idempotency_lease_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 100, 3600000, c.idempotency_lease_ms, why);
}

bool set_task_workers(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 0, 64, c.task_workers, why);
}
bool set_task_lease_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1000, 3600000, c.task_lease_ms, why);
}
bool set_task_poll_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 60000, c.task_poll_ms, why);
}
bool set_task_max_attempts(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 1, 1000, c.task_max_attempts, why);
}
bool set_task_backoff_base_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 3600000, c.task_backoff_base_ms, why);
}
bool set_task_backoff_max_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 86400000, c.task_backoff_max_ms, why);
}
bool set_status_check_base_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 3600000, c.status_check_base_ms, why);
}
bool set_status_check_max_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 86400000, c.status_check_max_ms, why);
}
bool set_provider_connect_timeout_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 10, 600000, c.provider_connect_timeout_ms, why);
}
bool set_provider_timeout_ms(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 100, 600000, c.provider_timeout_ms, why);
}

bool is_known_provider(std::string_view name) { return name == "sky-technologies" || name == "mserver"; }

// "USD sky-technologies" or "* sky-technologies".
bool set_provider_route(std::string_view v, Config& c, std::string& why) {
    std::size_t sp = v.find_first_of(" \t");
    if (sp == std::string_view::npos) {
        why = "expected '<currency or *> <provider>', e.g. 'USD sky-technologies'";
        return false;
    }
    std::string_view currency = trim(v.substr(0, sp));
    std::string_view provider = trim(v.substr(sp));
    bool currency_ok = currency == "*" || (currency.size() >= 3 && currency.size() <= 5 &&
                                           std::all_of(currency.begin(), currency.end(),
                                                       [](char ch) { return ch >= 'A' && ch <= 'Z'; }));
    if (!currency_ok) {
        why = "the currency must be an upper-case code (USD) or *";
        return false;
    }
    if (!is_known_provider(provider)) {
        why = "unknown provider (known: sky-technologies, mserver)";
        return false;
    }
    c.provider_routes.emplace_back(std::string(currency), std::string(provider));
    return true;
}

bool set_http_url(std::string_view v, std::string& out, std::string& why) {
    if (v.substr(0, 7) != "http://" && v.substr(0, 8) != "https://") {
        why = "expected an http:// or https:// URL";
        return false;
    }
    while (!v.empty() && v.back() == '/') v.remove_suffix(1);
    out = std::string(v);
    return true;
}
bool set_sky_url(std::string_view v, Config& c, std::string& why) { return set_http_url(v, c.sky_technologies_url, why); }
bool set_callback_base_url(std::string_view v, Config& c, std::string& why) {
    return set_http_url(v, c.callback_base_url, why);
}
bool set_sky_merchant(std::string_view v, Config& c, std::string& why) {
    if (v.size() > 128) {
        why = "longer than 128 bytes";
        return false;
    }
    c.sky_technologies_merchant_id = std::string(v);
    return true;
}
bool set_sky_payment_key(std::string_view v, Config& c, std::string&) {
    c.sky_technologies_payment_key = std::string(v);
    return true;
}
bool set_sky_reversal_key(std::string_view v, Config& c, std::string&) {
    c.sky_technologies_reversal_key = std::string(v);
    return true;
}
bool set_mserver_url(std::string_view v, Config& c, std::string& why) { return set_http_url(v, c.mserver_url, why); }
bool set_mserver_login(std::string_view v, Config& c, std::string& why) {
    // HTTP Basic: a ':' would end the user name early.
    if (v.empty() || v.size() > 128 || v.find(':') != std::string_view::npos) {
        why = "expected 1-128 bytes without ':'";
        return false;
    }
    c.mserver_login = std::string(v);
    return true;
}
bool set_mserver_password_file(std::string_view v, Config& c, std::string&) {
    c.mserver_password_file = std::string(v);
    return true;
}
bool set_callback_keys(std::string_view v, Config& c, std::string&) {
    c.callback_keys = std::string(v);
    return true;
}

bool set_curve(std::string_view v, Config& c, std::string& why) {
    if (v == "on") c.curve = true;
    else if (v == "off") c.curve = false;
    else {
        why = "expected on or off";
        return false;
    }
    return true;
}
bool set_curve_secret_key(std::string_view v, Config& c, std::string&) {
    c.curve_secret_key = std::string(v);
    return true;
}
bool set_curve_allowed_keys(std::string_view v, Config& c, std::string&) {
    c.curve_allowed_keys = std::string(v);
    return true;
}

struct KeyDef {
    ConfigKey key;
    bool (*set)(std::string_view value, Config& config, std::string& why);
};

bool set_customer_data_key(std::string_view v, Config& c, std::string&) {
    c.customer_data_keys.emplace_back(v);
    return true;
}
bool set_zooticket_page_url(std::string_view v, Config& c, std::string& why) {
    return set_http_url(v, c.zooticket_page_url, why);
}
bool set_zooticket_session_lifetime_s(std::string_view v, Config& c, std::string& why) {
    return parse_unsigned(v, 10, 5, 86400, c.zooticket_session_lifetime_s, why);
}
bool set_zooticket_allow_http_loopback(std::string_view v, Config& c, std::string& why) {
    if (v == "on") c.zooticket_allow_http_loopback = true;
    else if (v == "off") c.zooticket_allow_http_loopback = false;
    else {
        why = "expected on or off";
        return false;
    }
    return true;
}

const KeyDef kKeys[] = {
    {{"listen", true, "ZeroMQ endpoint to bind (ipc://PATH or tcp://HOST:PORT); repeat for several"}, set_listen},
    {{"workers", false, "worker threads, each with its own PostgreSQL connection (1-256, default 4)"}, set_workers},
    {{"database", false, "libpq connection string or postgresql:// URI"}, set_database},
    {{"socket_mode", false, "octal mode applied to ipc:// socket files after bind (default 0660)"}, set_socket_mode},
    {{"log_level", false, "debug, info, warn or error (default info)"}, set_log_level},
    {{"db_retry_max_ms", false, "cap of the database reconnect backoff (100-600000, default 2000)"}, set_db_retry_max_ms},
    {{"queue_max_depth", false, "requests waiting for a worker beyond which new ones get 503 overloaded (1-1000000, default 1000)"},
     set_queue_max_depth},
    {{"queue_max_age_ms", false, "how long a request may wait for a worker before it gets 503 overloaded (1-3600000, default 2000)"},
     set_queue_max_age_ms},
    {{"shutdown_timeout_ms", false, "how long SIGTERM waits for in-flight requests (0-3600000, default 10000)"},
     set_shutdown_timeout_ms},
    {{"idempotency_retention_s", false,
      "seconds a recorded idempotency outcome is replayed before it expires (1-31536000, default 86400)"},
     set_idempotency_retention_s},
    {{"idempotency_purge_interval_s", false,
      "seconds between the janitor's purges of expired idempotency keys (1-86400, default 60)"},
     set_idempotency_purge_interval_s},
    {{"idempotency_lease_ms", false,
      "lease of an in-flight idempotency key: idle_in_transaction_session_timeout of the daemon's "
      "connections (100-3600000, default 10000)"},
     set_idempotency_lease_ms},
    {{"task_workers", false, "task runner threads, each with its own PostgreSQL connection (0-64, default 2; 0: none)"},
     set_task_workers},
    {{"task_lease_ms", false, "lease of a taken task; another daemon takes it once it runs out (1000-3600000, default 60000)"},
     set_task_lease_ms},
    {{"task_poll_ms", false, "how often idle task runners look for due work (10-60000, default 200)"}, set_task_poll_ms},
    {{"task_max_attempts", false, "failed attempts before a task is dead (1-1000, default 12)"}, set_task_max_attempts},
    {{"task_backoff_base_ms", false, "first retry delay of a failed task, doubled per attempt with jitter (default 500)"},
     set_task_backoff_base_ms},
    {{"task_backoff_max_ms", false, "cap of a failed task's retry delay (default 300000)"}, set_task_backoff_max_ms},
    {{"status_check_base_ms", false, "first re-check of a provider operation still open (default 1000)"},
     set_status_check_base_ms},
    {{"status_check_max_ms", false, "cap of the growing re-check interval (default 600000)"}, set_status_check_max_ms},
    {{"provider_route", true, "'<currency or *> <provider>': which provider charges a payment; first match wins"},
     set_provider_route},
    {{"provider_connect_timeout_ms", false, "connect timeout of provider calls (default 3000)"},
     set_provider_connect_timeout_ms},
    {{"provider_timeout_ms", false, "whole-call timeout of provider calls; past it the outcome is unknown (default 10000)"},
     set_provider_timeout_ms},
    {{"mserver_url", false, "base URL of the mserver wallet API (seed 003), e.g. https://wallet.example"}, set_mserver_url},
    {{"mserver_login", false, "HTTP Basic user name of paygate at mserver"}, set_mserver_login},
    {{"mserver_password_file", false, "file with the HTTP Basic password at mserver (first line; never inline)"},
     set_mserver_password_file},
    {{"sky_technologies_url", false, "base URL of the sky-technologies partner API"}, set_sky_url},
    {{"sky_technologies_merchant_id", false, "our merchant_id at sky-technologies"}, set_sky_merchant},
    {{"sky_technologies_payment_key", false, "PEM file: ECDSA P-521 private key that signs charges"},
     set_sky_payment_key},
    {{"sky_technologies_reversal_key", false, "PEM file: the separate ECDSA P-521 private key that signs reversals"},
     set_sky_reversal_key},
    {{"callback_base_url", false, "public base URL of nginx's callback proxy, e.g. https://pay.example/callbacks"},
     set_callback_base_url},
    {{"callback_keys", false, "capability keyring file (first key signs new callback URLs; nginx verifies with all)"},
     set_callback_keys},
    {{"customer_data_key", true, "'ID FILE': AES-256-GCM key (64 hex digits) sealing customers' personal data; first seals, all open"},
     set_customer_data_key},
    {{"zooticket_page_url", false, "public base URL of the hosted payment page, e.g. https://pay.example/pay"},
     set_zooticket_page_url},
    {{"zooticket_session_lifetime_s", false, "how long a ZooTicket payment session stays payable (default 900)"},
     set_zooticket_session_lifetime_s},
    {{"zooticket_allow_http_loopback", false, "on: return/cancel URLs may be http:// to loopback (dev only; default off)"},
     set_zooticket_allow_http_loopback},
    {{"curve", false, "on (default): the link to nginx uses CURVE and needs the two key files; off: plain, dev only"},
     set_curve},
    {{"curve_secret_key", false, "this daemon's CURVE secret key file (mode 0600; paygatectl keys generate)"},
     set_curve_secret_key},
    {{"curve_allowed_keys", false, "file of the module public keys allowed to connect (Z85, one per line)"},
     set_curve_allowed_keys},
};

std::string known_keys() {
    std::string out;
    for (const KeyDef& def : kKeys) {
        if (!out.empty()) out += ", ";
        out += def.key.name;
    }
    return out;
}

}  // namespace

bool parse_log_level(std::string_view name, LogLevel& out) {
    if (name == "debug") out = LogLevel::Debug;
    else if (name == "info") out = LogLevel::Info;
    else if (name == "warn") out = LogLevel::Warn;
    else if (name == "error") out = LogLevel::Error;
    else return false;
    return true;
}

const char* log_level_name(LogLevel level) {
    switch (level) {
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warn: return "warn";
        case LogLevel::Error: return "error";
    }
    return "info";
}

#ifdef PAYGATED_TEST_HOOKS
bool parse_test_fault(const char* value, TestFault& out) {
    std::string_view v = value ? value : "";
    if (v.empty()) out = TestFault::None;
    else if (v == "kill-after-commit") out = TestFault::KillAfterCommit;
    else if (v == "stop-before-commit") out = TestFault::StopBeforeCommit;
    else if (v == "janitor-stall") out = TestFault::JanitorStall;
    else return false;
    return true;
}
#endif

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys = [] {
        std::vector<ConfigKey> out;
        for (const KeyDef& def : kKeys) out.push_back(def.key);
        return out;
    }();
    return keys;
}

bool parse_config(std::string_view text, std::string_view origin, Config& out, std::string& error) {
    Config config;
    std::size_t first_seen[sizeof kKeys / sizeof kKeys[0]] = {};
    std::size_t line_no = 0;
    auto fail = [&](const std::string& what) {
        error = std::string(origin) + ":" + std::to_string(line_no) + ": " + what;
        return false;
    };

    while (!text.empty()) {
        ++line_no;
        std::size_t nl = text.find('\n');
        std::string_view line = trim(text.substr(0, nl));
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line = trim(line.substr(3));  // UTF-8 BOM
        if (line.empty() || line.front() == '#') continue;

        std::size_t eq = line.find('=');
        if (eq == std::string_view::npos) return fail("expected 'key = value'");
        std::string_view key = trim(line.substr(0, eq));
        std::string_view value = trim(line.substr(eq + 1));
        if (key.empty()) return fail("missing key before '='");

        const KeyDef* def = nullptr;
        std::size_t index = 0;
        for (; index < sizeof kKeys / sizeof kKeys[0]; ++index) {
            if (key == kKeys[index].key.name) {
                def = &kKeys[index];
                break;
            }
        }
        std::string k(key);
        if (!def) return fail("unknown key '" + k + "' (known keys: " + known_keys() + ")");
        if (value.empty()) return fail("missing value for '" + k + "'");
        if (!def->key.repeatable && first_seen[index] != 0) {
            return fail("'" + k + "' is already set on line " + std::to_string(first_seen[index]));
        }
        if (first_seen[index] == 0) first_seen[index] = line_no;
        std::string why;
        if (!def->set(value, config, why)) {
            // The database value may hold a password: never echo it.
            if (k == "database") return fail("bad value for 'database': " + why);
            return fail("bad value '" + std::string(value) + "' for '" + k + "': " + why);
        }
    }
    out = std::move(config);
    return true;
}

bool read_text_file(const std::string& path, std::string& out, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = path + ": cannot open: " + std::strerror(errno);
        return false;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        error = path + ": read error";
        return false;
    }
    out = text.str();
    return true;
}

bool load_config(const std::string& path, Config& out, std::string& error) {
    std::string text;
    return read_text_file(path, text, error) && parse_config(text, path, out, error);
}

bool validate_for_daemon(const Config& config, std::string& error) {
    if (config.listen.empty()) {
        error = "no 'listen' endpoint configured";
        return false;
    }
    if (config.database.empty()) {
        error = "no 'database' configured";
        return false;
    }
    // Fail closed: without keys the link is only plain when the file says `curve = off`.
    if (config.curve && (config.curve_secret_key.empty() || config.curve_allowed_keys.empty())) {
        error = "the link to nginx needs 'curve_secret_key' and 'curve_allowed_keys' (or 'curve = off' "
                "for a development setup without authentication)";
        return false;
    }
    if (!config.curve && (!config.curve_secret_key.empty() || !config.curve_allowed_keys.empty())) {
        error = "'curve = off' contradicts 'curve_secret_key'/'curve_allowed_keys': remove one or the other";
        return false;
    }
    for (const auto& route : config.provider_routes) {
        if (route.second != "sky-technologies") continue;
        const std::pair<const char*, const std::string*> needed[] = {
            {"sky_technologies_url", &config.sky_technologies_url},
            {"sky_technologies_merchant_id", &config.sky_technologies_merchant_id},
            {"sky_technologies_payment_key", &config.sky_technologies_payment_key},
            {"sky_technologies_reversal_key", &config.sky_technologies_reversal_key},
            {"callback_base_url", &config.callback_base_url},
            {"callback_keys", &config.callback_keys},
        };
        for (const auto& [name, value] : needed) {
            if (value->empty()) {
                error = std::string("provider_route names sky-technologies but '") + name + "' is not set";
                return false;
            }
        }
        if (config.sky_technologies_payment_key == config.sky_technologies_reversal_key) {
            error = "sky_technologies_reversal_key must be a key pair of its own, not the payment key";
            return false;
        }
        break;
    }
    for (const auto& route : config.provider_routes) {
        if (route.second != "mserver") continue;
        const std::pair<const char*, const std::string*> needed[] = {
            {"mserver_url", &config.mserver_url},
            {"mserver_login", &config.mserver_login},
            {"mserver_password_file", &config.mserver_password_file},
        };
        for (const auto& [name, value] : needed) {
            if (value->empty()) {
                error = std::string("provider_route names mserver but '") + name + "' is not set";
                return false;
            }
        }
        break;
    }
    if (config.task_backoff_max_ms < config.task_backoff_base_ms ||
        config.status_check_max_ms < config.status_check_base_ms) {
        error = "a *_max_ms backoff cap is below its *_base_ms";
        return false;
    }
    // One task step makes at most four provider calls in a row (initSession and the call, once
    // more with a fresh session if the provider forgot the cached one): all must end within the
    // lease, or another runner would take the task while a call is still out.
    if (std::uint64_t{4} * config.provider_timeout_ms >= config.task_lease_ms) {
        error = "task_lease_ms must exceed 4 x provider_timeout_ms (the calls of one task step must end within its lease)";
        return false;
    }
    return true;
}

}  // namespace paygate::daemon
