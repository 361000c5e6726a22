// The worker's ZeroMQ channel in nginx's event loop: one socket per daemon as nginx connections, sends,
// reply dispatch, the resend of unexecuted requests, and the link's keys and handshake events.
#include "paygate_module.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.h>

#include "paygate/curve.hpp"
#include "paygate/json_error.hpp"

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
    ctx->sent_at = std::chrono::steady_clock::now();
    if (ModuleMetrics* m = metrics()) m->resent();
    ngx_log_error(NGX_LOG_INFO, log, 0, "paygate: daemon %d did not execute request %*s (%*s), sent to daemon %d",
                  first, request_id(r).size(), request_id(r).data(), why.size(),
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
    ModuleMetrics* m = metrics();
    if (reply.id & kInternalId) {
        auto scrape = worker->scrapes.find(reply.id);
        if (scrape != worker->scrapes.end()) {
            on_metrics_reply(scrape->second, daemon, reply);
            return;
        }
        on_token_sync_reply(reply, log);
        return;
    }
    auto it = worker->pending.find(reply.id);
    if (it == worker->pending.end()) {
        // Its request timed out or its client left: the late reply has nobody to go to.
        ngx_log_error(NGX_LOG_INFO, log, 0, "paygate: late reply %uL dropped", reply.id);
        if (m) m->late_reply();
        return;
    }
    ngx_http_request_t* r = it->second;
    RequestCtx* ctx = ctx_of(r);
    if (m) {
        auto took = std::chrono::steady_clock::now() - ctx->sent_at;
        m->round_trip(ctx->route_slot, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
    }
    if (!not_executed.empty() && resend_elsewhere(r, ctx, not_executed, log)) return;
    if (m && !not_executed.empty()) {
        m->unavailable(not_executed == ipc::not_executed_name(ipc::NotExecuted::Draining) ? Unavailable::Draining
                                                                                          : Unavailable::Overloaded);
    } else if (m && reply.status == 503) {
        m->unavailable(Unavailable::DaemonUnavailable);
    } else if (m && reply.status == 504) {
        m->unavailable(Unavailable::DaemonTimeout);
    }
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


// ---- the link's keys (configuration time, in the master) ----

char* conf_error(ngx_conf_t* cf, const std::string& message) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", message.c_str());
    return static_cast<char*>(NGX_CONF_ERROR);
}

// A copy of `text` in the configuration's pool.
bool pool_copy(ngx_conf_t* cf, const std::string& text, ngx_str_t& out) {
    out.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, text.size()));
    if (out.data == nullptr) return false;
    ngx_memcpy(out.data, text.data(), text.size());
    out.len = text.size();
    return true;
}

void wipe_secret(void* data) {
    auto* secret = static_cast<ngx_str_t*>(data);
    if (secret->data != nullptr) ngx_explicit_memzero(secret->data, secret->len);
}

// ---- the link's health: handshake events, read on a timer ----

constexpr ngx_msec_t kLinkCheckMs = 1000;

std::string protocol_reason(std::uint32_t value) {
    switch (value) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "security mechanism mismatch (paygate_curve here and the daemon's curve setting differ)";
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "cryptographic error (wrong keys)";
        default: {
            char hex[16];
            std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(value));
            return std::string("protocol error ") + hex;
        }
    }
}

void on_link_event(const LinkEvent& e, ngx_log_t* log) {
    bool& failing = worker->link_failing[e.endpoint];
    const char* endpoint = e.endpoint.c_str();
    switch (e.event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            if (failing) ngx_log_error(NGX_LOG_NOTICE, log, 0, "paygate: handshake with daemon %s succeeded", endpoint);
            failing = false;
            return;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            // libzmq does not retry a refused connection: only a reload (new workers) does.
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "paygate: daemon %s refused this worker's CURVE key (ZAP status %ui): add the public key "
                          "of paygate_curve_secret_key to the daemon's curve_allowed_keys, then reload nginx",
                          endpoint, static_cast<ngx_uint_t>(e.value));
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            ngx_log_error(NGX_LOG_ERR, log, 0, "paygate: handshake with daemon %s failed: %s; fix it, then reload nginx",
                          endpoint, protocol_reason(e.value).c_str());
            break;
        default:   // ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: retried; said once per streak
            if (!failing) {
                ngx_log_error(NGX_LOG_WARN, log, static_cast<ngx_err_t>(e.value),
                              "paygate: handshake with daemon %s failed (connection closed during it: a wrong "
                              "paygate_daemon_public_key, or the daemon stopped); retrying",
                              endpoint);
            }
            break;
    }
    failing = true;
}

void on_link_timer(ngx_event_t* ev) {
    if (worker == nullptr) return;
    try {
        worker->channel.poll_link_events([ev](const LinkEvent& e) { on_link_event(e, ev->log); });
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "paygate: reading the link's events failed: %s", e.what());
    }
    ngx_add_timer(ev, kLinkCheckMs);
}

}  // namespace

char* set_daemon(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    std::string_view endpoint = view(value[1]);
    if (endpoint.rfind("tcp://", 0) != 0 && endpoint.rfind("ipc://", 0) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_daemon \"%V\": expected tcp://host:port or ipc:///path",
                           &value[1]);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    if (conf->daemons == NGX_CONF_UNSET_PTR) {
        conf->daemons = ngx_array_create(cf->pool, 2, sizeof(DaemonConf));
        if (conf->daemons == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    }
    auto* slot = static_cast<DaemonConf*>(ngx_array_push(conf->daemons));
    if (slot == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    *slot = DaemonConf{value[1], ngx_null_string};
    if (cf->args->nelts == 3) {
        // This daemon's own key pair (a daemon per host, each rotated on its own).
        constexpr std::string_view kParam = "public_key=";
        std::string_view param = view(value[2]);
        if (param.rfind(kParam, 0) != 0 || param.size() == kParam.size()) {
            return conf_error(cf, "paygate_daemon " + std::string(endpoint) + ": unknown parameter \"" +
                                      std::string(param) + "\" (expected public_key=FILE)");
        }
        std::string key, error;
        if (!curve::load_public_key(std::string(param.substr(kParam.size())), key, error)) {
            return conf_error(cf, "paygate_daemon " + std::string(endpoint) + " public_key: " + error);
        }
        if (!pool_copy(cf, key, slot->public_key)) return static_cast<char*>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char* set_curve_secret_key(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    if (conf->curve_secret_key.len != 0) return const_cast<char*>("is duplicate");
    std::string path(view(static_cast<ngx_str_t*>(cf->args->elts)[1]));
    curve::KeyPair pair;
    std::string error;
    if (!curve::load_secret_key(path, pair, error)) return conf_error(cf, "paygate_curve_secret_key: " + error);
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == nullptr || !pool_copy(cf, pair.public_key, conf->curve_public_key) ||
        !pool_copy(cf, pair.secret_key, conf->curve_secret_key)) {
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    cln->handler = wipe_secret;
    cln->data = &conf->curve_secret_key;
    return NGX_CONF_OK;
}

char* set_daemon_public_key(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    if (conf->daemon_public_key.len != 0) return const_cast<char*>("is duplicate");
    std::string path(view(static_cast<ngx_str_t*>(cf->args->elts)[1]));
    std::string key, error;
    if (!curve::load_public_key(path, key, error)) return conf_error(cf, "paygate_daemon_public_key: " + error);
    if (!pool_copy(cf, key, conf->daemon_public_key)) return static_cast<char*>(NGX_CONF_ERROR);
    return NGX_CONF_OK;
}

char* check_link_keys(ngx_conf_t* cf, MainConf& conf) {
    bool any_daemon_key = conf.daemon_public_key.len != 0;
    bool all_daemon_keys = true;
    std::string keyless;
    if (conf.daemons != NGX_CONF_UNSET_PTR) {
        auto* daemons = static_cast<DaemonConf*>(conf.daemons->elts);
        for (ngx_uint_t i = 0; i < conf.daemons->nelts; ++i) {
            bool own = daemons[i].public_key.len != 0;
            any_daemon_key = any_daemon_key || own;
            if (!own && conf.daemon_public_key.len == 0 && all_daemon_keys) {
                all_daemon_keys = false;
                keyless = std::string(view(daemons[i].endpoint));
            }
        }
    }
    if (!conf.curve) {
        // Plain on request only, and never half configured: keys with `off` are a mistake.
        if (conf.curve_secret_key.len != 0 || any_daemon_key) {
            return conf_error(cf, "\"paygate_curve off\" contradicts the CURVE keys configured "
                                  "(paygate_curve_secret_key, paygate_daemon_public_key, public_key=): remove one or "
                                  "the other");
        }
        if (conf.daemons != NGX_CONF_UNSET_PTR) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "paygate: the link to paygated is not authenticated (paygate_curve off): "
                               "development only");
        }
        return NGX_CONF_OK;
    }
    if (conf.daemons == NGX_CONF_UNSET_PTR) return NGX_CONF_OK;   // no link at all
    if (!curve::available()) {
        return conf_error(cf, "paygate: this libzmq has no CURVE support (built without libsodium): the link to "
                              "paygated cannot be authenticated");
    }
    if (conf.curve_secret_key.len == 0) {
        return conf_error(cf, "paygate_daemon needs \"paygate_curve_secret_key\" (this module's CURVE key pair; "
                              "\"paygate_curve off\" for an unauthenticated development link)");
    }
    if (!all_daemon_keys) {
        return conf_error(cf, "paygate_daemon " + keyless + ": no public key of the daemon: set "
                              "\"paygate_daemon_public_key\" or public_key=FILE on the line");
    }
    return NGX_CONF_OK;
}

ngx_int_t open_channel(ngx_cycle_t* cycle, const MainConf& conf) {
    std::vector<DaemonEndpoint> endpoints;
    auto* daemons = static_cast<DaemonConf*>(conf.daemons->elts);
    for (ngx_uint_t i = 0; i < conf.daemons->nelts; ++i) {
        const ngx_str_t& key = daemons[i].public_key.len != 0 ? daemons[i].public_key : conf.daemon_public_key;
        endpoints.push_back({std::string(view(daemons[i].endpoint)), conf.curve ? std::string(view(key)) : ""});
    }
    ClientKeys keys;
    if (conf.curve) keys = {std::string(view(conf.curve_public_key)), std::string(view(conf.curve_secret_key))};

    auto w = std::make_unique<Worker>(endpoints, static_cast<ngx_uint_t>(conf.max_in_flight), keys);
    ngx_explicit_memzero(keys.secret_key.data(), keys.secret_key.size());
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
    // Reads handshake outcomes; cancelable, so it never holds up a graceful shutdown.
    worker->link_timer.handler = on_link_timer;
    worker->link_timer.log = cycle->log;
    worker->link_timer.cancelable = 1;
    ngx_add_timer(&worker->link_timer, kLinkCheckMs);
    return NGX_OK;
}

void close_channel() {
    if (worker == nullptr) return;
    if (worker->link_timer.timer_set) ngx_del_timer(&worker->link_timer);
    for (ngx_connection_t* c : worker->connections) free_connection(c);
    worker->connections.clear();
    // Requests still waiting now never get an answer from this process; forget them.
    for (auto& [id, r] : worker->pending) {
        if (RequestCtx* ctx = ctx_of(r)) ctx->id = 0;
    }
    if (ModuleMetrics* m = metrics()) m->in_flight_add(-static_cast<std::int64_t>(worker->pending.size()));
    for (auto& [id, r] : worker->scrapes) {
        if (RequestCtx* ctx = ctx_of(r); ctx != nullptr && ctx->scrape) ctx->scrape->ids.clear();
    }
    delete worker;
    worker = nullptr;
}

bool send_to_daemon(std::size_t daemon, const ipc::Request& request) {
    if (!worker->channel.send_to(daemon, ipc::encode(request))) return false;
    ngx_post_event(worker->connections[daemon]->read, &ngx_posted_events);
    return true;
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
