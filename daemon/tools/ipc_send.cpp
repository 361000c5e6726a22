// paygate-ipc-send: sends request frames to a paygated over ZeroMQ (DEALER) and prints the replies.
//
//   paygate-ipc-send ENDPOINT ROUTE [--method M] [--request-id ID] [--timeout-ms N] [--body TEXT]
//                    [--principal ID] [--param NAME=VALUE]... [--header NAME=VALUE]... [--count N]
//                    [--wait-ms N] [--garbage] [--curve-key FILE --server-key FILE]
//
// --curve-key names this client's CURVE secret key file and --server-key the daemon's public key
// file (docs/security.md): a daemon with `curve = on` answers only a client whose public key is
// in its curve_allowed_keys. Without them the client speaks plain ZeroMQ.
// --principal sets what the module sends for an authenticated client (its id, e.g. 12).
//
// Prints "status=<s> id=<id> body=<body>" per reply (with --count N > 1 only a summary). --garbage
// first sends a frame that is not a valid request (the daemon logs bad_frame and answers nothing).
// Exit status: 0 every reply arrived, 1 a reply did not arrive within --wait-ms, 2 bad usage.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <zmq.hpp>

#include "paygate/curve.hpp"
#include "paygate/ipc.hpp"

using namespace paygate;

namespace {

int usage() {
    std::fprintf(stderr,
                 "usage: paygate-ipc-send ENDPOINT ROUTE [--method M] [--request-id ID] [--timeout-ms N]\n"
                 "         [--body TEXT] [--principal ID] [--param NAME=VALUE]... [--header NAME=VALUE]...\n"
                 "         [--count N] [--wait-ms N] [--garbage] [--curve-key FILE --server-key FILE]\n");
    return 2;
}

bool split_pair(const std::string& s, ipc::NameValue& out) {
    std::size_t eq = s.find('=');
    if (eq == std::string::npos) return false;
    out = {s.substr(0, eq), s.substr(eq + 1)};
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    std::string endpoint = argv[1];
    ipc::Request request;
    request.route = argv[2];
    request.request_id = "ipc-send";
    long count = 1;
    long wait_ms = 5000;
    bool garbage = false;
    std::string curve_key_file, server_key_file;
    for (int i = 3; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        ipc::NameValue pair;
        if (arg == "--garbage") {
            garbage = true;
        } else if (arg == "--method" && (v = value())) {
            if (!ipc::parse_method(v, request.method)) return usage();
        } else if (arg == "--request-id" && (v = value())) {
            request.request_id = v;
        } else if (arg == "--timeout-ms" && (v = value())) {
            request.timeout_ms = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
        } else if (arg == "--body" && (v = value())) {
            request.body = v;
        } else if (arg == "--principal" && (v = value())) {
            request.principal = v;
        } else if (arg == "--param" && (v = value()) && split_pair(v, pair)) {
            request.params.push_back(pair);
        } else if (arg == "--header" && (v = value()) && split_pair(v, pair)) {
            request.headers.push_back(pair);
        } else if (arg == "--count" && (v = value())) {
            count = std::strtol(v, nullptr, 10);
        } else if (arg == "--wait-ms" && (v = value())) {
            wait_ms = std::strtol(v, nullptr, 10);
        } else if (arg == "--curve-key" && (v = value())) {
            curve_key_file = v;
        } else if (arg == "--server-key" && (v = value())) {
            server_key_file = v;
        } else {
            return usage();
        }
    }
    if (count < 1 || wait_ms < 0) return usage();
    if (curve_key_file.empty() != server_key_file.empty()) return usage();
    curve::KeyPair keys;
    std::string server_key, key_error;
    if (!curve_key_file.empty() && (!curve::load_secret_key(curve_key_file, keys, key_error) ||
                                    !curve::load_public_key(server_key_file, server_key, key_error))) {
        std::fprintf(stderr, "paygate-ipc-send: %s\n", key_error.c_str());
        return 2;
    }

    zmq::context_t ctx(1);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::linger, 0);
    if (!server_key.empty()) {
        sock.set(zmq::sockopt::curve_serverkey, server_key);
        sock.set(zmq::sockopt::curve_publickey, keys.public_key);
        sock.set(zmq::sockopt::curve_secretkey, keys.secret_key);
    }
    sock.connect(endpoint);
    if (garbage) sock.send(zmq::str_buffer("not a paygate frame"), zmq::send_flags::none);

    auto started = std::chrono::steady_clock::now();
    for (long n = 1; n <= count; ++n) {
        request.id = static_cast<std::uint64_t>(n);
        std::string frame = ipc::encode(request);
        sock.send(zmq::buffer(frame), zmq::send_flags::none);

        zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, std::chrono::milliseconds(wait_ms)) == 0) {
            std::fprintf(stderr, "paygate-ipc-send: no reply within %ld ms (request %ld)\n", wait_ms, n);
            return 1;
        }
        zmq::message_t msg;
        (void)sock.recv(msg, zmq::recv_flags::none);
        ipc::Reply reply;
        std::string error;
        if (!ipc::decode(msg.to_string_view(), reply, error)) {
            std::fprintf(stderr, "paygate-ipc-send: bad reply frame: %s\n", error.c_str());
            return 1;
        }
        if (reply.id != request.id) {
            std::fprintf(stderr, "paygate-ipc-send: reply id %llu, expected %llu\n",
                         static_cast<unsigned long long>(reply.id), static_cast<unsigned long long>(request.id));
            return 1;
        }
        if (count == 1) {
            std::string headers;
            for (const auto& [name, value] : reply.headers) headers += " " + name + "=" + value;
            std::printf("status=%u id=%llu%s body=%s\n", reply.status, static_cast<unsigned long long>(reply.id),
                        headers.c_str(), reply.body.c_str());
        }
    }
    if (count > 1) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::printf("%ld replies in %.3f s (%.0f/s, one at a time)\n", count, secs, count / secs);
    }
    return 0;
}
