// The worker's ZeroMQ channel in nginx's event loop: ZMQ_FD as an nginx connection, sends, reply dispatch.
#include "paygate_module.hpp"

#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::module {

Worker* worker = nullptr;

namespace {

// The channel's fd fired: receive every reply and resume the requests waiting for them.
void on_channel_event(ngx_event_t* ev) {
    if (worker == nullptr) return;
    try {
        worker->channel.drain([ev](std::string_view frame) {
            ipc::Reply reply;
            std::string error;
            if (!ipc::decode(frame, reply, error)) {
                ngx_log_error(NGX_LOG_ERR, ev->log, 0, "paygate: bad reply frame from daemon: %s", error.c_str());
                return;
            }
            if (reply.id & kInternalId) {
                on_token_sync_reply(reply, ev->log);
                return;
            }
            auto it = worker->pending.find(reply.id);
            if (it == worker->pending.end()) {
                // Its request timed out or its client left: the late reply has nobody to go to.
                ngx_log_error(NGX_LOG_INFO, ev->log, 0, "paygate: late reply %uL dropped", reply.id);
                return;
            }
            deliver_reply(it->second, reply);
        });
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "paygate: receiving replies failed: %s", e.what());
    }
}

}  // namespace

ngx_int_t open_channel(ngx_cycle_t* cycle, const MainConf& conf) {
    std::vector<std::string> endpoints;
    auto* values = static_cast<ngx_str_t*>(conf.daemons->elts);
    for (ngx_uint_t i = 0; i < conf.daemons->nelts; ++i) endpoints.emplace_back(view(values[i]));

    auto w = std::make_unique<Worker>(endpoints, static_cast<ngx_uint_t>(conf.max_in_flight));
    ngx_connection_t* c = ngx_get_connection(w->channel.fd(), cycle->log);
    if (c == nullptr) return NGX_ERROR;
    c->read->handler = on_channel_event;
    c->read->log = cycle->log;
    c->write->log = cycle->log;
    c->data = w.get();
    ngx_uint_t flags = NGX_LEVEL_EVENT;
    if (ngx_event_flags & NGX_USE_CLEAR_EVENT) flags = NGX_CLEAR_EVENT;
    if (ngx_add_event(c->read, NGX_READ_EVENT, flags) != NGX_OK) {
        ngx_free_connection(c);
        return NGX_ERROR;
    }
    w->connection = c;
    worker = w.release();
    return NGX_OK;
}

void close_channel() {
    if (worker == nullptr) return;
    ngx_connection_t* c = worker->connection;
    if (c->read->active) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    ngx_free_connection(c);
    c->fd = static_cast<ngx_socket_t>(-1);   // the fd belongs to libzmq, which closes it
    // Requests still waiting now never get an answer from this process; forget them.
    for (auto& [id, r] : worker->pending) {
        if (RequestCtx* ctx = ctx_of(r)) ctx->id = 0;
    }
    delete worker;
    worker = nullptr;
}

bool send_to_daemons(const ipc::Request& request) {
    bool sent = worker->channel.send(ipc::encode(request));
    // A send may swallow ZMQ_FD's edge: drain once at the end of this event-loop pass (posting
    // an already posted event is a no-op, so a burst of sends costs one drain).
    ngx_post_event(worker->connection->read, &ngx_posted_events);
    return sent;
}

}  // namespace paygate::module
