// One nginx worker's ZeroMQ link to the paygated daemons: a DEALER socket, never blocking.
//
// Plain C++ over libzmq, no nginx types: the module registers fd() with nginx's event loop and
// calls drain() when it fires. ZMQ_FD is edge-triggered and any zmq call may consume its signal,
// so after sending the caller must schedule a drain() itself (once per event-loop pass is
// enough: drain() receives until empty and re-arms the descriptor).
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::module {

struct ChannelError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class DaemonChannel {
public:
    // Creates the context (one I/O thread, started with every signal blocked: signals are for
    // the caller's thread) and connects to every endpoint. Throws ChannelError.
    // `max_in_flight` bounds the send queue: beyond it sends fail instead of queueing.
    DaemonChannel(const std::vector<std::string>& endpoints, int max_in_flight);
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
    // ZMQ_EVENTS confirms it (which re-arms fd()). If `on_reply` throws, the drain still goes
    // on to the end and then rethrows the first exception.
    void drain(const std::function<void(std::string_view frame)>& on_reply);

private:
    void* context_ = nullptr;
    void* socket_ = nullptr;
    int fd_ = -1;
};

}  // namespace paygate::module
