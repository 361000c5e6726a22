// paygated end to end inside one process, without PostgreSQL: run_daemon() on an ipc:// and a
// tcp:// endpoint, a DEALER client, the worker protocol, bad frames, stale/live socket files,
// backpressure-free concurrency and a clean stop. (The database-backed paths are covered by the
// e2e tests against a real PostgreSQL.)
#include <arpa/inet.h>
#include <chrono>
#include <cstring>
#include <netinet/in.h>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "paygate/curve.hpp"
#include "paygate/ipc.hpp"
#include "paygate/json_error.hpp"
#include "paygated/broker.hpp"
#include "paygated/ctl.hpp"
#include "paygated/log.hpp"
#include "paygated/worker.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"
#include "log_capture.hpp"

using namespace paygate;
using namespace paygate::daemon;
using std::chrono::milliseconds;

namespace {

int free_tcp_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
}

ipc::Request request(const char* route, std::uint64_t id) {
    ipc::Request r;
    r.id = id;
    r.route = route;
    r.request_id = "t" + std::to_string(id);
    r.timeout_ms = 5000;
    return r;
}

void send_request(zmq::socket_t& s, const ipc::Request& r) {
    std::string frame = ipc::encode(r);
    s.send(zmq::buffer(frame), zmq::send_flags::none);
}

std::optional<ipc::Reply> receive(zmq::socket_t& s, milliseconds wait) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) == 0) return std::nullopt;
    zmq::message_t msg;
    (void)s.recv(msg, zmq::recv_flags::none);
    ipc::Reply reply;
    std::string error;
    assert_true(ipc::decode(msg.to_string_view(), reply, error));
    return reply;
}

ipc::Reply call(zmq::socket_t& s, const char* route, std::uint64_t id) {
    send_request(s, request(route, id));
    auto reply = receive(s, milliseconds(5000));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, id);
    return *reply;
}

void daemon_serves_and_stops(void**) {
    char dir_template[] = "/tmp/test_daemon_broker_XXXXXX";
    std::string dir = mkdtemp(dir_template);
    std::string sock_path = dir + "/paygated.sock";
    std::string ipc_ep = "ipc://" + sock_path;
    std::string tcp_ep = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());

    // A stale socket file, as a crashed daemon leaves it, must not prevent the start.
    {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, sock_path.c_str());
        assert_int_equal(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        close(fd);
    }

    Config config;
    config.listen = {ipc_ep, tcp_ep};
    config.workers = 3;
    config.database = "host=127.0.0.1 port=1 dbname=none user=none password=hunter2";
    config.socket_mode = 0600;
    config.shutdown_timeout_ms = 5000;
    config.curve = false;   // the plain link; curve_link_admits_only_allowed_keys does CURVE

    LogCapture cap;
    int stop[2];
    assert_int_equal(pipe(stop), 0);
    int rc = -1;
    std::thread daemon([&] { rc = run_daemon(config, stop[0]); });
    if (!cap.wait_for(R"("event":"ready")", milliseconds(10000))) {
        std::fprintf(stderr, "%s", cap.text().c_str());
        fail();
    }

    struct stat st {};
    assert_int_equal(stat(sock_path.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    // A second daemon on the same socket path refuses to steal it.
    assert_int_equal(run_daemon(config, stop[0]), 1);
    assert_true(cap.text().find("is in use by a running process") != std::string::npos);

    zmq::context_t ctx(1);
    zmq::socket_t client(ctx, zmq::socket_type::dealer);
    client.set(zmq::sockopt::linger, 0);
    client.connect(ipc_ep);

    ipc::Reply r = call(client, "ping", 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.c_str(), "{\"status\":\"ok\"}");
    r = call(client, "health", 2);  // PostgreSQL is unreachable: 503, and no hang
    assert_int_equal(r.status, 503);
    assert_true(r.body.find("database unavailable") != std::string::npos);
    r = call(client, "nope", 3);
    assert_int_equal(r.status, 404);

    // Undecodable frames and multi-frame messages are dropped without an answer.
    client.send(zmq::str_buffer("garbage"), zmq::send_flags::none);
    client.send(zmq::str_buffer("part1"), zmq::send_flags::sndmore);
    client.send(zmq::str_buffer("part2"), zmq::send_flags::none);
    r = call(client, "ping", 4);
    assert_int_equal(r.status, 200);
    assert_false(receive(client, milliseconds(200)).has_value());
    assert_true(cap.wait_for(R"("reason":"bad magic")", milliseconds(2000)) ||
                cap.count(R"("event":"bad_frame")") >= 2);

    // Several peers with pipelined requests over both endpoints: every reply finds its peer and id.
    std::vector<zmq::socket_t> peers;
    for (int p = 0; p < 4; ++p) {
        peers.emplace_back(ctx, zmq::socket_type::dealer);
        peers.back().set(zmq::sockopt::linger, 0);
        peers.back().connect(p % 2 ? tcp_ep : ipc_ep);
    }
    for (int p = 0; p < 4; ++p) {
        for (int i = 0; i < 25; ++i) send_request(peers[p], request("ping", 1000 * (p + 1) + i));
    }
    for (int p = 0; p < 4; ++p) {
        std::vector<bool> seen(25, false);
        for (int i = 0; i < 25; ++i) {
            auto reply = receive(peers[p], milliseconds(5000));
            assert_true(reply.has_value());
            std::uint64_t idx = reply->id - 1000 * (p + 1);
            assert_true(idx < 25);
            assert_false(seen[idx]);
            seen[idx] = true;
        }
    }

    assert_int_equal(write(stop[1], "x", 1), 1);
    daemon.join();
    assert_int_equal(rc, 0);
    std::string text = cap.text();
    assert_true(text.find(R"("event":"shutdown_begin")") != std::string::npos);
    assert_true(text.find(R"("event":"shutdown_done")") != std::string::npos);
    assert_true(text.find(R"("event":"request","request_id":"t2","route":"health","status":503)") != std::string::npos);
    assert_true(text.find("hunter2") == std::string::npos);
    assert_int_not_equal(access(sock_path.c_str(), F_OK), 0);  // our socket file is gone

    close(stop[0]);
    close(stop[1]);
    rmdir(dir.c_str());
}

bool not_executed(const ipc::Reply& reply, std::string_view why) {
    for (const auto& [name, value] : reply.headers) {
        if (name == ipc::kNotExecutedHeader) return reply.status == 503 && value == why;
    }
    return false;
}

// A DEALER of the test, with CURVE when `keys` is given (secret key file, daemon public key file).
zmq::socket_t dealer(zmq::context_t& ctx, const std::string& endpoint, const std::string& secret_file = "",
                     const std::string& server_file = "") {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    if (!secret_file.empty()) {
        curve::KeyPair pair;
        std::string server, error;
        assert_true(curve::load_secret_key(secret_file, pair, error));
        assert_true(curve::load_public_key(server_file, server, error));
        s.set(zmq::sockopt::curve_serverkey, server);
        s.set(zmq::sockopt::curve_publickey, pair.public_key);
        s.set(zmq::sockopt::curve_secretkey, pair.secret_key);
    }
    s.connect(endpoint);
    return s;
}

// The daemon's line about `event` that names `text`, or "".
std::string line_with(const LogCapture& cap, const std::string& event, const std::string& text) {
    std::string all = cap.text();
    std::size_t at = 0;
    while (at < all.size()) {
        std::size_t nl = all.find('\n', at);
        std::string line = all.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
        if (line.find("\"event\":\"" + event + "\"") != std::string::npos && line.find(text) != std::string::npos) return line;
        if (nl == std::string::npos) break;
        at = nl + 1;
    }
    return {};
}

bool wait_line(const LogCapture& cap, const std::string& event, const std::string& text) {
    auto until = std::chrono::steady_clock::now() + milliseconds(5000);
    while (std::chrono::steady_clock::now() < until) {
        if (!line_with(cap, event, text).empty()) return true;
        std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
}

// CURVE with the ZAP handler: an allowed module key is served over ipc:// and tcp://; an unknown
// key, a plain peer and a peer holding another daemon public key get no answer and are logged;
// a key added to the allow list file is admitted without a restart.
void curve_link_admits_only_allowed_keys(void**) {
    char dir_template[] = "/tmp/test_daemon_curve_XXXXXX";
    std::string dir = mkdtemp(dir_template);
    std::string pub;
    std::string error;
    for (const char* name : {"paygated", "nginx", "stranger", "other-daemon"}) {
        if (!write_key_pair(dir, name, pub, error)) {
            std::fprintf(stderr, "%s\n", error.c_str());
            fail();
        }
    }
    std::string allowed = dir + "/modules.keys";
    {
        std::string text;
        assert_true(read_text_file(dir + "/nginx.pub", text, error));
        FILE* f = std::fopen(allowed.c_str(), "w");
        std::fputs(("# modules allowed to connect\n" + text).c_str(), f);
        std::fclose(f);
    }
    std::string ipc_ep = "ipc://" + dir + "/d.sock";
    std::string tcp_ep = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
    Config config;
    config.listen = {ipc_ep, tcp_ep};
    config.workers = 1;
    config.database = "host=127.0.0.1 port=1 dbname=none user=none";
    config.shutdown_timeout_ms = 5000;
    config.curve_secret_key = dir + "/paygated.key";
    config.curve_allowed_keys = allowed;

    LogCapture cap;
    int stop[2];
    assert_int_equal(pipe(stop), 0);
    int rc = -1;
    std::thread daemon([&] { rc = run_daemon(config, stop[0]); });
    assert_true(cap.wait_for(R"("event":"ready")", milliseconds(10000)));
    assert_true(cap.text().find(R"("event":"curve_enabled")") != std::string::npos);

    zmq::context_t ctx(1);
    const std::string daemon_pub = dir + "/paygated.pub";
    for (const std::string& ep : {ipc_ep, tcp_ep}) {
        zmq::socket_t module = dealer(ctx, ep, dir + "/nginx.key", daemon_pub);
        assert_int_equal(call(module, "ping", 1).status, 200);
    }

    // An unknown key: the handshake is refused, the request never reaches a handler.
    curve::KeyPair stranger;
    assert_true(curve::load_secret_key(dir + "/stranger.key", stranger, error));
    zmq::socket_t intruder = dealer(ctx, tcp_ep, dir + "/stranger.key", daemon_pub);
    send_request(intruder, request("auth.tokens", 7));
    assert_false(receive(intruder, milliseconds(1000)).has_value());
    assert_true(wait_line(cap, "curve_refused", stranger.public_key));
    assert_true(line_with(cap, "curve_refused", stranger.public_key).find(R"("address":"127.0.0.1)") != std::string::npos);
    assert_true(line_with(cap, "request", R"("request_id":"t7")").empty());

    // A plain peer and one that holds another daemon's public key: refused in the handshake.
    zmq::socket_t plain = dealer(ctx, ipc_ep);
    send_request(plain, request("ping", 8));
    assert_false(receive(plain, milliseconds(1000)).has_value());
    // Whichever side reads the other's greeting first hangs up: a mismatch or a closed handshake.
    assert_true(wait_line(cap, "link_handshake_failed", ipc_ep));
    std::string plain_line = line_with(cap, "link_handshake_failed", ipc_ep);
    assert_true(plain_line.find("mechanism mismatch") != std::string::npos ||
                plain_line.find("closed during the handshake") != std::string::npos);
    zmq::socket_t confused = dealer(ctx, ipc_ep, dir + "/nginx.key", dir + "/other-daemon.pub");
    send_request(confused, request("ping", 9));
    assert_false(receive(confused, milliseconds(1000)).has_value());
    assert_true(wait_line(cap, "link_handshake_failed", "cryptographic error"));

    // Rotation without a restart: the stranger's key is added to the file (the daemon looks at
    // most once a second), and a new connection with it is served.
    std::this_thread::sleep_for(milliseconds(1100));
    {
        std::string text;
        assert_true(read_text_file(dir + "/stranger.pub", text, error));
        FILE* f = std::fopen(allowed.c_str(), "a");
        std::fputs(text.c_str(), f);
        std::fclose(f);
    }
    zmq::socket_t welcome = dealer(ctx, tcp_ep, dir + "/stranger.key", daemon_pub);
    assert_int_equal(call(welcome, "ping", 10).status, 200);
    assert_true(cap.wait_for(R"("event":"curve_allowed_keys_reloaded")", milliseconds(1000)));

    assert_int_equal(write(stop[1], "x", 1), 1);
    daemon.join();
    assert_int_equal(rc, 0);
    // A daemon whose key files are missing does not start (exit status 2).
    config.curve_secret_key = dir + "/missing.key";
    assert_int_equal(run_daemon(config, stop[0]), 2);
    assert_true(cap.text().find(R"("event":"curve_config_failed")") != std::string::npos);
    close(stop[0]);
    close(stop[1]);
    for (const char* f : {"paygated.key", "paygated.pub", "nginx.key", "nginx.pub", "stranger.key", "stranger.pub",
                          "other-daemon.key", "other-daemon.pub", "modules.keys"}) {
        unlink((dir + "/" + f).c_str());
    }
    rmdir(dir.c_str());
}

// The worker protocol directly: an expired job is answered "not executed", a fresh one served.
void worker_refuses_expired_requests(void**) {
    LogCapture cap;
    zmq::context_t ctx(1);
    zmq::socket_t broker(ctx, zmq::socket_type::router);
    broker.set(zmq::sockopt::linger, 0);
    broker.bind("inproc://test-workers");
    WorkerSettings settings;
    settings.id = 1;
    settings.endpoint = "inproc://test-workers";
    settings.database = "host=127.0.0.1 port=1 dbname=none";
    std::thread worker([&] { run_worker(ctx, settings); });

    std::vector<zmq::message_t> msg;
    assert_true(zmq::recv_multipart(broker, std::back_inserter(msg)).has_value());
    assert_int_equal(msg.size(), 2);  // [w1, ""]: ready
    assert_string_equal(msg[0].to_string().c_str(), "w1");
    assert_int_equal(msg[1].size(), 0);

    auto send_job = [&](const ipc::Request& r, std::chrono::steady_clock::time_point received) {
        std::string frame = ipc::encode(r);
        std::string at = encode_received_at(received);
        broker.send(zmq::str_buffer("w1"), zmq::send_flags::sndmore);
        broker.send(zmq::str_buffer("client-A"), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(frame), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(at), zmq::send_flags::none);
    };

    ipc::Request old = request("ping", 77);
    old.timeout_ms = 100;
    send_job(old, std::chrono::steady_clock::now() - milliseconds(500));
    msg.clear();
    assert_true(zmq::recv_multipart(broker, std::back_inserter(msg)).has_value());
    assert_int_equal(msg.size(), 4);  // answered, so nobody waits for it in vain
    {
        ipc::Reply reply;
        std::string error;
        assert_true(ipc::decode(msg[2].to_string_view(), reply, error));
        assert_int_equal(reply.id, 77);
        assert_true(not_executed(reply, "overloaded"));
    }
    assert_true(cap.wait_for(R"("event":"request_not_executed","request_id":"t77","route":"ping","reason":"expired")", milliseconds(1000)));

    ipc::Request untimed = request("ping", 78);
    untimed.timeout_ms = 0;  // no deadline: never dropped
    send_job(untimed, std::chrono::steady_clock::now() - milliseconds(500));
    msg.clear();
    assert_true(zmq::recv_multipart(broker, std::back_inserter(msg)).has_value());
    assert_int_equal(msg.size(), 4);  // [w1, client, reply, request_id]
    assert_string_equal(msg[1].to_string().c_str(), "client-A");
    ipc::Reply reply;
    std::string error;
    assert_true(ipc::decode(msg[2].to_string_view(), reply, error));
    assert_int_equal(reply.id, 78);
    assert_int_equal(reply.status, 200);
    assert_string_equal(msg[3].to_string().c_str(), "t78");

    // A batch: three requests in one job ([client, frame, received] each), one undecodable;
    // the two others are answered in one message, in order, each to its own client.
    {
        std::string at = encode_received_at(std::chrono::steady_clock::now());
        std::string a = ipc::encode(request("ping", 81)), c = ipc::encode(request("nope", 83));
        broker.send(zmq::str_buffer("w1"), zmq::send_flags::sndmore);
        broker.send(zmq::str_buffer("client-A"), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(a), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(at), zmq::send_flags::sndmore);
        broker.send(zmq::str_buffer("client-B"), zmq::send_flags::sndmore);
        broker.send(zmq::str_buffer("garbage"), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(at), zmq::send_flags::sndmore);
        broker.send(zmq::str_buffer("client-C"), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(c), zmq::send_flags::sndmore);
        broker.send(zmq::buffer(at), zmq::send_flags::none);
        msg.clear();
        assert_true(zmq::recv_multipart(broker, std::back_inserter(msg)).has_value());
        assert_int_equal(msg.size(), 7);  // [w1, client-A, reply 81, t81, client-C, reply 83, t83]
        assert_string_equal(msg[1].to_string().c_str(), "client-A");
        assert_true(ipc::decode(msg[2].to_string_view(), reply, error));
        assert_int_equal(reply.id, 81);
        assert_int_equal(reply.status, 200);
        assert_string_equal(msg[4].to_string().c_str(), "client-C");
        assert_true(ipc::decode(msg[5].to_string_view(), reply, error));
        assert_int_equal(reply.id, 83);
        assert_int_equal(reply.status, 404);
        assert_string_equal(msg[6].to_string().c_str(), "t83");
    }

    broker.send(zmq::str_buffer("w1"), zmq::send_flags::sndmore);
    broker.send(zmq::message_t(), zmq::send_flags::none);  // stop
    worker.join();
}

// A server that accepts connections and never says a word: libpq waits on it until its
// connect_timeout, which makes "health" a slow request without PostgreSQL.
struct MuteServer {
    int fd = -1;
    int port = 0;
    MuteServer() {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        assert_int_equal(listen(fd, 64), 0);
        socklen_t len = sizeof addr;
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        port = ntohs(addr.sin_port);
    }
    ~MuteServer() { close(fd); }
};

// Overload is answered at once: past queue_max_depth a request gets 503 "not executed"
// (overloaded) without waiting; a queued one past queue_max_age_ms too; once SIGTERM has come,
// every new request gets "draining" while the work in hand finishes and is answered. The age is
// the daemon's own: a module clock hours behind changes nothing.
void daemon_sheds_load_and_drains(void**) {
    MuteServer mute;
    char dir_template[] = "/tmp/test_daemon_broker_XXXXXX";
    std::string dir = mkdtemp(dir_template);
    std::string ipc_ep = "ipc://" + dir + "/paygated.sock";
    Config config;
    config.listen = {ipc_ep};
    config.workers = 1;
    config.database = "host=127.0.0.1 port=" + std::to_string(mute.port) + " dbname=none user=none connect_timeout=2";
    config.db_retry_max_ms = 1;
    config.curve = false;   // the link's security is not what this test is about
    config.queue_max_depth = 2;
    config.queue_max_age_ms = 600;
    config.shutdown_timeout_ms = 10000;

    LogCapture cap;
    int stop[2];
    assert_int_equal(pipe(stop), 0);
    int rc = -1;
    std::thread daemon([&] { rc = run_daemon(config, stop[0]); });
    assert_true(cap.wait_for(R"("event":"ready")", milliseconds(10000)));

    zmq::context_t ctx(1);
    zmq::socket_t client(ctx, zmq::socket_type::dealer);
    client.set(zmq::sockopt::linger, 0);
    client.connect(ipc_ep);

    auto skewed = [](const char* route, std::uint64_t id) {
        ipc::Request r = request(route, id);
        r.timeout_ms = 5000;
        r.sent_unix_ms = 1000;   // a module clock decades behind: no effect on expiry
        return r;
    };
    send_request(client, skewed("health", 1));   // the worker: waits ~2 s on the mute server
    std::this_thread::sleep_for(milliseconds(100));
    send_request(client, skewed("health", 2));   // queued
    send_request(client, skewed("health", 3));   // queued (depth 2)
    auto started = std::chrono::steady_clock::now();
    send_request(client, skewed("health", 4));   // over the depth: refused at once
    auto reply = receive(client, milliseconds(400));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, 4);
    assert_true(not_executed(*reply, "overloaded"));
    assert_true(reply->body.find("\"code\":\"overloaded\"") != std::string::npos);
    assert_true(std::chrono::steady_clock::now() - started < milliseconds(400));

    // 2 and 3 pass queue_max_age_ms while the worker is busy: refused, not left to time out.
    for (std::uint64_t want : {2, 3}) {
        reply = receive(client, milliseconds(1500));
        assert_true(reply.has_value());
        assert_int_equal(reply->id, want);
        assert_true(not_executed(*reply, "overloaded"));
    }
    assert_true(cap.wait_for(R"("reason":"queue_full")", milliseconds(100)));
    assert_true(cap.wait_for(R"("reason":"queue_age")", milliseconds(100)));

    // system.metrics is answered at once by the broker, though its only worker is busy, and
    // counts what just happened (docs/operations.md#metrics).
    started = std::chrono::steady_clock::now();
    send_request(client, request("system.metrics", 10));
    reply = receive(client, milliseconds(400));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, 10);
    assert_int_equal(reply->status, 200);
    assert_true(std::chrono::steady_clock::now() - started < milliseconds(400));
    for (const char* line : {"paygate_daemon_not_executed_total{reason=\"queue_full\"} 1\n",
                             "paygate_daemon_not_executed_total{reason=\"queue_age\"} 2\n",
                             "paygate_daemon_not_executed_total{reason=\"draining\"} 0\n",
                             "paygate_daemon_workers{state=\"busy\"} 1\n", "paygate_daemon_workers{state=\"idle\"} 0\n",
                             "paygate_daemon_queue_depth 0\n", "paygate_daemon_queue_max_depth 2\n",
                             "# TYPE paygate_daemon_worker_busy_seconds_total counter\n"}) {
        if (reply->body.find(line) == std::string::npos) fail_msg("no %s in:\n%s", line, reply->body.c_str());
    }

    // SIGTERM while 1 is still in hand: new requests are refused "draining", 1 still answered.
    assert_int_equal(write(stop[1], "x", 1), 1);
    assert_true(cap.wait_for(R"("event":"shutdown_begin")", milliseconds(2000)));
    send_request(client, skewed("health", 5));
    reply = receive(client, milliseconds(1000));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, 5);
    assert_true(not_executed(*reply, "draining"));
    send_request(client, request("system.metrics", 11));   // a draining daemon falls quiet: refused too
    reply = receive(client, milliseconds(1000));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, 11);
    assert_true(not_executed(*reply, "draining"));
    reply = receive(client, milliseconds(5000));
    assert_true(reply.has_value());
    assert_int_equal(reply->id, 1);
    assert_int_equal(reply->status, 503);            // database unavailable: it did run
    assert_false(not_executed(*reply, "overloaded") || not_executed(*reply, "draining"));
    daemon.join();
    assert_int_equal(rc, 0);
    close(stop[0]);
    close(stop[1]);
    rmdir(dir.c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(daemon_serves_and_stops),
        cmocka_unit_test(curve_link_admits_only_allowed_keys),
        cmocka_unit_test(worker_refuses_expired_requests),
        cmocka_unit_test(daemon_sheds_load_and_drains),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
