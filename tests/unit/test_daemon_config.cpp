// paygated.conf parsing: a full good file, defaults, and every class of bad line or value.
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "paygated/config.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using namespace paygate::daemon;

namespace {

// Parses `text` expecting failure; returns the error message.
std::string parse_error(const std::string& text) {
    Config config;
    std::string error;
    assert_false(parse_config(text, "t.conf", config, error));
    assert_false(error.empty());
    return error;
}

void expect_error(const std::string& text, const char* fragment) {
    std::string error = parse_error(text);
    if (error.find(fragment) == std::string::npos) {
        std::fprintf(stderr, "error \"%s\" lacks \"%s\"\n", error.c_str(), fragment);
        fail();
    }
}

void good_file(void**) {
    const char* text =
        "\xEF\xBB\xBF# paygated test config\n"
        "\n"
        "   # indented comment\n"
        "listen = ipc:///run/paygate/paygated.sock\n"
        "listen=tcp://127.0.0.1:5555\r\n"
        "\tworkers\t=\t12  \n"
        "database = host=db.internal port=5432 dbname=paygate user=paygate password=a#b=c\n"
        "socket_mode = 0640\n"
        "log_level = debug\n"
        "db_retry_max_ms = 5000\n"
        "shutdown_timeout_ms = 0\n"
        "idempotency_retention_s = 3600\n"
        "idempotency_purge_interval_s = 5\n"
        "idempotency_lease_ms = 2500\n"
        "curve_secret_key = /etc/paygate/paygated.key\n"
        "curve_allowed_keys = /etc/paygate/modules.keys\n";
    Config c;
    std::string error;
    assert_true(parse_config(text, "t.conf", c, error));
    assert_int_equal(c.listen.size(), 2);
    assert_string_equal(c.listen[0].c_str(), "ipc:///run/paygate/paygated.sock");
    assert_string_equal(c.listen[1].c_str(), "tcp://127.0.0.1:5555");
    assert_int_equal(c.workers, 12);
    // '#' and '=' inside a value are part of it: there are no trailing comments.
    assert_string_equal(c.database.c_str(), "host=db.internal port=5432 dbname=paygate user=paygate password=a#b=c");
    assert_int_equal(c.socket_mode, 0640);
    assert_true(c.log_level == LogLevel::Debug);
    assert_int_equal(c.db_retry_max_ms, 5000);
    assert_int_equal(c.shutdown_timeout_ms, 0);
    assert_int_equal(c.idempotency_retention_s, 3600);
    assert_int_equal(c.idempotency_purge_interval_s, 5);
    assert_int_equal(c.idempotency_lease_ms, 2500);
    assert_true(c.test_fault == TestFault::None);  // never from the file
    assert_true(c.curve);
    assert_string_equal(c.curve_secret_key.c_str(), "/etc/paygate/paygated.key");
    assert_string_equal(c.curve_allowed_keys.c_str(), "/etc/paygate/modules.keys");
    assert_true(validate_for_daemon(c, error));
}

void defaults(void**) {
    Config c;
    std::string error;
    assert_true(parse_config("listen = tcp://127.0.0.1:1\ndatabase = dbname=x\n", "t.conf", c, error));
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.socket_mode, 0660);
    assert_true(c.log_level == LogLevel::Info);
    assert_int_equal(c.db_retry_max_ms, 2000);
    assert_int_equal(c.shutdown_timeout_ms, 10000);
    assert_int_equal(c.idempotency_retention_s, 86400);
    assert_int_equal(c.idempotency_purge_interval_s, 60);
    assert_int_equal(c.idempotency_lease_ms, 10000);
    assert_true(c.test_fault == TestFault::None);
    // An empty file parses (all defaults) but is not enough to run the daemon.
    assert_true(parse_config("", "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "listen"));
    assert_true(parse_config("listen = tcp://127.0.0.1:1\n", "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "database"));
}

void bad_lines(void**) {
    expect_error("workers 4\n", "t.conf:1: expected 'key = value'");
    expect_error("# ok\n= 4\n", "t.conf:2: missing key");
    expect_error("workers =\n", "missing value for 'workers'");
    expect_error("workers =   \n", "missing value for 'workers'");
    expect_error("\n\nwrokers = 4\n", "t.conf:3: unknown key 'wrokers'");
    expect_error("wrokers = 4\n", "known keys: listen, workers");
    expect_error("Workers = 4\n", "unknown key 'Workers'");
    expect_error("workers = 4\nworkers = 5\n", "t.conf:2: 'workers' is already set on line 1");
    expect_error("log_level = info\nlog_level = info\n", "already set");
    expect_error("workers = 4 # eight\n", "bad value '4 # eight' for 'workers'");
}

void bad_numbers(void**) {
    for (const char* v : {"0", "257", "-1", "+4", "four", "4x", "4.0", "99999999999999999999", "0x10"}) {
        expect_error(std::string("workers = ") + v + "\n", "for 'workers'");
    }
    expect_error("workers = 0\n", "between 1 and 256");
    expect_error("workers = abc\n", "expected a whole number");
    for (const char* v : {"99", "600001", "-5", "1s", "2000ms"}) {
        expect_error(std::string("db_retry_max_ms = ") + v + "\n", "for 'db_retry_max_ms'");
    }
    for (const char* v : {"3600001", "-1", "10s", "1e4"}) {
        expect_error(std::string("shutdown_timeout_ms = ") + v + "\n", "for 'shutdown_timeout_ms'");
    }
}

void idempotency_keys_bounds(void**) {
    for (const char* v : {"0", "31536001", "-1", "1d", "24h", "86400s", "8.64e4"}) {
        expect_error(std::string("idempotency_retention_s = ") + v + "\n", "for 'idempotency_retention_s'");
    }
    expect_error("idempotency_retention_s = 0\n", "between 1 and 31536000");
    for (const char* v : {"0", "86401", "1m", "-5"}) {
        expect_error(std::string("idempotency_purge_interval_s = ") + v + "\n", "for 'idempotency_purge_interval_s'");
    }
    expect_error("idempotency_purge_interval_s = 0\n", "between 1 and 86400");
    // 0 would switch the lease off (idle_in_transaction_session_timeout = 0): a frozen daemon's
    // key would stay in progress forever.
    for (const char* v : {"0", "99", "3600001", "10s"}) {
        expect_error(std::string("idempotency_lease_ms = ") + v + "\n", "for 'idempotency_lease_ms'");
    }
    expect_error("idempotency_lease_ms = 0\n", "between 100 and 3600000");
    expect_error("idempotency_lease_ms = 1000\nidempotency_lease_ms = 1000\n", "already set on line 1");
    Config c;
    std::string error;
    assert_true(parse_config("idempotency_retention_s = 1\nidempotency_purge_interval_s = 86400\n"
                             "idempotency_lease_ms = 100\n",
                             "t.conf", c, error));
    assert_int_equal(c.idempotency_retention_s, 1);
    assert_int_equal(c.idempotency_purge_interval_s, 86400);
    assert_int_equal(c.idempotency_lease_ms, 100);
    assert_true(parse_config("idempotency_retention_s = 31536000\nidempotency_lease_ms = 3600000\n", "t.conf", c,
                             error));
    assert_int_equal(c.idempotency_retention_s, 31536000);
    assert_int_equal(c.idempotency_lease_ms, 3600000);
}

#ifdef PAYGATED_TEST_HOOKS   // the fault switch exists in test (Debug) builds only
void test_fault_from_environment_value(void**) {
    TestFault f = TestFault::KillAfterCommit;
    assert_true(parse_test_fault(nullptr, f));
    assert_true(f == TestFault::None);
    f = TestFault::KillAfterCommit;
    assert_true(parse_test_fault("", f));
    assert_true(f == TestFault::None);
    assert_true(parse_test_fault("kill-after-commit", f));
    assert_true(f == TestFault::KillAfterCommit);
    f = TestFault::None;
    assert_true(parse_test_fault("stop-before-commit", f));
    assert_true(f == TestFault::StopBeforeCommit);
    f = TestFault::StopBeforeCommit;
    assert_true(parse_test_fault("", f));   // unset again: nothing armed
    assert_true(f == TestFault::None);
    for (const char* bad : {"kill", "KILL-AFTER-COMMIT", "kill-after-commit ", "1", "yes", "stop",
                            "STOP-BEFORE-COMMIT", " stop-before-commit", "stop-after-commit",
                            "kill-after-commit,stop-before-commit"}) {
        f = TestFault::None;
        assert_false(parse_test_fault(bad, f));
    }
    assert_string_equal(kTestFaultEnv, "PAYGATED_TEST_FAULT");
    // Not a configuration key: the file cannot arm it.
    expect_error("test_fault = kill-after-commit\n", "unknown key 'test_fault'");
}
#endif

void bad_socket_mode(void**) {
    expect_error("socket_mode = 0689\n", "octal digits");
    expect_error("socket_mode = rw-rw----\n", "octal digits");
    expect_error("socket_mode = 1777\n", "between 0 and 0777");
    expect_error("socket_mode = 00660\n", "at most 4 octal digits");
    expect_error("socket_mode = -660\n", "octal digits");
    Config c;
    std::string error;
    assert_true(parse_config("socket_mode = 666\n", "t.conf", c, error));
    assert_int_equal(c.socket_mode, 0666);
}

void bad_log_level(void**) {
    for (const char* v : {"verbose", "INFO", "warning", "3"}) {
        expect_error(std::string("log_level = ") + v + "\n", "expected debug, info, warn or error");
    }
    for (const char* v : {"debug", "info", "warn", "error"}) {
        LogLevel level;
        assert_true(parse_log_level(v, level));
        assert_string_equal(log_level_name(level), v);
    }
}

void bad_listen(void**) {
    expect_error("listen = 127.0.0.1:5555\n", "ipc:// or tcp://");
    expect_error("listen = udp://127.0.0.1:5555\n", "ipc:// or tcp://");
    expect_error("listen = inproc://x\n", "ipc:// or tcp://");
    expect_error("listen = tcp://127.0.0.1\n", "host and a port");
    expect_error("listen = tcp://:5555\n", "host and a port");
    expect_error("listen = tcp://127.0.0.1:\n", "host and a port");
    expect_error("listen = ipc://\n", "needs a path");
    expect_error("listen = ipc:///" + std::string(120, 'x') + "\n", "longer than 107");
    expect_error("listen = tcp://127.0.0.1:1\nlisten = tcp://127.0.0.1:1\n", "t.conf:2: bad value 'tcp://127.0.0.1:1' for 'listen': endpoint listed twice");
}

void database_value_never_echoed(void**) {
    // Whatever goes wrong on a database line, the message must not repeat its value (a password).
    std::string error = parse_error("database = password=hunter2\ndatabase = password=hunter2\n");
    assert_null(std::strstr(error.c_str(), "hunter2"));
}

void load_from_file(void**) {
    char path[] = "/tmp/test_daemon_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "listen = tcp://127.0.0.1:7000\ndatabase = dbname=paygate\nworkers = 2\n";
    assert_int_equal(write(fd, text, sizeof text - 1), sizeof text - 1);
    close(fd);
    Config c;
    std::string error;
    assert_true(load_config(path, c, error));
    assert_int_equal(c.workers, 2);
    unlink(path);
    assert_false(load_config(path, c, error));
    assert_non_null(std::strstr(error.c_str(), "cannot open"));
    assert_non_null(std::strstr(error.c_str(), path));
}

void key_table_documents_every_key(void**) {
    // The key table is what docs/daemon.md lists; make sure each key really parses.
    for (const ConfigKey& key : config_keys()) {
        assert_non_null(key.help);
        const std::string name = key.name;
        std::string value = name == "listen"                 ? "tcp://127.0.0.1:9"
                            : name == "log_level"            ? "warn"
                            : name == "database"             ? "dbname=x"
                            : name == "provider_route"       ? "* sky-technologies"
                            : name == "sky_technologies_url" ? "https://sky.example"
                            : name == "mserver_url"          ? "https://wallet.example"
                            : name == "callback_base_url"    ? "https://pay.example/callbacks"
                            : name == "task_lease_ms"        ? "60000"
                            : name == "curve"                ? "on"
                            : name == "zooticket_page_url"   ? "https://pay.example/pay"
                            : name == "zooticket_allow_http_loopback" ? "off"
                            : name == "task_workers" || name == "task_max_attempts" ? "2"
                                                             : "200";
        Config c;
        std::string error;
        std::string line = std::string(key.name) + " = " + value + "\n";
        if (!parse_config(line, "t.conf", c, error)) {
            std::fprintf(stderr, "%s: %s\n", key.name, error.c_str());
            fail();
        }
    }
}

void zooticket_keys(void**) {
    Config c;
    std::string error;
    assert_true(parse_config("customer_data_key = c2 /etc/paygate/c2.key\ncustomer_data_key = c1 /etc/paygate/c1.key\n"
                             "zooticket_page_url = https://pay.example/pay/\nzooticket_session_lifetime_s = 600\n"
                             "zooticket_allow_http_loopback = on\n",
                             "t.conf", c, error));
    assert_int_equal(c.customer_data_keys.size(), 2);
    assert_string_equal(c.customer_data_keys[0].c_str(), "c2 /etc/paygate/c2.key");
    assert_string_equal(c.zooticket_page_url.c_str(), "https://pay.example/pay");
    assert_int_equal(c.zooticket_session_lifetime_s, 600);
    assert_true(c.zooticket_allow_http_loopback);
    for (const char* bad : {"zooticket_session_lifetime_s = 4\n", "zooticket_session_lifetime_s = 86401\n",
                            "zooticket_page_url = ftp://x\n", "zooticket_allow_http_loopback = yes\n"}) {
        Config d;
        if (parse_config(bad, "t.conf", d, error)) fail_msg("accepted %s", bad);
    }
}

void mserver_route_needs_its_settings(void**) {
    const char* base = "listen = tcp://127.0.0.1:9\ndatabase = dbname=x\ncurve = off\nprovider_route = RUB mserver\n";
    Config c;
    std::string error;
    assert_true(parse_config(base, "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "mserver_url"));
    std::string full = std::string(base) + "mserver_url = http://127.0.0.1:9/\nmserver_login = +79261111111\n";
    Config d;
    assert_true(parse_config(full, "t.conf", d, error));
    assert_false(validate_for_daemon(d, error));
    assert_non_null(std::strstr(error.c_str(), "mserver_password_file"));
    Config e;
    assert_true(parse_config(full + "mserver_password_file = /nonexistent\n", "t.conf", e, error));
    assert_true(validate_for_daemon(e, error));
    assert_string_equal(e.mserver_url.c_str(), "http://127.0.0.1:9");   // trailing slash dropped
    Config f;
    assert_false(parse_config(std::string(base) + "mserver_login = a:b\n", "t.conf", f, error));   // ':' ends a Basic user
}

void provider_route_needs_its_settings(void**) {
    const char* base =
        "listen = tcp://127.0.0.1:9\ndatabase = dbname=x\ncurve = off\nprovider_route = USD sky-technologies\n";
    Config c;
    std::string error;
    assert_true(parse_config(base, "t.conf", c, error));
    assert_int_equal(c.provider_routes.size(), 1);
    assert_string_equal(c.provider_routes[0].first.c_str(), "USD");
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "sky_technologies_url"));

    std::string full = std::string(base) +
                       "sky_technologies_url = https://sky.example/\nsky_technologies_merchant_id = m1\n"
                       "sky_technologies_payment_key = /k/payment.key\nsky_technologies_reversal_key = /k/payment.key\n"
                       "callback_base_url = https://pay.example/callbacks\ncallback_keys = /k/cb.keys\n";
    assert_true(parse_config(full, "t.conf", c, error));
    assert_string_equal(c.sky_technologies_url.c_str(), "https://sky.example");   // trailing slash dropped
    assert_false(validate_for_daemon(c, error));   // the reversal key must be a pair of its own
    assert_non_null(std::strstr(error.c_str(), "reversal_key"));
    c.sky_technologies_reversal_key = "/k/reversal.key";
    assert_true(validate_for_daemon(c, error));
    c.provider_timeout_ms = c.task_lease_ms / 4;
    assert_false(validate_for_daemon(c, error));   // a call must end before its task's lease
}

// Fail closed: the link is CURVE unless the file says `curve = off`; keys with `off` are refused.
void curve_needs_keys_or_off(void**) {
    const std::string base = "listen = tcp://127.0.0.1:9\ndatabase = dbname=x\n";
    Config c;
    std::string error;
    assert_true(parse_config(base, "t.conf", c, error));
    assert_true(c.curve);   // the default
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "curve_secret_key"));
    assert_non_null(std::strstr(error.c_str(), "curve = off"));
    assert_true(parse_config(base + "curve_secret_key = /k/d.key\n", "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));   // the allow list too
    assert_non_null(std::strstr(error.c_str(), "curve_allowed_keys"));
    assert_true(parse_config(base + "curve_allowed_keys = /k/m.keys\n", "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));
    assert_true(parse_config(base + "curve = on\ncurve_secret_key = /k/d.key\ncurve_allowed_keys = /k/m.keys\n",
                             "t.conf", c, error));
    assert_true(validate_for_daemon(c, error));
    assert_true(parse_config(base + "curve = off\n", "t.conf", c, error));
    assert_false(c.curve);
    assert_true(validate_for_daemon(c, error));
    assert_true(parse_config(base + "curve = off\ncurve_secret_key = /k/d.key\n", "t.conf", c, error));
    assert_false(validate_for_daemon(c, error));
    assert_non_null(std::strstr(error.c_str(), "contradicts"));
    expect_error("curve = yes\n", "bad value 'yes' for 'curve': expected on or off");
    expect_error("curve = off\ncurve = on\n", "'curve' is already set on line 1");
}

void provider_route_refuses_bad_values(void**) {
    for (const char* line : {"provider_route = usd sky-technologies\n", "provider_route = USD\n",
                             "provider_route = USD acme\n", "sky_technologies_url = ftp://x\n",
                             "task_lease_ms = 999\n", "task_workers = 65\n"}) {
        Config c;
        std::string error;
        if (parse_config(line, "t.conf", c, error)) {
            std::fprintf(stderr, "accepted: %s", line);
            fail();
        }
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_file),
        cmocka_unit_test(defaults),
        cmocka_unit_test(bad_lines),
        cmocka_unit_test(bad_numbers),
        cmocka_unit_test(idempotency_keys_bounds),
#ifdef PAYGATED_TEST_HOOKS
        cmocka_unit_test(test_fault_from_environment_value),
#endif
        cmocka_unit_test(bad_socket_mode),
        cmocka_unit_test(bad_log_level),
        cmocka_unit_test(bad_listen),
        cmocka_unit_test(database_value_never_echoed),
        cmocka_unit_test(load_from_file),
        cmocka_unit_test(key_table_documents_every_key),
        cmocka_unit_test(zooticket_keys),
        cmocka_unit_test(provider_route_needs_its_settings),
        cmocka_unit_test(mserver_route_needs_its_settings),
        cmocka_unit_test(provider_route_refuses_bad_values),
        cmocka_unit_test(curve_needs_keys_or_off),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
