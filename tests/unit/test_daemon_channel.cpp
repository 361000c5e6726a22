// The worker's ZeroMQ channel (ngx_module/daemon_channel.cpp) against a real ROUTER on loopback:
// libzmq's threads start with every signal blocked, and a reply handler that throws does not
// leave replies stranded behind an un-re-armed ZMQ_FD.
#include "cmocka.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <zmq.h>

#include "daemon_channel.hpp"

using paygate::module::DaemonChannel;

// ---- every thread created in this process, with the signal mask it starts with ----------------
//
// A new thread inherits its creator's signal mask at pthread_create. This definition interposes
// the one libzmq.so calls (the executable comes first in symbol lookup), notes the creator's mask
// and hands over to the next definition (the sanitizer's interceptor, then libc's).

namespace {
std::atomic<int> threads_created{0};
std::atomic<int> threads_created_with_open_mask{0};   // some blockable signal was not blocked
int first_unblocked_signal = 0;

// Signals a thread can block: all but SIGKILL, SIGSTOP and the ones glibc reserves for itself
// (the two below SIGRTMIN), which pthread_sigmask leaves alone.
bool blockable(int sig) { return sig != SIGKILL && sig != SIGSTOP && (sig < 32 || sig >= SIGRTMIN); }

int unblocked_signal(const sigset_t& mask) {
    for (int sig = 1; sig <= SIGRTMAX; ++sig) {
        if (blockable(sig) && sigismember(&mask, sig) != 1) return sig;
    }
    return 0;
}

}  // namespace

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
    using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
    static Create next = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    if (int sig = unblocked_signal(mask)) {
        threads_created_with_open_mask++;
        if (first_unblocked_signal == 0) first_unblocked_signal = sig;
    }
    threads_created++;
    return next(thread, attr, start, arg);
}

namespace {

sigset_t current_mask() {
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    return mask;
}

bool same_mask(const sigset_t& a, const sigset_t& b) {
    for (int sig = 1; sig <= SIGRTMAX; ++sig) {
        if (blockable(sig) && sigismember(&a, sig) != sigismember(&b, sig)) return false;
    }
    return true;
}

// ---- a daemon's side: a ROUTER on an ephemeral loopback port -----------------------------------

struct Router {
    void* ctx = zmq_ctx_new();
    void* socket = zmq_socket(ctx, ZMQ_ROUTER);
    std::string endpoint;
    std::string peer;   // the channel's identity, from its first message

    Router() {
        int zero = 0;
        zmq_setsockopt(socket, ZMQ_LINGER, &zero, sizeof zero);
        assert_int_equal(zmq_bind(socket, "tcp://127.0.0.1:*"), 0);
        char buf[256];
        size_t len = sizeof buf;
        assert_int_equal(zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, buf, &len), 0);
        endpoint = buf;
    }
    ~Router() {
        zmq_close(socket);
        zmq_ctx_term(ctx);
    }

    std::string receive() {   // [identity, frame]
        char id[256];
        int n = zmq_recv(socket, id, sizeof id, 0);
        assert_true(n > 0);
        peer.assign(id, static_cast<std::size_t>(n));
        std::vector<char> frame(1024);
        n = zmq_recv(socket, frame.data(), frame.size(), 0);
        assert_true(n >= 0);
        return std::string(frame.data(), static_cast<std::size_t>(n));
    }

    void reply(const std::string& frame) {
        assert_int_equal(zmq_send(socket, peer.data(), peer.size(), ZMQ_SNDMORE), static_cast<int>(peer.size()));
        assert_int_equal(zmq_send(socket, frame.data(), frame.size(), 0), static_cast<int>(frame.size()));
    }
};

// Sends until the connection is up (ZMQ_IMMEDIATE refuses sends before), then lets the router
// learn the channel's identity.
void connect(DaemonChannel& channel, Router& router) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (channel.send("hello") < 0) {
        assert_true(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    assert_string_equal(router.receive().c_str(), "hello");
}

bool fd_fires(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
}

// Waits until the replies the router sent are queued in the channel: the first one shows in
// ZMQ_EVENTS, the others follow it on the same loopback connection within milliseconds.
void wait_queued(DaemonChannel& channel) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!channel.readable(0)) {
        assert_true(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

// ---- tests -------------------------------------------------------------------------------------

// Process-directed signals (nginx's QUIT, TERM, HUP, USR1, CHLD...) must reach nginx's own
// thread. libzmq's threads block signals themselves once running, but until then they run with
// the mask they inherited: the channel creates them with every signal blocked, then restores the
// caller's mask.
void zmq_threads_start_with_every_signal_blocked(void**) {
    Router router;
    sigset_t before = current_mask();
    assert_int_equal(unblocked_signal(before), SIGHUP);   // this thread blocks nothing, as nginx's
    int created_before = threads_created.load();
    int open_before = threads_created_with_open_mask.load();
    first_unblocked_signal = 0;
    {
        DaemonChannel channel({router.endpoint}, 4);
        assert_true(threads_created.load() > created_before);   // its I/O thread (and reaper)
        assert_true(same_mask(current_mask(), before));         // the caller's mask is back
        connect(channel, router);
    }
    int open = threads_created_with_open_mask.load() - open_before;
    if (open != 0) {
        fail_msg("%d of the channel's %d threads started with signal %d (%s) unblocked", open,
                 threads_created.load() - created_before, first_unblocked_signal, strsignal(first_unblocked_signal));
    }
}

// A handler that throws on the first of three queued replies: the other two are still handed
// over, the exception comes out of drain() afterwards, and ZMQ_FD is re-armed (ZMQ_EVENTS was
// read with the queue empty), so a later reply wakes the event loop again.
void a_throwing_handler_leaves_no_reply_stranded(void**) {
    Router router;
    DaemonChannel channel({router.endpoint}, 4);
    connect(channel, router);
    for (const char* frame : {"one", "two", "three"}) router.reply(frame);
    wait_queued(channel);

    std::vector<std::string> seen;
    bool thrown = false;
    try {
        channel.drain(0, [&](std::string_view frame) {
            seen.emplace_back(frame);
            if (frame == "one") throw std::runtime_error("bad reply");
        });
    } catch (const std::runtime_error& e) {
        thrown = true;
        assert_string_equal(e.what(), "bad reply");
    }
    assert_true(thrown);
    assert_int_equal(seen.size(), 3);
    assert_string_equal(seen[2].c_str(), "three");
    assert_false(channel.readable(0));

    router.reply("four");
    if (!fd_fires(channel.fd(0), 2000)) fail_msg("ZMQ_FD did not fire for a new reply after the drain threw");
    seen.clear();
    channel.drain(0, [&](std::string_view frame) { seen.emplace_back(frame); });
    assert_int_equal(seen.size(), 1);
    assert_string_equal(seen[0].c_str(), "four");
}

// One socket per daemon: sends take the daemons in turn, never the one to `avoid`, and pass over
// a resting daemon while another is connected (the module's resend and drain handling).
void sends_rotate_avoid_and_pass_over_resting_daemons(void**) {
    Router first, second;
    DaemonChannel channel({first.endpoint, second.endpoint}, 4);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    // wait until both are connected: ZMQ_IMMEDIATE refuses a daemon before
    std::vector<int> hellos(2, 0);
    while (hellos[0] == 0 || hellos[1] == 0) {
        assert_true(std::chrono::steady_clock::now() < deadline);
        int i = channel.send("hello", hellos[0] ? 0 : (hellos[1] ? 1 : -1));
        if (i >= 0) hellos[static_cast<std::size_t>(i)]++;
        else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int n = 0; n < hellos[0]; ++n) assert_string_equal(first.receive().c_str(), "hello");
    for (int n = 0; n < hellos[1]; ++n) assert_string_equal(second.receive().c_str(), "hello");

    int a = channel.send("a");
    int b = channel.send("b");
    assert_true(a >= 0 && b >= 0 && a != b);            // in turn
    for (int n = 0; n < 4; ++n) assert_int_equal(channel.send("x", 0), 1);   // never the avoided one
    channel.rest(1, DaemonChannel::Clock::now() + std::chrono::seconds(30));
    for (int n = 0; n < 4; ++n) assert_int_equal(channel.send("y"), 0);      // the rested one passed over
    assert_int_equal(channel.send("z", 0), 1);          // ... unless it is the only choice left
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zmq_threads_start_with_every_signal_blocked),
        cmocka_unit_test(a_throwing_handler_leaves_no_reply_stranded),
        cmocka_unit_test(sends_rotate_avoid_and_pass_over_resting_daemons),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
