// ngx_http_paygate_module: the nginx side of paygate. A thin adapter: it matches the request
// against the shared route table, reads the body without blocking, and forwards it over the
// worker's ZeroMQ channel to paygated; the request is suspended until the reply, the timeout
// timer or the client's disconnect, whichever comes first. Everything else lives in plain C++.
#include "ngx_includes.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "daemon_channel.hpp"
#include "replay_cache.hpp"
#include "token_cache.hpp"
#include "paygate/idempotency.hpp"
#include "paygate/ipc.hpp"
#include "paygate/json_error.hpp"
#include "paygate/routes.hpp"

extern ngx_module_t ngx_http_paygate_module;

namespace {

using paygate::module::DaemonChannel;
using paygate::module::ReplayLookup;
using paygate::module::ReplayZone;
using paygate::module::StoredReply;
namespace idempotency = paygate::idempotency;
using paygate::module::TokenCache;
namespace ipc = paygate::ipc;
namespace routes = paygate::routes;

struct MainConf {
    ngx_array_t* daemons;        // ngx_str_t endpoints, from paygate_daemon
    ngx_int_t max_in_flight;     // per worker
    ReplayZone replay;           // paygate_idempotency_zone; replay.shm null when not configured
};

struct LocConf {
    ngx_flag_t pass;             // paygate_pass in this location
    ngx_msec_t timeout;
    size_t max_body_size;
};

// Ids of the module's own requests (token sync) have this bit; client requests never do.
constexpr std::uint64_t kInternalId = std::uint64_t{1} << 63;

// How often a worker refreshes its token list: fast until it has one, then twice a second, so a
// revocation reaches every worker within a second.
constexpr ngx_msec_t kTokenSyncStartingMs = 10;
constexpr ngx_msec_t kTokenSyncMs = 500;
constexpr auto kTokenSyncLost = std::chrono::milliseconds(2000);   // no reply: ask again

// Per worker process: created in init_process (never in the master), gone in exit_process.
struct Worker {
    Worker(const std::vector<std::string>& endpoints, ngx_uint_t bound)
        : channel(endpoints, static_cast<int>(bound)), max_in_flight(bound) {}

    DaemonChannel channel;
    ngx_connection_t* connection = nullptr;   // wraps the channel's fd for nginx's event loop
    std::unordered_map<std::uint64_t, ngx_http_request_t*> pending;   // request id -> waiting request
    std::uint64_t last_id = 0;
    ngx_uint_t max_in_flight;

    TokenCache tokens;
    std::vector<ngx_http_request_t*> awaiting_tokens;   // parked until the first list arrives
    ngx_event_t token_timer{};
    std::uint64_t token_sync_id = 0;          // the auth.tokens request awaited, 0 if none
    TokenCache::Clock::time_point token_sync_sent{};
};

Worker* worker = nullptr;
ngx_int_t request_id_variable = NGX_ERROR;

// Lives in the request pool's cleanup storage, so its destructor runs however the request ends.
struct RequestCtx {
    ngx_http_request_t* request = nullptr;
    bool awaiting_tokens = false;   // parked in worker->awaiting_tokens
    routes::Match match;
    std::string principal;       // the authenticated client id, for Access::Client routes
    std::optional<idempotency::Key> idempotency_key;   // set when the reply may fill the replay zone
    std::uint64_t id = 0;        // nonzero while a reply is awaited
    ngx_event_t timer{};
    std::string error_body;      // JSON replacing nginx's own HTML error page, once set
    bool error_body_sent = false;
};

ngx_http_output_header_filter_pt next_header_filter;
ngx_http_output_body_filter_pt next_body_filter;

constexpr std::string_view kJson = "application/json";

std::string_view view(const ngx_str_t& s) { return {reinterpret_cast<const char*>(s.data), s.len}; }

bool copy_to_pool(ngx_pool_t* pool, std::string_view from, ngx_str_t& to) {
    to.len = from.size();
    to.data = static_cast<u_char*>(ngx_pnalloc(pool, from.size() + 1));
    if (to.data == nullptr) return false;
    ngx_memcpy(to.data, from.data(), from.size());
    to.data[from.size()] = '\0';
    return true;
}

std::string_view request_id(ngx_http_request_t* r) {
    ngx_http_variable_value_t* v = ngx_http_get_indexed_variable(r, request_id_variable);
    if (v == nullptr || v->not_found) return {};
    return {reinterpret_cast<const char*>(v->data), v->len};
}

ngx_int_t add_header(ngx_http_request_t* r, std::string_view name, std::string_view value) {
    ngx_table_elt_t* h = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
    if (h == nullptr) return NGX_ERROR;
    h->hash = 1;
    h->lowcase_key = nullptr;
    if (!copy_to_pool(r->pool, name, h->key) || !copy_to_pool(r->pool, value, h->value)) return NGX_ERROR;
    return NGX_OK;
}

// Sends status, headers and body of `reply`; returns what ngx_http_finalize_request wants.
ngx_int_t send_reply(ngx_http_request_t* r, const ipc::Reply& reply) {
    r->headers_out.status = reply.status;
    if (reply.status == 422) {
        // nginx 1.22 has no reason phrase of its own for 422
        static u_char line[] = "422 Unprocessable Entity";
        r->headers_out.status_line = {sizeof(line) - 1, line};
    }
    r->headers_out.content_length_n = static_cast<off_t>(reply.body.size());
    for (const auto& [name, value] : reply.headers) {
        if (name == idempotency::kOutcomeHeader) continue;   // internal, never sent to clients
        if (name == "content-type") {
            if (!copy_to_pool(r->pool, value, r->headers_out.content_type)) return NGX_ERROR;
            r->headers_out.content_type_len = value.size();
            r->headers_out.content_type_lowcase = nullptr;
        } else if (add_header(r, name, value) != NGX_OK) {
            return NGX_ERROR;
        }
    }
    std::string_view rid = request_id(r);
    if (!rid.empty() && add_header(r, "X-Request-Id", rid) != NGX_OK) return NGX_ERROR;

    if (reply.body.empty()) r->header_only = 1;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;

    ngx_buf_t* b = ngx_create_temp_buf(r->pool, reply.body.size());
    if (b == nullptr) return NGX_ERROR;
    b->last = ngx_cpymem(b->last, reply.body.data(), reply.body.size());
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}

ngx_int_t send_error(ngx_http_request_t* r, ngx_uint_t status, std::string_view code, std::string_view message,
                     std::string_view allow = {}) {
    ipc::Reply reply = ipc::error_reply(0, static_cast<std::uint16_t>(status), code, message);
    if (!allow.empty()) reply.headers.emplace_back("Allow", std::string(allow));
    return send_reply(r, reply);
}

ngx_int_t send_unavailable(ngx_http_request_t* r, std::string_view why) {
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 503, %*s, request_id=%*s",
                  static_cast<int>(why.size()), why.data(), static_cast<int>(request_id(r).size()),
                  request_id(r).data());
    return send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, "service_unavailable", "payment core unavailable, retry later");
}

ngx_int_t send_internal_error(ngx_http_request_t* r, const char* what) {
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "paygate: %s", what);
    try {
        return send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error", "internal error");
    } catch (...) {
        return NGX_ERROR;
    }
}

RequestCtx* ctx_of(ngx_http_request_t* r) {
    return static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_paygate_module));
}

void destroy_ctx(void* data);

// The request's context, created on first use in the request pool's cleanup storage.
RequestCtx* ensure_ctx(ngx_http_request_t* r) {
    if (RequestCtx* ctx = ctx_of(r)) return ctx;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(r->pool, sizeof(RequestCtx));
    if (cln == nullptr) return nullptr;
    auto* ctx = new (cln->data) RequestCtx();
    cln->handler = destroy_ctx;
    ngx_http_set_ctx(r, ctx, ngx_http_paygate_module);
    return ctx;
}

// Ends a request whose reply is no longer awaited and runs what its end made runnable.
void complete(ngx_http_request_t* r, ngx_int_t rc) {
    ngx_connection_t* c = r->connection;
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// Stops waiting for the daemon: the id leaves the pending map and the timer is cancelled.
void stop_waiting(RequestCtx* ctx) {
    if (ctx->id != 0 && worker != nullptr) worker->pending.erase(ctx->id);
    ctx->id = 0;
    if (ctx->awaiting_tokens && worker != nullptr) {
        auto& list = worker->awaiting_tokens;
        list.erase(std::remove(list.begin(), list.end(), ctx->request), list.end());
    }
    ctx->awaiting_tokens = false;
    if (ctx->timer.timer_set) ngx_del_timer(&ctx->timer);
}

void destroy_ctx(void* data) {
    auto* ctx = static_cast<RequestCtx*>(data);
    stop_waiting(ctx);
    ctx->~RequestCtx();
}

void on_timeout(ngx_event_t* ev) {
    auto* r = static_cast<ngx_http_request_t*>(ev->data);
    stop_waiting(ctx_of(r));
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 504, no reply from the payment core in time, request_id=%*s",
                  static_cast<int>(request_id(r).size()), request_id(r).data());
    ngx_int_t rc;
    try {
        rc = send_error(r, NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout", "payment core did not answer in time");
    } catch (...) {
        rc = NGX_ERROR;
    }
    complete(r, rc);
}

// While the reply is awaited: notice a client that went away, so its request ends at once.
void on_client_event(ngx_http_request_t* r) {
    ngx_connection_t* c = r->connection;
    ngx_event_t* ev = c->read;
#if (NGX_HTTP_V2)
    if (r->stream) return;   // HTTP/2 resets end the stream through its own path
#endif
    char probe;
    ssize_t n = recv(c->fd, &probe, 1, MSG_PEEK);
    ngx_err_t err = ngx_socket_errno;
    if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
        // Pipelined data or a spurious wakeup: keep waiting, and stop a level-triggered busy loop.
        if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && ev->active) ngx_del_event(ev, NGX_READ_EVENT, 0);
        return;
    }
    ev->eof = 1;
    c->error = 1;
    ngx_log_error(NGX_LOG_INFO, c->log, n == 0 ? 0 : err,
                  "paygate: client closed the connection while waiting for the payment core, request_id=%*s",
                  static_cast<int>(request_id(r).size()), request_id(r).data());
    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}

// The client token from `x_auth_token` (needs underscores_in_headers on) or `X-Auth-Token`.
// Nothing when absent; `ambiguous` when several are sent (which one would be meant?).
std::string_view auth_token(ngx_http_request_t* r, bool& ambiguous) {
    std::string_view found;
    int count = 0;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; ++i) {
        if (i >= part->nelts) {
            if (part->next == nullptr) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        if (h[i].key.len == sizeof("x_auth_token") - 1 &&
            (ngx_strncasecmp(h[i].key.data, reinterpret_cast<u_char*>(const_cast<char*>("x_auth_token")),
                             h[i].key.len) == 0 ||
             ngx_strncasecmp(h[i].key.data, reinterpret_cast<u_char*>(const_cast<char*>("x-auth-token")),
                             h[i].key.len) == 0)) {
            found = view(h[i].value);
            ++count;
        }
    }
    ambiguous = count > 1;
    return found;
}

// Checks the client token of an Access::Client route. True with `principal` set; false when the
// request was answered instead (403, or 503 without a fresh token list), `rc` being that answer's.
bool authenticate(ngx_http_request_t* r, std::string& principal, ngx_int_t& rc) {
    if (worker == nullptr || !worker->tokens.usable(TokenCache::Clock::now())) {
        // Without a fresh token list a revoked token could pass: refuse rather than guess.
        rc = ngx_http_discard_request_body(r);
        if (rc == NGX_OK) rc = send_unavailable(r, "token list not loaded or stale");
        return false;
    }
    bool ambiguous = false;
    std::string_view token = auth_token(r, ambiguous);
    std::optional<std::string> client;
    if (!ambiguous) client = worker->tokens.client_of(token);
    if (!client) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "paygate: 403, %s token, request_id=%*s",
                      ambiguous ? "more than one" : token.empty() ? "missing" : "unknown or revoked",
                      static_cast<int>(request_id(r).size()),
                      request_id(r).data());
        rc = ngx_http_discard_request_body(r);
        if (rc == NGX_OK) {
            rc = send_error(r, NGX_HTTP_FORBIDDEN, "access_error",
                            ambiguous       ? "send exactly one x_auth_token header"
                            : token.empty() ? "x_auth_token header required"
                                            : "invalid or revoked x_auth_token");
        }
        return false;
    }
    principal = std::move(*client);
    return true;
}

bool read_body(ngx_http_request_t* r, std::string& body) {
    if (r->request_body == nullptr) return true;
    for (ngx_chain_t* cl = r->request_body->bufs; cl != nullptr; cl = cl->next) {
        ngx_buf_t* b = cl->buf;
        if (!b->in_file) {
            body.append(reinterpret_cast<const char*>(b->pos), static_cast<std::size_t>(b->last - b->pos));
            continue;
        }
        // A body larger than client_body_buffer_size was spooled to a temp file nginx just wrote.
        std::size_t size = static_cast<std::size_t>(b->file_last - b->file_pos);
        std::size_t at = body.size();
        body.resize(at + size);
        ssize_t n = ngx_read_file(b->file, reinterpret_cast<u_char*>(&body[at]), size, b->file_pos);
        if (n != static_cast<ssize_t>(size)) return false;
    }
    return true;
}

// The body is in: hand the request to a daemon, or answer at once why not.
ngx_int_t forward(ngx_http_request_t* r, RequestCtx* ctx) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));

    ipc::Request request;
    if (!read_body(r, request.body)) return send_internal_error(r, "cannot read the spooled request body");
    if (request.body.size() > lcf->max_body_size) {
        return send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
                          "request body exceeds " + std::to_string(lcf->max_body_size) + " bytes");
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
            switch (paygate::module::replay_lookup(mcf->replay, *ctx->idempotency_key, stored)) {
                case ReplayLookup::Hit: {
                    ipc::Reply reply;
                    reply.status = stored.status;
                    reply.headers.emplace_back("content-type", "application/json");
                    reply.headers.emplace_back(std::string(idempotency::kReplayedHeader), "true");
                    reply.body = std::move(stored.body);
                    return send_reply(r, reply);
                }
                case ReplayLookup::Conflict:
                    return send_error(r, 422, idempotency::kKeyReusedCode, idempotency::kKeyReusedMessage);
                case ReplayLookup::Miss:
                    break;
            }
        }
    }
    if (worker == nullptr) return send_unavailable(r, "no channel to the daemons in this worker");
    if (worker->pending.size() >= worker->max_in_flight) return send_unavailable(r, "in-flight bound reached");

    request.id = ++worker->last_id;
    ipc::parse_method(view(r->method_name), request.method);
    request.route = std::string(ctx->match.route->name);
    request.request_id = std::string(request_id(r));
    request.principal = std::move(ctx->principal);
    request.timeout_ms = static_cast<std::uint32_t>(lcf->timeout);
    ngx_time_t* now = ngx_timeofday();
    request.sent_unix_ms = static_cast<std::uint64_t>(now->sec) * 1000 + now->msec;
    request.params = std::move(ctx->match.params);
    if (r->headers_in.content_type != nullptr) {
        request.headers.emplace_back("content-type", std::string(view(r->headers_in.content_type->value)));
    }

    bool sent = worker->channel.send(ipc::encode(request));
    // A send may swallow ZMQ_FD's edge: drain once at the end of this event-loop pass (posting
    // an already posted event is a no-op, so a burst of sends costs one drain).
    ngx_post_event(worker->connection->read, &ngx_posted_events);
    if (!sent) return send_unavailable(r, "no daemon connected or send queue full");

    worker->pending.emplace(request.id, r);
    ctx->id = request.id;
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

void on_token_wait_timeout(ngx_event_t* ev) {
    auto* r = static_cast<ngx_http_request_t*>(ev->data);
    stop_waiting(ctx_of(r));
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc == NGX_OK) {
        try {
            rc = send_unavailable(r, "no token list from the daemons in time");
        } catch (...) {
            rc = NGX_ERROR;
        }
    }
    complete(r, rc);
}

ngx_int_t park_until_tokens(ngx_http_request_t* r) {
    RequestCtx* ctx = ensure_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    worker->awaiting_tokens.push_back(r);
    ctx->request = r;
    ctx->awaiting_tokens = true;
    ctx->timer.handler = on_token_wait_timeout;
    ctx->timer.data = r;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, lcf->timeout);
    r->main->count++;   // held until resumed (resume_awaiting) or timed out
    r->read_event_handler = on_client_event;
    r->write_event_handler = ngx_http_request_empty_handler;
    return NGX_DONE;
}

ngx_int_t paygate_handler(ngx_http_request_t* r);

// The first token list arrived: run the parked requests from the start.
void resume_awaiting() {
    std::vector<ngx_http_request_t*> parked;
    parked.swap(worker->awaiting_tokens);
    for (ngx_http_request_t* r : parked) {
        RequestCtx* ctx = ctx_of(r);
        ctx->awaiting_tokens = false;
        if (ctx->timer.timer_set) ngx_del_timer(&ctx->timer);
        complete(r, paygate_handler(r));
    }
}

ngx_int_t handle(ngx_http_request_t* r) {
    routes::Match match = routes::match(view(r->method_name), view(r->uri));
    if (match.result != routes::MatchResult::Found) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        if (match.result == routes::MatchResult::NotFound) {
            return send_error(r, NGX_HTTP_NOT_FOUND, "not_found", "no such route");
        }
        return send_error(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                          "method " + std::string(view(r->method_name)) + " is not allowed here", match.allowed);
    }
    std::string principal;
    if (match.route->access == routes::Access::Client) {
        // A worker that just started (or came with a reload) has no token list yet: wait for the
        // first one, which is milliseconds away, rather than refuse.
        if (worker != nullptr && !worker->tokens.loaded()) return park_until_tokens(r);
        ngx_int_t rc;
        if (!authenticate(r, principal, rc)) return rc;
    }

    // An oversized Content-Length never gets here: nginx's client_max_body_size check, clamped to
    // paygate_max_body_size in merge_loc_conf, answers it before the content phase.
    RequestCtx* ctx = ensure_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ctx->match = std::move(match);
    ctx->principal = std::move(principal);

    ngx_int_t rc = ngx_http_read_client_request_body(r, on_body_read);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
    return NGX_DONE;
}

ngx_int_t paygate_handler(ngx_http_request_t* r) {
    try {
        return handle(r);
    } catch (const std::exception& e) {
        return send_internal_error(r, e.what());
    }
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
    paygate::module::replay_store(mcf->replay, *ctx->idempotency_key, reply.status, reply.body, r->connection->log);
}

// ---- token list sync ----

void send_token_sync(ngx_log_t* log) {
    auto now = TokenCache::Clock::now();
    if (worker->token_sync_id != 0 && now - worker->token_sync_sent < kTokenSyncLost) return;
    ipc::Request request;
    request.id = kInternalId | ++worker->last_id;
    request.route = std::string(routes::kAuthTokensRoute);
    request.request_id = "auth-sync-" + std::to_string(ngx_pid);
    request.timeout_ms = static_cast<std::uint32_t>(kTokenSyncLost.count());
    ngx_time_t* tp = ngx_timeofday();
    request.sent_unix_ms = static_cast<std::uint64_t>(tp->sec) * 1000 + tp->msec;
    request.params.emplace_back("since", std::to_string(worker->tokens.version()));
    bool sent = worker->channel.send(ipc::encode(request));
    ngx_post_event(worker->connection->read, &ngx_posted_events);
    if (!sent) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0, "paygate: token sync not sent, no daemon connected");
        return;
    }
    worker->token_sync_id = request.id;
    worker->token_sync_sent = now;
}

void on_token_sync_reply(const ipc::Reply& reply, ngx_log_t* log) {
    if (reply.id != worker->token_sync_id) return;   // an answer to a sync given up on
    worker->token_sync_id = 0;
    if (reply.status != 200) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "paygate: token sync answered %d", static_cast<int>(reply.status));
        return;
    }
    std::string error;
    std::size_t before = worker->tokens.size();
    std::uint64_t old_version = worker->tokens.version();
    if (!worker->tokens.apply(reply.body, TokenCache::Clock::now(), error)) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "paygate: token sync: %s", error.c_str());
        return;
    }
    if (!worker->awaiting_tokens.empty()) resume_awaiting();
    if (worker->tokens.version() != old_version) {
        ngx_log_error(NGX_LOG_INFO, log, 0, "paygate: token list version %uL, %uz live tokens (was %uz)",
                      worker->tokens.version(), worker->tokens.size(), before);
    }
}

void on_token_timer(ngx_event_t* ev) {
    if (worker == nullptr) return;
    try {
        send_token_sync(ev->log);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0, "paygate: token sync: %s", e.what());
    }
    bool fresh = worker->tokens.usable(TokenCache::Clock::now());
    ngx_add_timer(ev, fresh ? kTokenSyncMs : kTokenSyncStartingMs);
}

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
            ngx_http_request_t* r = it->second;
            RequestCtx* ctx = ctx_of(r);
            stop_waiting(ctx);
            remember_outcome(r, ctx, reply);
            ngx_int_t rc;
            try {
                rc = send_reply(r, reply);
            } catch (const std::exception& e) {
                rc = send_internal_error(r, e.what());
            }
            complete(r, rc);
        });
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "paygate: receiving replies failed: %s", e.what());
    }
}

// ---- nginx's own error pages in paygate locations become JSON ----

// What nginx itself answered with (body too large, malformed chunked body, body read timeout,
// an internal failure) in the paygate error vocabulary.
std::string nginx_error_json(ngx_http_request_t* r, ngx_uint_t status) {
    switch (status) {
        case NGX_HTTP_BAD_REQUEST: return ipc::json_error("validation_error", "malformed HTTP request");
        case NGX_HTTP_REQUEST_TIME_OUT: return ipc::json_error("request_timeout", "request not received in time");
        case NGX_HTTP_LENGTH_REQUIRED: return ipc::json_error("length_required", "request body needs a length");
        case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE: {
            auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
            return ipc::json_error("payload_too_large", "request body exceeds " +
                                                            std::to_string(clcf->client_max_body_size) + " bytes");
        }
        case NGX_HTTP_FORBIDDEN: return ipc::json_error("access_error", "access denied");
        case NGX_HTTP_NOT_FOUND: return ipc::json_error("not_found", "not found");
        case NGX_HTTP_NOT_ALLOWED: return ipc::json_error("method_not_allowed", "method not allowed");
        case 429: return ipc::json_error("too_many_requests", "too many requests, retry later");
        case NGX_HTTP_SERVICE_UNAVAILABLE: return ipc::json_error("service_unavailable", "service unavailable, retry later");
        case NGX_HTTP_GATEWAY_TIME_OUT: return ipc::json_error("gateway_timeout", "gateway timeout");
        default:
            if (status < 500) return ipc::json_error("request_error", "request refused");
            return ipc::json_error("internal_error", "internal error");
    }
}

ngx_int_t error_page_header_filter(ngx_http_request_t* r) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    // err_status is set only by nginx's special-response path; our own answers never set it.
    if (r != r->main || !lcf->pass || r->err_status < NGX_HTTP_BAD_REQUEST) return next_header_filter(r);
    try {
        RequestCtx* ctx = ensure_ctx(r);
        if (ctx == nullptr) return NGX_ERROR;
        ctx->error_body = nginx_error_json(r, r->err_status);
        r->headers_out.status = r->err_status;
        r->headers_out.content_type.len = kJson.size();
        r->headers_out.content_type.data = reinterpret_cast<u_char*>(const_cast<char*>(kJson.data()));
        r->headers_out.content_type_len = kJson.size();
        r->headers_out.content_type_lowcase = nullptr;
        r->headers_out.content_length_n = static_cast<off_t>(ctx->error_body.size());
        if (r->headers_out.content_length) {
            r->headers_out.content_length->hash = 0;
            r->headers_out.content_length = nullptr;
        }
        std::string_view rid = request_id(r);
        if (!rid.empty() && add_header(r, "X-Request-Id", rid) != NGX_OK) return NGX_ERROR;
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "paygate: %s", e.what());
        return NGX_ERROR;
    }
    return next_header_filter(r);
}

ngx_int_t error_page_body_filter(ngx_http_request_t* r, ngx_chain_t* in) {
    RequestCtx* ctx = ctx_of(r);
    if (ctx == nullptr || ctx->error_body.empty()) return next_body_filter(r, in);
    for (ngx_chain_t* cl = in; cl != nullptr; cl = cl->next) cl->buf->pos = cl->buf->last;   // nginx's HTML
    if (ctx->error_body_sent) return next_body_filter(r, nullptr);   // only flushes what is pending
    ngx_buf_t* b = ngx_create_temp_buf(r->pool, ctx->error_body.size());
    if (b == nullptr) return NGX_ERROR;
    b->last = ngx_cpymem(b->last, ctx->error_body.data(), ctx->error_body.size());
    b->last_buf = 1;
    b->last_in_chain = 1;
    ctx->error_body_sent = true;
    ngx_chain_t out{b, nullptr};
    return next_body_filter(r, &out);
}

// ---- configuration ----

void* create_main_conf(ngx_conf_t* cf) {
    auto* conf = static_cast<MainConf*>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (conf == nullptr) return nullptr;
    conf->daemons = static_cast<ngx_array_t*>(NGX_CONF_UNSET_PTR);
    conf->max_in_flight = NGX_CONF_UNSET;
    return conf;
}

char* init_main_conf(ngx_conf_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    ngx_conf_init_value(conf->max_in_flight, 1024);
    return NGX_CONF_OK;
}

void* create_loc_conf(ngx_conf_t* cf) {
    auto* conf = static_cast<LocConf*>(ngx_pcalloc(cf->pool, sizeof(LocConf)));
    if (conf == nullptr) return nullptr;
    conf->pass = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    return conf;
}

char* merge_loc_conf(ngx_conf_t* cf, void* parent, void* child) {
    auto* prev = static_cast<LocConf*>(parent);
    auto* conf = static_cast<LocConf*>(child);
    ngx_conf_merge_value(conf->pass, prev->pass, 0);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 5000);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size, 64 * 1024);
    if (conf->pass) {
        auto* mcf = static_cast<MainConf*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_paygate_module));
        if (mcf->daemons == NGX_CONF_UNSET_PTR || mcf->daemons->nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"paygate_pass\" needs at least one \"paygate_daemon\"");
            return static_cast<char*>(NGX_CONF_ERROR);
        }
        // nginx enforces the body limit itself, early: an oversized Content-Length is refused
        // before the body is read and a chunked body stops being read once past the limit.
        // (http_core's merge has run already: modules merge in module order.)
        auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
        if (clcf->client_max_body_size == 0 || clcf->client_max_body_size > static_cast<off_t>(conf->max_body_size)) {
            clcf->client_max_body_size = static_cast<off_t>(conf->max_body_size);
        }
    }
    return NGX_CONF_OK;
}

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
        conf->daemons = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (conf->daemons == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    }
    auto* slot = static_cast<ngx_str_t*>(ngx_array_push(conf->daemons));
    if (slot == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    *slot = value[1];
    return NGX_CONF_OK;
}

char* set_idempotency_zone(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    return paygate::module::configure_replay_zone(cf, static_cast<ngx_str_t*>(cf->args->elts), cf->args->nelts,
                                                  conf->replay);
}

char* set_pass(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<LocConf*>(data);
    if (conf->pass != NGX_CONF_UNSET) return const_cast<char*>("is duplicate");
    conf->pass = 1;
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = paygate_handler;
    return NGX_CONF_OK;
}

ngx_int_t postconfiguration(ngx_conf_t* cf) {
    ngx_str_t name = ngx_string("request_id");
    request_id_variable = ngx_http_get_variable_index(cf, &name);
    if (request_id_variable == NGX_ERROR) return NGX_ERROR;
    next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = error_page_header_filter;
    next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = error_page_body_filter;
    return NGX_OK;
}

// ---- worker lifecycle ----

ngx_int_t init_process(ngx_cycle_t* cycle) {
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) return NGX_OK;
    auto* mcf = static_cast<MainConf*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_paygate_module));
    if (mcf == nullptr || mcf->daemons == NGX_CONF_UNSET_PTR || mcf->daemons->nelts == 0) return NGX_OK;

    std::vector<std::string> endpoints;
    auto* values = static_cast<ngx_str_t*>(mcf->daemons->elts);
    for (ngx_uint_t i = 0; i < mcf->daemons->nelts; ++i) endpoints.emplace_back(view(values[i]));

    std::unique_ptr<Worker> w;
    try {
        w = std::make_unique<Worker>(endpoints, static_cast<ngx_uint_t>(mcf->max_in_flight));
    } catch (const std::exception& e) {
        // The worker still serves: paygate locations answer 503 until a reload fixes this.
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "paygate: cannot open the daemon channel: %s", e.what());
        return NGX_OK;
    }
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
    // The token list is refreshed by a timer that must not hold up a graceful shutdown.
    w->token_timer.handler = on_token_timer;
    w->token_timer.log = cycle->log;
    w->token_timer.cancelable = 1;
    worker = w.release();
    ngx_add_timer(&worker->token_timer, 1);
    return NGX_OK;
}

void exit_process(ngx_cycle_t*) {
    if (worker == nullptr) return;
    if (worker->token_timer.timer_set) ngx_del_timer(&worker->token_timer);
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

ngx_conf_num_bounds_t in_flight_bounds = {ngx_conf_check_num_bounds, 1, 1000000};

ngx_command_t commands[] = {
    {ngx_string("paygate_daemon"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_daemon, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_max_in_flight"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_num_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, max_in_flight), &in_flight_bounds},
    {ngx_string("paygate_idempotency_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12, set_idempotency_zone,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_pass"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_pass, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_timeout"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, timeout), nullptr},
    {ngx_string("paygate_max_body_size"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, max_body_size), nullptr},
    ngx_null_command};

ngx_http_module_t module_ctx = {
    nullptr,             // preconfiguration
    postconfiguration,   // postconfiguration
    create_main_conf,    // create main configuration
    init_main_conf,      // init main configuration
    nullptr,             // create server configuration
    nullptr,             // merge server configuration
    create_loc_conf,     // create location configuration
    merge_loc_conf,      // merge location configuration
};

}  // namespace

ngx_module_t ngx_http_paygate_module = {
    NGX_MODULE_V1,
    &module_ctx,
    commands,
    NGX_HTTP_MODULE,
    nullptr,        // init master
    nullptr,        // init module
    init_process,   // init process
    nullptr,        // init thread
    nullptr,        // exit thread
    exit_process,   // exit process
    nullptr,        // exit master
    NGX_MODULE_V1_PADDING};
