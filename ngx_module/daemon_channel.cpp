// The worker's DEALER socket to the daemons (see daemon_channel.hpp).
#include "daemon_channel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <csignal>
#include <exception>
#include <pthread.h>
#include <zmq.h>

namespace paygate::module {

namespace {

// Blocks every signal in the calling thread for its lifetime. Threads created meanwhile (libzmq's
// I/O thread and reaper) inherit the full mask from their first instruction, so a
// process-directed signal (nginx's QUIT, TERM, HUP, USR1, CHLD) can only be taken by nginx's own
// thread: one taken by a zmq thread would run nginx's handler there and leave nginx's event loop
// asleep in epoll_wait. (libzmq blocks signals itself, but only once its thread runs.)
class SignalsBlocked {
public:
    SignalsBlocked() {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved_);
    }
    ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
    SignalsBlocked(const SignalsBlocked&) = delete;
    SignalsBlocked& operator=(const SignalsBlocked&) = delete;

private:
    sigset_t saved_;
};

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

}  // namespace

DaemonChannel::DaemonChannel(const std::vector<DaemonEndpoint>& endpoints, int max_in_flight, const ClientKeys& keys) {
    SignalsBlocked blocked;   // the context starts its threads with the first socket, below
    context_ = zmq_ctx_new();
    if (context_ == nullptr) throw ChannelError(std::string("zmq_ctx_new: ") + zmq_strerror(zmq_errno()));
    try {
        zmq_ctx_set(context_, ZMQ_IO_THREADS, 1);
        bool curve = !keys.secret_key.empty();
        for (const DaemonEndpoint& endpoint : endpoints) {
            Socket s;
            s.handle = zmq_socket(context_, ZMQ_DEALER);
            if (s.handle == nullptr) throw ChannelError(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
            sockets_.push_back(s);
            // Queue only to a connected daemon: with it down, send fails at once and the next
            // daemon (or a 503) is chosen instead of parking requests until their timeout.
            set_int(s.handle, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE");
            // The in-flight bound is the module's own count (pending requests). The send queue
            // gets headroom over it: libzmq learns late that messages have left for the daemon,
            // and the token sync takes a place too, so a queue of exactly the bound refused
            // bursts early.
            set_int(s.handle, ZMQ_SNDHWM, max_in_flight > 1000000 ? 2000000 : max_in_flight * 2 + 16, "ZMQ_SNDHWM");
            set_int(s.handle, ZMQ_RCVHWM, 0, "ZMQ_RCVHWM");  // replies are bounded by what we sent
            set_int(s.handle, ZMQ_LINGER, 0, "ZMQ_LINGER");
            set_int(s.handle, ZMQ_RECONNECT_IVL, 100, "ZMQ_RECONNECT_IVL");
            set_int(s.handle, ZMQ_RECONNECT_IVL_MAX, 1000, "ZMQ_RECONNECT_IVL_MAX");
            // A daemon that stops answering at the transport level (host gone, process frozen)
            // is dropped after the heartbeat timeout, so new requests go to the others or get 503.
            set_int(s.handle, ZMQ_HEARTBEAT_IVL, 1000, "ZMQ_HEARTBEAT_IVL");
            set_int(s.handle, ZMQ_HEARTBEAT_TIMEOUT, 3000, "ZMQ_HEARTBEAT_TIMEOUT");
            // Handshake outcomes go to a monitor the worker reads on a timer (wrong keys get logged).
            std::string monitor_endpoint = "inproc://paygate-channel-monitor-" + std::to_string(sockets_.size());
            if (zmq_socket_monitor(s.handle, monitor_endpoint.c_str(),
                                   ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
                throw ChannelError(std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
            }
            sockets_.back().monitor = zmq_socket(context_, ZMQ_PAIR);
            if (sockets_.back().monitor == nullptr) {
                throw ChannelError(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
            }
            set_int(sockets_.back().monitor, ZMQ_LINGER, 0, "ZMQ_LINGER");
            if (zmq_connect(sockets_.back().monitor, monitor_endpoint.c_str()) != 0) {
                throw ChannelError(std::string("zmq_connect monitor: ") + zmq_strerror(zmq_errno()));
            }
            if (curve) {
                set_key(s.handle, ZMQ_CURVE_PUBLICKEY, keys.public_key, "ZMQ_CURVE_PUBLICKEY");
                set_key(s.handle, ZMQ_CURVE_SECRETKEY, keys.secret_key, "ZMQ_CURVE_SECRETKEY");
                set_key(s.handle, ZMQ_CURVE_SERVERKEY, endpoint.public_key, "ZMQ_CURVE_SERVERKEY");
            }
            if (zmq_connect(s.handle, endpoint.address.c_str()) != 0) {
                throw ChannelError("zmq_connect " + endpoint.address + ": " + zmq_strerror(zmq_errno()));
            }
            size_t size = sizeof s.fd;
            if (zmq_getsockopt(s.handle, ZMQ_FD, &sockets_.back().fd, &size) != 0) {
                throw ChannelError(std::string("ZMQ_FD: ") + zmq_strerror(zmq_errno()));
            }
        }
    } catch (...) {
        for (Socket& s : sockets_) {
            if (s.monitor != nullptr) zmq_close(s.monitor);
            zmq_close(s.handle);
        }
        zmq_ctx_term(context_);
        throw;
    }
}

DaemonChannel::~DaemonChannel() {
    for (Socket& s : sockets_) {
        zmq_close(s.handle);
        zmq_close(s.monitor);
    }
    zmq_ctx_term(context_);
}

void DaemonChannel::poll_link_events(const std::function<void(const LinkEvent& event)>& on_event) {
    for (Socket& s : sockets_) {
        for (;;) {
            unsigned char head[6];
            int n = zmq_recv(s.monitor, head, sizeof head, ZMQ_DONTWAIT);
            if (n < 0) {
                if (zmq_errno() == EINTR) continue;
                break;   // EAGAIN: nothing waiting
            }
            char address[512];
            int len = zmq_recv(s.monitor, address, sizeof address, ZMQ_DONTWAIT);   // the second frame
            if (n != static_cast<int>(sizeof head) || len < 0) continue;
            LinkEvent event;
            std::memcpy(&event.event, head, sizeof event.event);
            std::memcpy(&event.value, head + 2, sizeof event.value);
            event.endpoint.assign(address, static_cast<std::size_t>(std::min<int>(len, sizeof address)));
            on_event(event);
        }
    }
}

bool DaemonChannel::try_send(Socket& s, std::string_view frame) {
    return zmq_send(s.handle, frame.data(), frame.size(), ZMQ_DONTWAIT) == static_cast<int>(frame.size());
}

int DaemonChannel::send(std::string_view frame, int avoid) {
    std::size_t n = sockets_.size();
    std::size_t start = next_++ % n;
    Clock::time_point now = Clock::now();
    // First the daemons that are not resting, then (none took it) the resting ones.
    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t k = 0; k < n; ++k) {
            std::size_t i = (start + k) % n;
            if (static_cast<int>(i) == avoid) continue;
            bool resting = sockets_[i].rest_until > now;
            if (resting != (pass == 1)) continue;
            if (try_send(sockets_[i], frame)) return static_cast<int>(i);
        }
    }
    return -1;
}

bool DaemonChannel::readable(std::size_t i) {
    int events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt(sockets_[i].handle, ZMQ_EVENTS, &events, &size) != 0) return false;
    return (events & ZMQ_POLLIN) != 0;
}

void DaemonChannel::drain(std::size_t i, const std::function<void(std::string_view frame)>& on_reply) {
    void* socket = sockets_[i].handle;
    zmq_msg_t msg;
    bool rest_of_multipart = false;
    // A handler that throws must not end the drain early: the replies behind it would stay
    // queued with ZMQ_FD's edge already spent, and nothing would wake the event loop for them
    // (nor for any later reply). The drain goes on to the ZMQ_EVENTS check; the first
    // exception is rethrown after it.
    std::exception_ptr failure;
    for (;;) {
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            int err = zmq_errno();
            if (err == EINTR) continue;
            // Empty for now. Asking ZMQ_EVENTS last re-arms the edge-triggered ZMQ_FD: without
            // it the descriptor might never fire again for replies that are already queued.
            if (err == EAGAIN && readable(i)) continue;
            if (failure) std::rethrow_exception(failure);
            return;
        }
        // A reply is one frame; a multipart message is not ours and is skipped whole.
        bool more = zmq_msg_more(&msg) != 0;
        if (!more && !rest_of_multipart) {
            std::string_view frame(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
            try {
                on_reply(frame);
            } catch (...) {
                if (!failure) failure = std::current_exception();
            }
        }
        rest_of_multipart = more;
        zmq_msg_close(&msg);
    }
}

}  // namespace paygate::module
