// The sockets that guard paygated's front end: the ZAP handler that asks LinkAuth about every
// CURVE peer, and the monitor that reports failed handshakes. The broker polls both with its own
// sockets (a connecting peer's handshake waits for the ZAP answer, whether or not a worker is idle).
#pragma once

#include <memory>
#include <string>

#include <zmq.hpp>

#include "paygate/curve.hpp"
#include "paygated/link_auth.hpp"

namespace paygate::daemon {

class FrontGuard {
public:
    // `auth` is null with `curve = off`: then only the monitor runs.
    FrontGuard(zmq::context_t& ctx, std::unique_ptr<LinkAuth> auth);

    // Before `front` binds: the monitor, and with CURVE the ZAP handler (bound first: libzmq lets
    // every peer in when no handler is bound) and the server key. False with the endpoint that
    // failed and why.
    bool attach(zmq::socket_t& front, std::string& failed_endpoint, std::string& error);

    // For zmq::poll. Without a ZAP socket zap_handle() is the monitor's and zap_events() 0, so the
    // slot watches nothing.
    void* monitor_handle() { return monitor_.handle(); }
    void* zap_handle() { return auth_ ? zap_.handle() : monitor_.handle(); }
    short zap_events() const { return static_cast<short>(auth_ ? ZMQ_POLLIN : 0); }

    void on_zap();       // answers every waiting ZAP request
    void on_monitor();   // logs every waiting handshake failure
    void close();

private:
    zmq::context_t& ctx_;
    std::unique_ptr<LinkAuth> auth_;
    zmq::socket_t zap_;       // REP on the ZAP endpoint, with auth_
    zmq::socket_t monitor_;   // PAIR: the front end's handshake failures
    curve::LogThrottle handshake_log_{std::chrono::seconds(10)};
};

}  // namespace paygate::daemon
