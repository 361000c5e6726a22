// JSON error pages: header and body filters turn nginx's own error pages in paygate locations into JSON.
#include "paygate_module.hpp"

#include <exception>
#include <string>
#include <string_view>

namespace paygate::module {
namespace {

ngx_http_output_header_filter_pt next_header_filter;
ngx_http_output_body_filter_pt next_body_filter;

constexpr std::string_view kJson = "application/json";

struct NginxError {
    std::string code;
    std::string message;
};

// What nginx itself answered with (body too large, malformed chunked body, body read timeout,
// limit_req, an internal failure) in the paygate error vocabulary.
NginxError nginx_error(ngx_http_request_t* r, ngx_uint_t status) {
    switch (status) {
        case NGX_HTTP_BAD_REQUEST: return NginxError{"validation_error", "malformed HTTP request"};
        case NGX_HTTP_REQUEST_TIME_OUT: return NginxError{"request_timeout", "request not received in time"};
        case NGX_HTTP_LENGTH_REQUIRED: return NginxError{"length_required", "request body needs a length"};
        case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE: {
            RequestCtx* ctx = ctx_of(r);
            if (ctx != nullptr && ctx->body_over_buffer) {
                return NginxError{"payload_too_large",
                                  "chunk framing makes the request body too large to hold; send it with "
                                  "Content-Length or in larger chunks"};
            }
            auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
            return NginxError{"payload_too_large",
                              "request body exceeds " + std::to_string(clcf->client_max_body_size) + " bytes"};
        }
        case NGX_HTTP_FORBIDDEN: return NginxError{"acces_error", "access denied"};
        case NGX_HTTP_NOT_FOUND: return NginxError{"not_found", "not found"};
        case NGX_HTTP_NOT_ALLOWED: return NginxError{"method_not_allowed", "method not allowed"};
        case 429: return NginxError{"too_many_requests", "too many requests, retry later"};
        case NGX_HTTP_SERVICE_UNAVAILABLE: return NginxError{"service_unavailable", "service unavailable, retry later"};
        case NGX_HTTP_GATEWAY_TIME_OUT: return NginxError{"gateway_timeout", "gateway timeout"};
        default:
            if (status < 500) return NginxError{"request_error", "request refused"};
            return NginxError{"internal_error", "internal error"};
    }
}

ngx_int_t error_page_header_filter(ngx_http_request_t* r) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    // err_status is set only by nginx's special-response path; our own answers never set it.
    if (r != r->main || !lcf->pass || r->err_status < NGX_HTTP_BAD_REQUEST) return next_header_filter(r);
    try {
        RequestCtx* ctx = ensure_ctx(r);
        if (ctx == nullptr) return NGX_ERROR;
        NginxError e = nginx_error(r, r->err_status);
        ctx->error_body = error_body(r, e.code, e.message);   // in the surface's vocabulary
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

}  // namespace

void install_error_page_filters() {
    next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = error_page_header_filter;
    next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = error_page_body_filter;
}

}  // namespace paygate::module
