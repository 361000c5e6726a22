// One nginx worker's ZeroMQ link to the paygated daemons: a DEALER socket, never blocking.
//
// Plain C++ over libzmq, no nginx types: the module registers fd() with nginx's event loop and
// calls drain() when it fires. ZMQ_FD is edge-triggered and any zmq call may consume its signal,
// so after sending the caller must schedule a drain() itself (once per event-loop pass is
// enough: drain() receives until empty and re-arms the descriptor).
#pragma once

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
    // Creates the context (one I/O thread) and connects to every endpoint, with CURVE when
    // `keys` are given (each endpoint then needs its daemon's public key). Throws ChannelError.
    // `max_in_flight` bounds the send queue: beyond it sends fail instead of queueing.
    DaemonChannel(const std::vector<DaemonEndpoint>& endpoints, int max_in_flight, const ClientKeys& keys);
    ~DaemonChannel();

    DaemonChannel(const DaemonChannel&) = delete;
    DaemonChannel& operator=(const DaemonChannel&) = delete;

    // The descriptor that signals "ZMQ_EVENTS may have changed".
    int fd() const { return fd_; }

    // Queues one frame without blocking. False when no daemon connection is up or the queue is
    // full: the caller answers 503 at once.
    bool send(std::string_view frame);

    // True when a reply is waiting to be received.
    bool readable();

    // Receives every waiting reply and hands each frame to `on_reply`, until none is left and
    // ZMQ_EVENTS confirms it (which re-arms fd()).
    void drain(const std::function<void(std::string_view frame)>& on_reply);

    // Hands every handshake event waiting on the monitor to `on_event`; never blocks.
    void poll_link_events(const std::function<void(const LinkEvent& event)>& on_event);

private:
    void* context_ = nullptr;
    void* socket_ = nullptr;
    void* monitor_ = nullptr;   // PAIR receiving the socket's handshake events
    int fd_ = -1;
};

}  // namespace paygate::module
