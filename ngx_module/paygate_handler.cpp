// The content handler: route match, body read, replay-zone lookup, forwarding, and the wait for the reply.
#include "paygate_module.hpp"

#include <algorithm>
#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "request_line.hpp"

namespace paygate::module {
namespace {

void destroy_ctx(void* data) {
    auto* ctx = static_cast<RequestCtx*>(data);
    stop_waiting(ctx);
    ctx->~RequestCtx();
}

void on_timeout(ngx_event_t* ev) {
    auto* r = static_cast<ngx_http_request_t*>(ev->data);
    stop_waiting(ctx_of(r));
    if (ModuleMetrics* m = metrics()) m->unavailable(Unavailable::Timeout);
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 504, no reply from the payment core in time, request_id=%*s",
                  request_id(r).size(), request_id(r).data());
    ngx_int_t rc;
    try {
        rc = send_error(r, NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout", "payment core did not answer in time");
    } catch (...) {
        rc = NGX_ERROR;
    }
    complete(r, rc);
}

ngx_http_request_body_filter_pt next_request_body_filter;

// Runs before nginx's save filter, which writes the body to a temporary file when its buffer is
// full and more is to come (or always, with client_body_in_file_only). In a paygate location
// the buffer holds any body within the limit (merge_loc_conf), so that happens only to a chunked
// body whose framing outgrows the buffer's headroom: it is refused before anything is written.
ngx_int_t request_body_filter(ngx_http_request_t* r, ngx_chain_t* in) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    ngx_http_request_body_t* rb = r->request_body;
    if (lcf->pass && rb != nullptr && !r->request_body_no_buffering) {
        bool spill = r->request_body_in_file_only ||
                     (rb->rest > 0 && rb->buf != nullptr && rb->buf->last == rb->buf->end &&
                      (rb->bufs != nullptr || in != nullptr));
        if (spill) {
            if (RequestCtx* ctx = ctx_of(r)) ctx->body_over_buffer = true;
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "paygate: 413, the request body does not fit its memory buffer (chunk framing), "
                          "request_id=%*s",
                          request_id(r).size(), request_id(r).data());
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }
    return next_request_body_filter(r, in);
}

// The body is in memory (request_body_filter keeps it there): its buffers, concatenated.
bool read_body(ngx_http_request_t* r, std::string& body) {
    if (r->request_body == nullptr) return true;
    for (ngx_chain_t* cl = r->request_body->bufs; cl != nullptr; cl = cl->next) {
        ngx_buf_t* b = cl->buf;
        if (b->in_file) return false;   // never: no file I/O on the event loop
        body.append(reinterpret_cast<const char*>(b->pos), static_cast<std::size_t>(b->last - b->pos));
    }
    return true;
}

// The body is in: hand the request to a daemon, or answer at once why not.
ngx_int_t forward(ngx_http_request_t* r, RequestCtx* ctx) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));

    ipc::Request request;
    if (!read_body(r, request.body)) return send_internal_error(r, "request body in a file");
    if (request.body.size() > lcf->max_body_size) {
        return send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
                          "request body exceeds " + std::to_string(lcf->max_body_size) + " bytes");
    }
    if (ctx->match.route->access == routes::Access::Partner) {
        std::string webhook_id;
        ngx_int_t rc;
        if (!check_signature(r, *ctx->match.route, request.body, webhook_id, rc)) {
            if (ModuleMetrics* m = metrics()) m->auth_refusal(AuthRefusal::Signature);
            return rc;
        }
        request.params.emplace_back("operation_id", std::move(ctx->callback_ref));
        request.headers.emplace_back("webhook-id", std::move(webhook_id));
    }
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    if (mcf->replay.shm != nullptr && idempotency::applies_to(ctx->match.route->name)) {
        const std::string* payment_id = nullptr;
        for (const auto& [name, value] : ctx->match.params) {
            if (name == "payment_id") payment_id = &value;
        }
        ctx->idempotency_key = idempotency::key_of(ctx->principal, ctx->match.route->name,
                                                   payment_id ? *payment_id : std::string_view{}, request.body);
        if (ctx->idempotency_key) {
            StoredReply stored;
            switch (replay_lookup(mcf->replay, *ctx->idempotency_key, stored)) {
                case ReplayLookup::Hit: {
                    if (ModuleMetrics* m = metrics()) m->replay_hit(ctx->route_slot);
                    ipc::Reply reply;
                    reply.status = stored.status;
                    reply.headers.emplace_back("content-type", "application/json");
                    reply.headers.emplace_back(std::string(idempotency::kReplayedHeader), "true");
                    reply.body = std::move(stored.body);
                    ctx->replayed = "zone";
                    return send_reply(r, reply);
                }
                case ReplayLookup::Conflict:
                    if (ModuleMetrics* m = metrics()) m->replay_conflict(ctx->route_slot);
                    return send_error(r, 422, idempotency::kKeyReusedCode, idempotency::kKeyReusedMessage);
                case ReplayLookup::Miss:
                    break;
            }
        }
    }
    if (worker == nullptr) return send_unavailable(r, Unavailable::NoChannel, "no channel to the daemons in this worker");
    if (worker->pending.size() >= worker->max_in_flight) {
        return send_unavailable(r, Unavailable::InFlightBound, "in-flight bound reached");
    }

    request.id = ++worker->last_id;
    ipc::parse_method(view(r->method_name), request.method);
    request.route = std::string(ctx->match.route->name);
    request.request_id = std::string(request_id(r));
    request.principal = std::move(ctx->principal);
    request.timeout_ms = static_cast<std::uint32_t>(lcf->timeout);
    ngx_time_t* now = ngx_timeofday();
    request.sent_unix_ms = static_cast<std::uint64_t>(now->sec) * 1000 + now->msec;
    for (auto& param : ctx->match.params) request.params.push_back(std::move(param));
    if (r->headers_in.content_type != nullptr) {
        request.headers.emplace_back("content-type", std::string(view(r->headers_in.content_type->value)));
    }

    int daemon = send_to_daemons(request);
    if (daemon < 0) return send_unavailable(r, Unavailable::NoDaemon, "no daemon connected or send queue full");

    worker->pending.emplace(request.id, r);
    ctx->sent_at = std::chrono::steady_clock::now();
    if (ModuleMetrics* m = metrics()) m->in_flight_add(1);
    ctx->id = request.id;
    ctx->sent_unix_ms = request.sent_unix_ms;
    ctx->daemon = daemon;
    if (worker->channel.size() > 1) ctx->resendable = std::move(request);
    ctx->timer.handler = on_timeout;
    ctx->timer.data = r;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, lcf->timeout);
    r->read_event_handler = on_client_event;
    r->write_event_handler = ngx_http_request_empty_handler;
    return NGX_DONE;
}

void on_body_read(ngx_http_request_t* r) {
    ngx_int_t rc;
    try {
        rc = forward(r, ctx_of(r));
    } catch (const std::exception& e) {
        rc = send_internal_error(r, e.what());
    }
    if (rc != NGX_DONE) ngx_http_finalize_request(r, rc);
}

}  // namespace

// The path matched against the route table: callbacks are served under paygate_callback_prefix,
// partner APIs under paygate_partner_api_prefix, the merchant API under paygate_merchant_api_prefix
// (the table's own /callbacks, /partners or /v1 is then not reachable). `storage` holds a rewritten path; the common case is the request's own URI, not copied.
std::string_view route_path(ngx_http_request_t* r, std::string& storage) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    std::string_view uri = view(r->uri);
    auto under = [&](std::string_view p) { return uri.size() > p.size() && uri.substr(0, p.size()) == p && uri[p.size()] == '/'; };
    const std::pair<std::string_view, std::string_view> moves[] = {
        {view(lcf->callback_prefix), kCallbackRoutePrefix},
        {view(lcf->partner_prefix), kPartnerRoutePrefix},
        {view(lcf->merchant_prefix), kMerchantRoutePrefix},
    };
    for (const auto& [prefix, table_prefix] : moves) {
        if (prefix == table_prefix) continue;
        if (under(prefix)) {
            storage = std::string(table_prefix) + std::string(uri.substr(prefix.size()));
            return storage;
        }
        if (under(table_prefix)) return {};   // matches nothing: 404
    }
    return uri;
}

namespace {

// nginx writes the request line into every error log line about a request (", request: ...")
// and into $request: a credential in the query string (mserver's access_token) is masked there
// before anything about the request is logged. r->args keeps the real value for the check.
void mask_query_credential(ngx_http_request_t* r, std::string_view name) {
    std::optional<std::string> masked = mask_query_parameter(view(r->request_line), name);
    // Without memory the line stays as it was; the request goes on.
    if (masked) copy_to_pool(r->pool, *masked, r->request_line);
}

// The same for a credential in the path (Access::PathToken: the page link's token): $uri, which
// the access log shows, and the request line keep its first 6 characters, enough to follow one
// link through the logs. The token itself went into the route's parameters before this.
void mask_path_credential(ngx_http_request_t* r, const routes::Route& route) {
    std::optional<std::size_t> index = parameter_segment(route.pattern);
    std::optional<std::string> masked = index ? mask_path_segment(view(r->uri), *index, 6) : std::nullopt;
    if (!masked) return;
    ngx_str_t uri, request_line;
    if (!copy_to_pool(r->pool, *masked, uri) ||
        !copy_to_pool(r->pool, replace_request_target(view(r->request_line), *masked), request_line)) {
        return;   // then both stay as they were
    }
    r->uri = uri;
    r->request_line = request_line;
}

// A check answered the request: a 401/403 is an auth refusal of that kind.
void count_refusal(ngx_http_request_t* r, AuthRefusal kind) {
    ngx_uint_t status = r->headers_out.status;
    if (status != NGX_HTTP_UNAUTHORIZED && status != NGX_HTTP_FORBIDDEN) return;
    if (ModuleMetrics* m = metrics()) m->auth_refusal(kind);
}

ngx_int_t handle(ngx_http_request_t* r) {
    std::string rewritten;
    std::string_view path = route_path(r, rewritten);
    routes::Match match = routes::match(view(r->method_name), path);
    if (match.result == routes::MatchResult::Found) {
        if (RequestCtx* early = ensure_ctx(r)) early->route_name = match.route->name;
    }
    if (match.result != routes::MatchResult::Found) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        // send_error answers in the surface's vocabulary (the merchant API's envelope under its
        // prefix, even for paths it does not have); the merchant API's messages are sentences.
        const bool merchant = routes::merchant_surface(path);
        if (match.result == routes::MatchResult::NotFound) {
            return send_error(r, NGX_HTTP_NOT_FOUND, "not_found", merchant ? "No such endpoint" : "no such route");
        }
        return send_error(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                          (merchant ? "Method " : "method ") + std::string(view(r->method_name)) + " is not allowed here",
                          match.allowed);
    }
    // The context first: the request is counted under its route however it is answered.
    RequestCtx* ctx = ensure_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ctx->route_slot = route_slot(match.route);
    ctx->routed = true;
    std::string principal;
    std::string callback_ref;
    if (match.route->access == routes::Access::Partner) {
        ngx_int_t rc;
        if (!check_capability(r, *match.route, callback_ref, rc)) {
            count_refusal(r, AuthRefusal::Capability);
            return rc;
        }
        principal = "partner:" + std::string(match.route->partner);
    }
    if (match.route->access == routes::Access::PathToken) mask_path_credential(r, *match.route);
    if (match.route->access == routes::Access::AppToken) {
        mask_query_credential(r, "access_token");
        ngx_int_t rc;
        if (!check_app_token(r, *match.route, rc)) {
            count_refusal(r, AuthRefusal::AppToken);
            return rc;
        }
        principal = "partner:" + std::string(match.route->partner);
    }
    if (match.route->access == routes::Access::MerchantJwt) {
        ngx_int_t rc;
        if (!check_merchant_jwt(r, principal, rc)) {
            count_refusal(r, AuthRefusal::MerchantJwt);
            return rc;
        }
    }
    if (match.route->access == routes::Access::Client) {
        ngx_int_t rc;   // a request parked until the token table is loaded returns NGX_DONE here
        if (!authenticate(r, principal, rc)) return rc;
    }
    if (match.route->access == routes::Access::PartnerKey) {
        ngx_int_t rc;   // parked like a client request while the table loads
        if (!authenticate_partner_key(r, *match.route, principal, rc)) return rc;
    }
    // $paygate_client: the caller a credential named (callbacks are signed by providers, not callers).
    const routes::Access access = match.route->access;
    std::string client = access == routes::Access::Client || access == routes::Access::PartnerKey ||
                                 access == routes::Access::MerchantJwt
                             ? principal
                             : std::string();

    // An oversized Content-Length never gets here: nginx's client_max_body_size check, clamped to
    // paygate_max_body_size in merge_loc_conf, answers it before the content phase.
    ctx->match = std::move(match);
    ctx->principal = std::move(principal);
    ctx->client = std::move(client);
    ctx->callback_ref = std::move(callback_ref);

    ngx_int_t rc = ngx_http_read_client_request_body(r, on_body_read);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
    return NGX_DONE;
}

// A reply paygated marks as the recorded outcome of an idempotency key fills the replay zone.
void remember_outcome(ngx_http_request_t* r, RequestCtx* ctx, const ipc::Reply& reply) {
    if (!ctx->idempotency_key) return;
    const std::string* outcome = nullptr;
    for (const auto& [name, value] : reply.headers) {
        if (name == idempotency::kOutcomeHeader) outcome = &value;
    }
    if (outcome == nullptr ||
        (*outcome != idempotency::kOutcomeStored && *outcome != idempotency::kOutcomeReplayed)) {
        return;
    }
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    replay_store(mcf->replay, *ctx->idempotency_key, reply.status, reply.body, ctx->sent_unix_ms,
                 reply.record_expires_in_ms, r->connection->log);
}

enum ClientState { kClientClosed, kClientData, kClientQuiet };

// What waits on a parked request's connection. Plain TCP: one byte peeked (data is a pipelined
// request; EOF or an error is the client gone). TLS: the bytes on the socket are TLS records, and
// a close_notify alert would pass for pipelined data, so OpenSSL reads them instead; SSL_peek
// keeps application data buffered for nginx's next SSL_read.
ClientState client_state(ngx_connection_t* c, ngx_err_t& err) {
#if (NGX_SSL)
    if (c->ssl != nullptr) {
        char probe;
        ERR_clear_error();
        ngx_set_socket_errno(0);
        int n = SSL_peek(c->ssl->connection, &probe, 1);
        if (n > 0) return kClientData;
        int ssl_err = SSL_get_error(c->ssl->connection, n);
        if (ssl_err == SSL_ERROR_SYSCALL) err = ngx_socket_errno;
        ERR_clear_error();   // nothing of ours may be left for nginx's own SSL error reports
        if (ssl_err == SSL_ERROR_WANT_READ || ssl_err == SSL_ERROR_WANT_WRITE) return kClientQuiet;
        return kClientClosed;   // close_notify (ZERO_RETURN), EOF or reset (SYSCALL), a TLS error
    }
#endif
    char probe;
    ssize_t n = recv(c->fd, &probe, 1, MSG_PEEK);
    if (n > 0) return kClientData;
    if (n == -1) {
        err = ngx_socket_errno;
        if (err == NGX_EAGAIN) return kClientQuiet;
    }
    return kClientClosed;
}

void client_gone(ngx_http_request_t* r, const char* how, ngx_err_t err) {
    ngx_connection_t* c = r->connection;
    c->read->eof = 1;
    c->error = 1;
    ngx_log_error(NGX_LOG_INFO, c->log, err, "paygate: client %s while waiting for the payment core, request_id=%*s",
                  how, request_id(r).size(), request_id(r).data());
    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}

}  // namespace

routes::Match match_route(ngx_http_request_t* r, std::string& storage) {
    return routes::match(view(r->method_name), route_path(r, storage));
}

ngx_int_t paygate_handler(ngx_http_request_t* r) {
    try {
        return handle(r);
    } catch (const std::exception& e) {
        return send_internal_error(r, e.what());
    }
}

RequestCtx* ctx_of(ngx_http_request_t* r) {
    return static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_paygate_module));
}

RequestCtx* ensure_ctx(ngx_http_request_t* r) {
    if (RequestCtx* ctx = ctx_of(r)) return ctx;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(r->pool, sizeof(RequestCtx));
    if (cln == nullptr) return nullptr;
    auto* ctx = new (cln->data) RequestCtx();
    cln->handler = destroy_ctx;
    ngx_http_set_ctx(r, ctx, ngx_http_paygate_module);
    return ctx;
}

void stop_waiting(RequestCtx* ctx) {
    if (ctx->id != 0 && worker != nullptr && worker->pending.erase(ctx->id) != 0) {
        if (ModuleMetrics* m = metrics()) m->in_flight_add(-1);
    }
    if (ctx->scrape && worker != nullptr) {
        for (std::uint64_t id : ctx->scrape->ids) {
            if (id != 0) worker->scrapes.erase(id);
        }
        ctx->scrape->ids.clear();
    }
    ctx->id = 0;
    if (ctx->awaiting_tokens && worker != nullptr) {
        auto& list = worker->awaiting_tokens;
        list.erase(std::remove(list.begin(), list.end(), ctx->request), list.end());
    }
    ctx->awaiting_tokens = false;
    if (ctx->timer.timer_set) ngx_del_timer(&ctx->timer);
}

void complete(ngx_http_request_t* r, ngx_int_t rc) {
    ngx_connection_t* c = r->connection;
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

void on_client_event(ngx_http_request_t* r) {
    ngx_connection_t* c = r->connection;
#if (NGX_HTTP_V2)
    if (r->stream) {
        // The socket carries every stream of the connection: never peek at it. nginx marks the
        // stream's connection errored before waking us when the client resets the stream
        // (RST_STREAM) or the whole connection goes; any other wakeup is not about the client.
        if (c->error) client_gone(r, "reset the stream (or closed its connection)", 0);
        return;
    }
#endif
    ngx_err_t err = 0;
    if (client_state(c, err) == kClientClosed) {
        client_gone(r, "closed the connection", err);
        return;
    }
    // Pipelined data or a spurious wakeup: keep waiting, and stop a level-triggered busy loop.
    ngx_event_t* ev = c->read;
    if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && ev->active) ngx_del_event(ev, NGX_READ_EVENT, 0);
}

void install_request_body_filter() {
    next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = request_body_filter;
}

void deliver_reply(ngx_http_request_t* r, const ipc::Reply& reply) {
    RequestCtx* ctx = ctx_of(r);
    stop_waiting(ctx);
    for (const auto& [name, value] : reply.headers) {
        if (name == idempotency::kOutcomeHeader && value == idempotency::kOutcomeReplayed) ctx->replayed = "daemon";
    }
    remember_outcome(r, ctx, reply);
    ngx_int_t rc;
    try {
        rc = send_reply(r, reply);
    } catch (const std::exception& e) {
        rc = send_internal_error(r, e.what());
    }
    complete(r, rc);
}

}  // namespace paygate::module
