// The worker's ZeroMQ channel in nginx's event loop: ZMQ_FD as an nginx connection, sends, reply dispatch.
#include "paygate_module.hpp"

#include "paygate/json_error.hpp"

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::module {

Worker* worker = nullptr;

namespace {

// How long a daemon that refused a request unexecuted is passed over while others can take the
// work: a draining one is about to close its endpoint (it closes once nothing arrives for a
// while, see daemon.md), an overloaded one needs a moment.
constexpr auto kRestDraining = std::chrono::seconds(3);
constexpr auto kRestOverloaded = std::chrono::milliseconds(200);

std::string_view header_of(const ipc::Reply& reply, std::string_view name) {
    for (const auto& [n, value] : reply.headers) {
        if (n == name) return value;
    }
    return {};
}

// A daemon refused request `r` before running any of it: send it once more, to another daemon.
// False when that is not possible (one daemon, already resent, none other connected).
bool resend_elsewhere(ngx_http_request_t* r, RequestCtx* ctx, std::string_view why, ngx_log_t* log) {
    if (!ctx->resendable) return false;
    ipc::Request& request = *ctx->resendable;
    // The second daemon gets what is left of the module's wait, not a fresh timeout.
    ngx_msec_int_t left = ctx->timer.timer_set ? static_cast<ngx_msec_int_t>(ctx->timer.timer.key - ngx_current_msec) : 0;
    if (left <= 0) return false;
    request.timeout_ms = static_cast<std::uint32_t>(left);
    int first = ctx->daemon;
    int daemon = send_to_daemons(request, first);
    ctx->resendable.reset();
    if (daemon < 0) return false;
    ctx->daemon = daemon;
    ngx_log_error(NGX_LOG_INFO, log, 0, "paygate: daemon %d did not execute request %*s (%*s), sent to daemon %d",
                  first, static_cast<int>(request_id(r).size()), request_id(r).data(), static_cast<int>(why.size()),
                  why.data(), daemon);
    return true;
}

void on_reply(std::size_t daemon, std::string_view frame, ngx_log_t* log) {
    ipc::Reply reply;
    std::string error;
    if (!ipc::decode(frame, reply, error)) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "paygate: bad reply frame from daemon: %s", error.c_str());
        return;
    }
    std::string_view not_executed = header_of(reply, ipc::kNotExecutedHeader);
    if (!not_executed.empty()) {
        bool draining = not_executed == ipc::not_executed_name(ipc::NotExecuted::Draining);
        auto rest = draining ? std::chrono::duration_cast<DaemonChannel::Clock::duration>(kRestDraining)
                             : std::chrono::duration_cast<DaemonChannel::Clock::duration>(kRestOverloaded);
        worker->channel.rest(daemon, DaemonChannel::Clock::now() + rest);
    }
    if (reply.id & kInternalId) {
        on_token_sync_reply(reply, log);
        return;
    }
    auto it = worker->pending.find(reply.id);
    if (it == worker->pending.end()) {
        // Its request timed out or its client left: the late reply has nobody to go to.
        ngx_log_error(NGX_LOG_INFO, log, 0, "paygate: late reply %uL dropped", reply.id);
        return;
    }
    ngx_http_request_t* r = it->second;
    if (!not_executed.empty() && resend_elsewhere(r, ctx_of(r), not_executed, log)) return;
    deliver_reply(r, reply);
}

// A daemon's socket fired: receive every reply and resume the requests waiting for them.
void on_channel_event(ngx_event_t* ev) {
    if (worker == nullptr) return;
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto daemon = reinterpret_cast<std::uintptr_t>(c->data);
    try {
        worker->channel.drain(daemon, [daemon, ev](std::string_view frame) { on_reply(daemon, frame, ev->log); });
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "paygate: receiving replies failed: %s", e.what());
    }
}

void free_connection(ngx_connection_t* c) {
    if (c->read->active) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    ngx_free_connection(c);
    c->fd = static_cast<ngx_socket_t>(-1);   // the fd belongs to libzmq, which closes it
}

}  // namespace

ngx_int_t open_channel(ngx_cycle_t* cycle, const MainConf& conf) {
    std::vector<std::string> endpoints;
    auto* values = static_cast<ngx_str_t*>(conf.daemons->elts);
    for (ngx_uint_t i = 0; i < conf.daemons->nelts; ++i) endpoints.emplace_back(view(values[i]));

    auto w = std::make_unique<Worker>(endpoints, static_cast<ngx_uint_t>(conf.max_in_flight));
    ngx_uint_t flags = NGX_LEVEL_EVENT;
    if (ngx_event_flags & NGX_USE_CLEAR_EVENT) flags = NGX_CLEAR_EVENT;
    for (std::size_t i = 0; i < w->channel.size(); ++i) {
        ngx_connection_t* c = ngx_get_connection(w->channel.fd(i), cycle->log);
        if (c == nullptr) {
            for (ngx_connection_t* done : w->connections) free_connection(done);
            return NGX_ERROR;
        }
        c->read->handler = on_channel_event;
        c->read->log = cycle->log;
        c->write->log = cycle->log;
        c->data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(i));   // which daemon
        if (ngx_add_event(c->read, NGX_READ_EVENT, flags) != NGX_OK) {
            ngx_free_connection(c);
            c->fd = static_cast<ngx_socket_t>(-1);
            for (ngx_connection_t* done : w->connections) free_connection(done);
            return NGX_ERROR;
        }
        w->connections.push_back(c);
    }
    worker = w.release();
    return NGX_OK;
}

void close_channel() {
    if (worker == nullptr) return;
    for (ngx_connection_t* c : worker->connections) free_connection(c);
    worker->connections.clear();
    // Requests still waiting now never get an answer from this process; forget them.
    for (auto& [id, r] : worker->pending) {
        if (RequestCtx* ctx = ctx_of(r)) ctx->id = 0;
    }
    delete worker;
    worker = nullptr;
}

int send_to_daemons(const ipc::Request& request, int avoid) {
    int daemon = worker->channel.send(ipc::encode(request), avoid);
    // A send may swallow ZMQ_FD's edge: drain once at the end of this event-loop pass (posting
    // an already posted event is a no-op, so a burst of sends costs one drain).
    if (daemon >= 0) {
        ngx_post_event(worker->connections[static_cast<std::size_t>(daemon)]->read, &ngx_posted_events);
    }
    return daemon;
}

}  // namespace paygate::module
