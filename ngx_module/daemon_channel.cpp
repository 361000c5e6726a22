// The worker's DEALER socket to the daemons (see daemon_channel.hpp).
#include "daemon_channel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <zmq.h>

namespace paygate::module {

namespace {

void set_int(void* socket, int option, int value, const char* name) {
    if (zmq_setsockopt(socket, option, &value, sizeof value) != 0) {
        throw ChannelError(std::string("zmq_setsockopt ") + name + ": " + zmq_strerror(zmq_errno()));
    }
}

void set_key(void* socket, int option, const std::string& z85, const char* name) {
    if (zmq_setsockopt(socket, option, z85.data(), z85.size()) != 0) {
        throw ChannelError(std::string("zmq_setsockopt ") + name + ": " + zmq_strerror(zmq_errno()));
    }
}

constexpr const char* kMonitorEndpoint = "inproc://paygate-channel-monitor";

}  // namespace

DaemonChannel::DaemonChannel(const std::vector<DaemonEndpoint>& endpoints, int max_in_flight, const ClientKeys& keys) {
    context_ = zmq_ctx_new();
    if (context_ == nullptr) throw ChannelError(std::string("zmq_ctx_new: ") + zmq_strerror(zmq_errno()));
    try {
        zmq_ctx_set(context_, ZMQ_IO_THREADS, 1);
        socket_ = zmq_socket(context_, ZMQ_DEALER);
        if (socket_ == nullptr) throw ChannelError(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
        // Queue only to connected daemons: with none up, send fails at once (503) instead of
        // parking requests until their timeout.
        set_int(socket_, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE");
        // The in-flight bound is the module's own count (pending requests). The send queue gets
        // headroom over it: libzmq learns late that messages have left for the daemon, and the
        // token sync takes a place too, so a queue of exactly the bound refused bursts early.
        set_int(socket_, ZMQ_SNDHWM, max_in_flight > 1000000 ? 2000000 : max_in_flight * 2 + 16, "ZMQ_SNDHWM");
        set_int(socket_, ZMQ_RCVHWM, 0, "ZMQ_RCVHWM");  // replies are bounded by what we sent
        set_int(socket_, ZMQ_LINGER, 0, "ZMQ_LINGER");
        set_int(socket_, ZMQ_RECONNECT_IVL, 100, "ZMQ_RECONNECT_IVL");
        set_int(socket_, ZMQ_RECONNECT_IVL_MAX, 1000, "ZMQ_RECONNECT_IVL_MAX");
        // A daemon that stops answering at the transport level (host gone, process frozen) is
        // dropped after the heartbeat timeout, so new requests go to the others or get 503.
        set_int(socket_, ZMQ_HEARTBEAT_IVL, 1000, "ZMQ_HEARTBEAT_IVL");
        set_int(socket_, ZMQ_HEARTBEAT_TIMEOUT, 3000, "ZMQ_HEARTBEAT_TIMEOUT");
        // Handshake outcomes go to a monitor the worker reads on a timer (wrong keys get logged).
        if (zmq_socket_monitor(socket_, kMonitorEndpoint,
                               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
            throw ChannelError(std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
        }
        monitor_ = zmq_socket(context_, ZMQ_PAIR);
        if (monitor_ == nullptr) throw ChannelError(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
        set_int(monitor_, ZMQ_LINGER, 0, "ZMQ_LINGER");
        if (zmq_connect(monitor_, kMonitorEndpoint) != 0) {
            throw ChannelError(std::string("zmq_connect monitor: ") + zmq_strerror(zmq_errno()));
        }
        bool curve = !keys.secret_key.empty();
        if (curve) {
            set_key(socket_, ZMQ_CURVE_PUBLICKEY, keys.public_key, "ZMQ_CURVE_PUBLICKEY");
            set_key(socket_, ZMQ_CURVE_SECRETKEY, keys.secret_key, "ZMQ_CURVE_SECRETKEY");
        }
        for (const DaemonEndpoint& endpoint : endpoints) {
            // The server key is copied into each connection as it is made: one per daemon.
            if (curve) set_key(socket_, ZMQ_CURVE_SERVERKEY, endpoint.public_key, "ZMQ_CURVE_SERVERKEY");
            if (zmq_connect(socket_, endpoint.address.c_str()) != 0) {
                throw ChannelError("zmq_connect " + endpoint.address + ": " + zmq_strerror(zmq_errno()));
            }
        }
        size_t size = sizeof fd_;
        if (zmq_getsockopt(socket_, ZMQ_FD, &fd_, &size) != 0) {
            throw ChannelError(std::string("ZMQ_FD: ") + zmq_strerror(zmq_errno()));
        }
    } catch (...) {
        if (monitor_ != nullptr) zmq_close(monitor_);
        if (socket_ != nullptr) zmq_close(socket_);
        zmq_ctx_term(context_);
        throw;
    }
}

DaemonChannel::~DaemonChannel() {
    zmq_close(socket_);
    zmq_close(monitor_);
    zmq_ctx_term(context_);
}

void DaemonChannel::poll_link_events(const std::function<void(const LinkEvent& event)>& on_event) {
    for (;;) {
        unsigned char head[6];
        int n = zmq_recv(monitor_, head, sizeof head, ZMQ_DONTWAIT);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            return;   // EAGAIN: nothing waiting
        }
        char address[512];
        int len = zmq_recv(monitor_, address, sizeof address, ZMQ_DONTWAIT);   // the second frame
        if (n != static_cast<int>(sizeof head) || len < 0) continue;
        LinkEvent event;
        std::memcpy(&event.event, head, sizeof event.event);
        std::memcpy(&event.value, head + 2, sizeof event.value);
        event.endpoint.assign(address, static_cast<std::size_t>(std::min<int>(len, sizeof address)));
        on_event(event);
    }
}

bool DaemonChannel::send(std::string_view frame) {
    return zmq_send(socket_, frame.data(), frame.size(), ZMQ_DONTWAIT) == static_cast<int>(frame.size());
}

bool DaemonChannel::readable() {
    int events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt(socket_, ZMQ_EVENTS, &events, &size) != 0) return false;
    return (events & ZMQ_POLLIN) != 0;
}

void DaemonChannel::drain(const std::function<void(std::string_view frame)>& on_reply) {
    zmq_msg_t msg;
    bool rest_of_multipart = false;
    for (;;) {
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, socket_, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            int err = zmq_errno();
            if (err == EINTR) continue;
            // Empty for now. Asking ZMQ_EVENTS last re-arms the edge-triggered ZMQ_FD: without
            // it the descriptor might never fire again for replies that are already queued.
            if (err == EAGAIN && readable()) continue;
            return;
        }
        // A reply is one frame; a multipart message is not ours and is skipped whole.
        bool more = zmq_msg_more(&msg) != 0;
        if (!more && !rest_of_multipart) {
            std::string_view frame(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
            try {
                on_reply(frame);
            } catch (...) {
                zmq_msg_close(&msg);
                throw;
            }
        }
        rest_of_multipart = more;
        zmq_msg_close(&msg);
    }
}

}  // namespace paygate::module
