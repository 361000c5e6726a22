// Authentication from the shared token table: x_auth_token of Access::Client routes, X-Api-Key of
// Access::PartnerKey routes.
#include "paygate_module.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paygate::module {
namespace {

// The client token from `x_auth_token` (needs underscores_in_headers on) or `X-Auth-Token`.
// Nothing when absent; `ambiguous` when several are sent (which one would be meant?).
std::string_view auth_token(ngx_http_request_t* r, bool& ambiguous) {
    int count = 0;
    std::string_view found = find_header(r, {"x_auth_token", "x-auth-token"}, count);
    ambiguous = count > 1;
    return found;
}

void on_token_wait_timeout(ngx_event_t* ev) {
    auto* r = static_cast<ngx_http_request_t*>(ev->data);
    stop_waiting(ctx_of(r));
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc == NGX_OK) {
        try {
            rc = send_unavailable(r, Unavailable::TokensUnavailable, "no token list from the daemons in time");
        } catch (...) {
            rc = NGX_ERROR;
        }
    }
    complete(r, rc);
}

}  // namespace

std::string_view find_header(ngx_http_request_t* r, std::initializer_list<std::string_view> names, int& count) {
    std::string_view found;
    count = 0;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; ++i) {
        if (i >= part->nelts) {
            if (part->next == nullptr) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        for (std::string_view name : names) {
            if (h[i].key.len == name.size() &&
                ngx_strncasecmp(h[i].key.data, reinterpret_cast<u_char*>(const_cast<char*>(name.data())), name.size()) == 0) {
                if (count++ == 0) found = view(h[i].value);
                break;
            }
        }
    }
    return found;
}

namespace {

// The client a looked-up credential belongs to when it is a client token: a partner's API key is
// no client's, even though its hash is in the same table.
std::optional<std::uint64_t> client_owner(const TokenLookup& found) {
    if (!found.client || token_sync::credential_kind(*found.client) != token_sync::kClientToken) return std::nullopt;
    return token_sync::credential_owner(*found.client);
}

// True when a looked-up credential is a live key of the route's partner (not a client token, not
// another partner's key).
bool is_key_of(const TokenLookup& found, const routes::Route& route) {
    unsigned want = token_sync::key_partner_kind(route.partner);
    return found.client && want != 0 && token_sync::credential_kind(*found.client) == want;
}

}  // namespace

std::optional<std::uint64_t> client_of_token(ngx_http_request_t* r) {
    bool ambiguous = false;
    std::string_view token = auth_token(r, ambiguous);
    if (ambiguous || token.empty() || worker == nullptr) return std::nullopt;
    TokenLookup found = lookup_token(token);
    return found.state == TokenLookup::Usable ? client_owner(found) : std::nullopt;
}

std::optional<std::string> partner_of_key(ngx_http_request_t* r, const routes::Route& route) {
    int count = 0;
    std::string_view key = find_header(r, {"x-api-key"}, count);
    if (count != 1 || key.empty() || worker == nullptr) return std::nullopt;
    TokenLookup found = lookup_token(key);
    if (found.state != TokenLookup::Usable || !is_key_of(found, route)) return std::nullopt;
    return "partner:" + std::string(route.partner);
}

namespace {

// One look at the shared table (one hold of its lock) for a client token or a partner key: false
// with `rc` set when the table cannot answer. An nginx that just started (or whose table was reset)
// has nothing yet: the request waits for the first sync, milliseconds to a second away, rather than
// being refused. A stale table is refused with 503: a revoked credential could pass it.
bool look_up_credential(ngx_http_request_t* r, std::string_view credential, TokenLookup& found, ngx_int_t& rc) {
    found = worker != nullptr ? lookup_token(credential) : TokenLookup{};
    if (found.state == TokenLookup::NotLoaded && worker != nullptr) {
        rc = park_until_tokens(r);
        return false;
    }
    if (found.state != TokenLookup::Usable) {
        rc = ngx_http_discard_request_body(r);
        if (rc == NGX_OK) rc = send_unavailable(r, Unavailable::TokensUnavailable, "token list not loaded or stale");
        return false;
    }
    return true;
}

}  // namespace

bool authenticate(ngx_http_request_t* r, std::string& principal, ngx_int_t& rc) {
    bool ambiguous = false;
    std::string_view token = auth_token(r, ambiguous);
    TokenLookup found;
    if (!look_up_credential(r, ambiguous ? std::string_view() : token, found, rc)) return false;
    std::optional<std::uint64_t> client = client_owner(found);
    if (!client) {
        if (ModuleMetrics* m = metrics()) {
            m->auth_refusal(ambiguous       ? AuthRefusal::TokenAmbiguous
                            : token.empty() ? AuthRefusal::TokenMissing
                                            : AuthRefusal::TokenInvalid);
        }
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "paygate: 403, %s token, request_id=%*s",
                      ambiguous ? "more than one" : token.empty() ? "missing" : "unknown or revoked",
                      request_id(r).size(),
                      request_id(r).data());
        rc = ngx_http_discard_request_body(r);
        if (rc == NGX_OK) {
            rc = send_error(r, NGX_HTTP_FORBIDDEN, "acces_error",
                            ambiguous       ? "send exactly one x_auth_token header"
                            : token.empty() ? "x_auth_token header required"
                                            : "invalid or revoked x_auth_token");
        }
        return false;
    }
    principal = std::to_string(*client);
    return true;
}

bool authenticate_partner_key(ngx_http_request_t* r, const routes::Route& route, std::string& principal, ngx_int_t& rc) {
    int count = 0;
    std::string_view key = find_header(r, {"x-api-key"}, count);
    bool ambiguous = count > 1;
    TokenLookup found;
    if (!look_up_credential(r, ambiguous ? std::string_view() : key, found, rc)) return false;
    if (!is_key_of(found, route)) {
        if (ModuleMetrics* m = metrics()) m->auth_refusal(AuthRefusal::PartnerKey);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "paygate: 401, %s API key, request_id=%*s",
                      ambiguous ? "more than one" : key.empty() ? "missing" : "unknown or revoked",
                      request_id(r).size(), request_id(r).data());
        rc = ngx_http_discard_request_body(r);
        if (rc == NGX_OK) {
            rc = send_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                            ambiguous     ? "send exactly one X-Api-Key header"
                            : key.empty() ? "X-Api-Key header required"
                                          : "invalid or revoked X-Api-Key");
        }
        return false;
    }
    principal = "partner:" + std::string(route.partner);
    return true;
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

}  // namespace paygate::module
