// paygated's core pieces without a database or sockets to a daemon: log format, timestamps,
// backoff, conninfo helpers, the handler table and dispatcher, health without PostgreSQL,
// and the ipc:// socket file helpers.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "paygate/routes.hpp"
#include "paygated/backoff.hpp"
#include "paygated/db.hpp"
#include "paygated/endpoints.hpp"
#include "paygated/handlers.hpp"
#include "paygated/log.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"
#include "log_capture.hpp"

using namespace paygate;
using namespace paygate::daemon;
using std::chrono::milliseconds;

namespace {

bool contains(const std::string& haystack, const char* needle) { return haystack.find(needle) != std::string::npos; }

const std::string* header(const ipc::Reply& r, const char* name) {
    for (const auto& [k, v] : r.headers) {
        if (k == name) return &v;
    }
    return nullptr;
}

void log_line_format(void**) {
    log::set_level(LogLevel::Info);
    LogCapture cap;
    log::info("request").kv("request_id", "5f2c0a").kv("route", "health").kv("status", 200).kv("ms", 0.4149).kv("worker", "2");
    log::debug("hidden").kv("x", 1);  // below the level
    std::string text = cap.text();
    std::regex line(
        R"(^\{"time":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z","level":"info","event":"request","request_id":"5f2c0a",)"
        R"("route":"health","status":200,"ms":0\.41,"worker":"2"\}\n$)");
    if (!std::regex_match(text, line)) {
        std::fprintf(stderr, "got: %s", text.c_str());
        fail();
    }
    log::set_level(LogLevel::Error);
    assert_false(log::enabled(LogLevel::Warn));
    assert_true(log::enabled(LogLevel::Error));
    log::set_level(LogLevel::Info);
}

void log_values_quoted(void**) {
    auto kv = [](std::string_view v) {
        std::string out;
        log::append_kv(out, "k", v);
        return out;
    };
    assert_string_equal(kv("plain-value_1.2:3/x").c_str(), ",\"k\":\"plain-value_1.2:3/x\"");
    assert_string_equal(kv("").c_str(), ",\"k\":\"\"");
    assert_string_equal(kv("two words a=b").c_str(), ",\"k\":\"two words a=b\"");
    assert_string_equal(kv("say \"hi\"\\").c_str(), ",\"k\":\"say \\\"hi\\\"\\\\\"");
    // A forged second line stays on the first.
    assert_string_equal(kv("x\n{\"level\":\"info\"}\r\t").c_str(), ",\"k\":\"x\\n{\\\"level\\\":\\\"info\\\"}\\r\\t\"");
    assert_string_equal(kv(std::string_view("\x01\x7f\0", 3)).c_str(), ",\"k\":\"\\u0001\\u007f\\u0000\"");
    // UTF-8 passes; bytes that are not UTF-8 (lone continuation, overlong, surrogate, cut) become U+FFFD.
    assert_string_equal(kv("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3").c_str(), ",\"k\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3\"");
    assert_string_equal(kv("\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82").c_str(),
                        ",\"k\":\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
    std::string long_value(300, 'a');
    std::string out = kv(long_value);
    assert_int_equal(out.size(), std::strlen(",\"k\":\"\"") + 256 + 3);
    assert_true(contains(out, "...\""));
    // A cut never splits a UTF-8 sequence: 255 ASCII bytes then a 2-byte sequence across byte 256.
    std::string straddling = std::string(255, 'a') + "\xc3\xa9" + std::string(10, 'b');
    assert_string_equal(kv(straddling).c_str(), (",\"k\":\"" + std::string(255, 'a') + "...\"").c_str());
}

void log_numbers_are_json_numbers(void**) {
    log::set_level(LogLevel::Info);
    LogCapture cap;
    log::info("n").kv("int", -7).kv("big", 18446744073709551615ULL).kv("ms", 1.005).kv("nan", std::nan("")).kv("yes", true).kv("s", "7");
    assert_true(contains(cap.text(), R"("event":"n","int":-7,"big":18446744073709551615,"ms":1.00,"nan":null,"yes":true,"s":"7"})"));
    // Every line is a JSON document of its own, whatever its values held.
    log::info("odd").kv("v", std::string_view("\"}\n{\x01\xff\0", 7)).kv("k\"ey", 1);
    std::string text = cap.text();
    std::size_t at = 0;
    int lines = 0;
    for (std::size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1, ++lines) {
        json_error_t err;
        json_t* doc = json_loadb(text.data() + at, nl - at, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &err);
        if (doc == nullptr) {
            std::fprintf(stderr, "not JSON (%s): %s\n", err.text, text.substr(at, nl - at).c_str());
            fail();
        }
        assert_true(json_is_object(doc));
        json_decref(doc);
    }
    assert_int_equal(lines, 2);
}

void timestamps(void**) {
    using std::chrono::system_clock;
    assert_string_equal(utc_timestamp(system_clock::time_point{}, false).c_str(), "1970-01-01T00:00:00Z");
    system_clock::time_point t{milliseconds(1764000000123LL)};
    assert_string_equal(utc_timestamp(t, false).c_str(), "2025-11-24T16:00:00Z");
    assert_string_equal(utc_timestamp(t, true).c_str(), "2025-11-24T16:00:00.123Z");
}

void backoff_doubles_and_caps(void**) {
    Backoff b(milliseconds(100), milliseconds(1000));
    auto t0 = Backoff::Clock::now();
    assert_true(b.ready(t0));
    assert_int_equal(b.failure(t0).count(), 100);
    assert_false(b.ready(t0 + milliseconds(99)));
    assert_true(b.ready(t0 + milliseconds(100)));
    assert_int_equal(b.failure(t0).count(), 200);
    assert_int_equal(b.failure(t0).count(), 400);
    assert_int_equal(b.failure(t0).count(), 800);
    assert_int_equal(b.failure(t0).count(), 1000);
    assert_int_equal(b.failure(t0).count(), 1000);
    assert_false(b.ready(t0 + milliseconds(999)));
    b.success();
    assert_true(b.ready(t0));
    assert_int_equal(b.failure(t0).count(), 100);
}

void conninfo_helpers(void**) {
    std::string error;
    assert_true(check_conninfo("host=127.0.0.1 port=5432 dbname=paygate user=paygate password=hunter2", error));
    assert_true(check_conninfo("postgresql://paygate:hunter2@db.internal:5433/paygate", error));
    assert_false(check_conninfo("host=x password", error));
    assert_false(contains(error, "hunter2"));
    assert_false(check_conninfo("bogus_key=1", error));
    assert_true(contains(error, "bogus_key"));

    std::string d = describe_conninfo("host=127.0.0.1 port=5432 dbname=paygate user=paygate password=hunter2");
    assert_string_equal(d.c_str(), "host=127.0.0.1 port=5432 dbname=paygate user=paygate");
    d = describe_conninfo("postgresql://paygate:hunter2@db.internal:5433/paygate");
    assert_false(contains(d, "hunter2"));
    assert_true(contains(d, "host=db.internal"));
    assert_true(contains(d, "port=5433"));
}

ipc::Request request(const char* route, std::uint64_t id = 42) {
    ipc::Request r;
    r.id = id;
    r.route = route;
    r.request_id = "rid-1";
    return r;
}

// A Db nobody can reach: the connect attempt is refused at once.
Db unreachable_db() {
    return Db("host=127.0.0.1 port=1 dbname=none user=none password=hunter2",
              std::make_shared<RetryGate>(milliseconds(2000)), 7);
}

void ping_reply(void**) {
    Db db = unreachable_db();
    WorkerContext ctx{7, db};
    ipc::Reply r = dispatch(request("ping"), ctx);
    assert_int_equal(r.id, 42);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.c_str(), "{\"status\":\"ok\"}");
    assert_non_null(header(r, "content-type"));
    assert_string_equal(header(r, "content-type")->c_str(), "application/json");
}

void unknown_route_404(void**) {
    Db db = unreachable_db();
    WorkerContext ctx{7, db};
    ipc::Reply r = dispatch(request("no_such_route", 9), ctx);
    assert_int_equal(r.id, 9);
    assert_int_equal(r.status, 404);
    assert_true(contains(r.body, "\"code\":\"not_found\""));
    assert_string_equal(header(r, "content-type")->c_str(), "application/json");
}

ipc::Reply throws(const ipc::Request&, WorkerContext&) { throw std::runtime_error("SELECT secret FROM vault"); }
ipc::Reply throws_int(const ipc::Request&, WorkerContext&) { throw 7; }
ipc::Reply bare(const ipc::Request&, WorkerContext&) {
    ipc::Reply r;
    r.id = 1234;  // wrong on purpose: dispatch sets the request's id
    r.status = 201;
    r.body = "{}";
    return r;
}

void handler_exception_500(void**) {
    Db db = unreachable_db();
    WorkerContext ctx{7, db};
    std::vector<HandlerEntry> table = {{"boom", throws}, {"boom2", throws_int}, {"bare", bare}};
    LogCapture cap;
    for (const char* route : {"boom", "boom2"}) {
        ipc::Reply r = dispatch(table, request(route, 5), ctx);
        assert_int_equal(r.id, 5);
        assert_int_equal(r.status, 500);
        assert_true(contains(r.body, "\"code\":\"internal_error\""));
        assert_false(contains(r.body, "SELECT"));
        assert_false(contains(r.body, "secret"));
        assert_string_equal(header(r, "content-type")->c_str(), "application/json");
    }
    assert_true(contains(cap.text(), R"("event":"handler_exception")"));
    ipc::Reply r = dispatch(table, request("bare", 6), ctx);
    assert_int_equal(r.id, 6);
    assert_int_equal(r.status, 201);
    assert_string_equal(header(r, "content-type")->c_str(), "application/json");
}

void health_without_database(void**) {
    Db db = unreachable_db();
    WorkerContext ctx{7, db};
    LogCapture cap;
    for (int i = 0; i < 2; ++i) {
        auto started = std::chrono::steady_clock::now();
        ipc::Reply r = dispatch(request("health"), ctx);
        auto took = std::chrono::steady_clock::now() - started;
        assert_int_equal(r.status, 503);
        assert_string_equal(header(r, "content-type")->c_str(), "application/json");
        json_error_t jerr;
        json_t* body = json_loads(r.body.c_str(), 0, &jerr);
        assert_non_null(body);
        assert_string_equal(json_string_value(json_object_get(body, "status")), "unhealthy");
        assert_string_equal(json_string_value(json_object_get(body, "reason")), "database unavailable");
        std::string ts = json_string_value(json_object_get(body, "timestamp"));
        assert_true(std::regex_match(ts, std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)")));
        json_decref(body);
        // The second call falls inside the backoff: no connect attempt, an immediate answer.
        if (i == 1) assert_true(took < milliseconds(50));
    }
    std::string text = cap.text();
    assert_true(contains(text, R"("event":"db_unavailable","worker":"7","backoff_ms":100)"));
    assert_false(contains(text, "hunter2"));
    // One attempt only: the second request did not retry inside the backoff window.
    assert_int_equal(text.find("db_unavailable"), text.rfind("db_unavailable"));
    assert_null(db.connection());
}

void workers_share_the_backoff(void**) {
    auto gate = std::make_shared<RetryGate>(milliseconds(2000));
    Db first("host=127.0.0.1 port=1 dbname=none", gate, 1);
    Db second("host=127.0.0.1 port=1 dbname=none", gate, 2);
    LogCapture cap;
    assert_null(first.connection());   // tries, fails, starts the backoff
    assert_null(second.connection());  // inside the shared backoff: does not even try
    std::string text = cap.text();
    assert_true(contains(text, R"("event":"db_unavailable","worker":"1")"));
    assert_false(contains(text, R"("worker":"2")"));
}

void handler_table_matches_routes(void**) {
    std::set<std::string> handled;
    for (const HandlerEntry& e : handler_table()) {
        assert_non_null(e.handler);
        assert_true(handled.insert(std::string(e.route)).second);  // no route twice
    }
    std::set<std::string> routed;
    for (const routes::Route& r : routes::table()) routed.insert(std::string(r.name));
    // Internal routes the module itself calls: served by the daemon, never reachable over HTTP.
    assert_false(routed.count(std::string(routes::kAuthTokensRoute)));
    routed.insert(std::string(routes::kAuthTokensRoute));
    // Every route nginx forwards (or calls) has a handler, and every handler serves a real route.
    for (const std::string& name : routed) {
        if (!handled.count(name)) {
            std::fprintf(stderr, "route %s has no handler\n", name.c_str());
            fail();
        }
    }
    for (const std::string& name : handled) {
        if (!routed.count(name)) {
            std::fprintf(stderr, "handler %s serves no route\n", name.c_str());
            fail();
        }
    }
}

std::string temp_dir() {
    char dir[] = "/tmp/test_daemon_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    return dir;
}

int unix_socket(const std::string& path, bool listen_on_it) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    assert_int_equal(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (listen_on_it) assert_int_equal(listen(fd, 1), 0);
    return fd;
}

void socket_file_helpers(void**) {
    assert_string_equal(ipc_socket_path("ipc:///run/paygate/paygated.sock").c_str(), "/run/paygate/paygated.sock");
    assert_string_equal(ipc_socket_path("ipc://var/p.sock").c_str(), "var/p.sock");
    assert_true(ipc_socket_path("ipc://@abstract").empty());
    assert_true(ipc_socket_path("tcp://127.0.0.1:5555").empty());

    std::string dir = temp_dir();
    std::string error;
    std::string path = dir + "/p.sock";
    assert_true(check_socket_file_free(path, error));  // nothing there

    std::string plain = dir + "/plain";
    close(open(plain.c_str(), O_CREAT | O_WRONLY, 0600));
    assert_false(check_socket_file_free(plain, error));
    assert_true(contains(error, "not a socket"));
    unlink(plain.c_str());

    int stale = unix_socket(path, false);  // bound, never listening: what a crash leaves behind
    close(stale);
    assert_true(check_socket_file_free(path, error));
    unlink(path.c_str());

    int live = unix_socket(path, true);
    assert_false(check_socket_file_free(path, error));
    assert_true(contains(error, "in use"));

    SocketFile file;
    assert_true(adopt_socket_file(path, 0640, file, error));
    struct stat st {};
    assert_int_equal(stat(path.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    close(live);

    // A successor's file at the same path is left alone; our own is removed. (The old file is
    // kept alive under another name so the new one cannot reuse its inode number.)
    std::string old_path = dir + "/old.sock";
    assert_int_equal(rename(path.c_str(), old_path.c_str()), 0);
    close(unix_socket(path, false));
    remove_socket_file(file);
    assert_int_equal(access(path.c_str(), F_OK), 0);
    unlink(old_path.c_str());
    assert_true(adopt_socket_file(path, 0600, file, error));
    remove_socket_file(file);
    assert_int_not_equal(access(path.c_str(), F_OK), 0);
    assert_false(adopt_socket_file(path, 0600, file, error));
    rmdir(dir.c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_line_format),
        cmocka_unit_test(log_values_quoted),
        cmocka_unit_test(log_numbers_are_json_numbers),
        cmocka_unit_test(timestamps),
        cmocka_unit_test(backoff_doubles_and_caps),
        cmocka_unit_test(conninfo_helpers),
        cmocka_unit_test(ping_reply),
        cmocka_unit_test(unknown_route_404),
        cmocka_unit_test(handler_exception_500),
        cmocka_unit_test(health_without_database),
        cmocka_unit_test(workers_share_the_backoff),
        cmocka_unit_test(handler_table_matches_routes),
        cmocka_unit_test(socket_file_helpers),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
