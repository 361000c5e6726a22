// One nginx worker's ZeroMQ link to the paygated daemons: a DEALER socket per daemon, never blocking.
//
// Plain C++ over libzmq, no nginx types: the module registers each fd(i) with nginx's event loop
// and calls drain(i) when it fires. ZMQ_FD is edge-triggered and any zmq call may consume its
// signal, so after sending on daemon i the caller must schedule a drain(i) itself (once per
// event-loop pass is enough: drain() receives until empty and re-arms the descriptor).
//
// One socket per daemon (rather than one DEALER connected to all) lets the module choose: it
// takes the daemons in turn, skips one that is not connected or that said it is draining, and can
// send a request a daemon refused unexecuted to a different daemon.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::module {

struct ChannelError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One daemon to connect to: its endpoint and, with CURVE, its public key (Z85; "" for plain).
struct DaemonEndpoint {
    std::string address;
    std::string public_key;
};

// This worker's CURVE key pair (Z85); both empty for a plain link (`paygate_curve off`).
struct ClientKeys {
    std::string public_key;
    std::string secret_key;
};

// A handshake outcome reported by libzmq's socket monitor (ZMQ_EVENT_HANDSHAKE_*).
struct LinkEvent {
    std::uint16_t event = 0;
    std::uint32_t value = 0;    // errno, ZMQ_PROTOCOL_ERROR_* or the ZAP status code
    std::string endpoint;
};

class DaemonChannel {
public:
    using Clock = std::chrono::steady_clock;

    // Creates the context (one I/O thread, started with every signal blocked: signals are for
    // the caller's thread) and one socket per endpoint, with CURVE when `keys` are given (each
    // endpoint then needs its daemon's public key). Throws ChannelError. `max_in_flight` bounds
    // each send queue: beyond it sends fail instead of queueing.
    DaemonChannel(const std::vector<DaemonEndpoint>& endpoints, int max_in_flight, const ClientKeys& keys);
    ~DaemonChannel();

    DaemonChannel(const DaemonChannel&) = delete;
    DaemonChannel& operator=(const DaemonChannel&) = delete;

    std::size_t size() const { return sockets_.size(); }
    // The descriptor that signals "ZMQ_EVENTS of daemon i may have changed".
    int fd(std::size_t i) const { return sockets_[i].fd; }

    // Queues one frame for the next daemon in turn, without blocking: daemons resting (see
    // rest()) are tried only when no other takes it, `avoid` never. Returns the daemon's index,
    // or -1 when none is connected or every queue is full: the caller answers 503 at once.
    int send(std::string_view frame, int avoid = -1);

    // Queues one frame for daemon i only (a metrics scrape asks each daemon); false when it is not
    // connected or its queue is full.
    bool send_to(std::size_t i, std::string_view frame) { return try_send(sockets_[i], frame); }

    // Prefer the other daemons over daemon i until `until` (it said it is draining or overloaded).
    void rest(std::size_t i, Clock::time_point until) { sockets_[i].rest_until = until; }

    // True when a reply from daemon i is waiting to be received.
    bool readable(std::size_t i);

    // Receives every waiting reply of daemon i and hands each frame to `on_reply`, until none is
    // left and ZMQ_EVENTS confirms it (which re-arms fd(i)). If `on_reply` throws, the drain
    // still goes on to the end and then rethrows the first exception.
    void drain(std::size_t i, const std::function<void(std::string_view frame)>& on_reply);

    // Hands every handshake event waiting on the monitors to `on_event`; never blocks.
    void poll_link_events(const std::function<void(const LinkEvent& event)>& on_event);

private:
    struct Socket {
        void* handle = nullptr;
        void* monitor = nullptr;   // PAIR receiving the socket's handshake events
        int fd = -1;
        Clock::time_point rest_until{};
    };
    bool try_send(Socket& s, std::string_view frame);

    void* context_ = nullptr;
    std::vector<Socket> sockets_;
    std::size_t next_ = 0;   // where the next send starts looking
};

}  // namespace paygate::module
