// Writing the module's answers: a daemon's reply or the module's own JSON error, with X-Request-Id.
#include "paygate_module.hpp"

#include <string>
#include <string_view>

#include "paygate/json_error.hpp"
#include "paygate/merchant_envelope.hpp"

namespace paygate::module {
namespace {

ngx_int_t request_id_variable = NGX_ERROR;

}  // namespace

bool copy_to_pool(ngx_pool_t* pool, std::string_view from, ngx_str_t& to) {
    auto* data = static_cast<u_char*>(ngx_pnalloc(pool, from.size() + 1));
    if (data == nullptr) return false;
    ngx_memcpy(data, from.data(), from.size());
    data[from.size()] = '\0';
    to = {from.size(), data};
    return true;
}

ngx_int_t register_request_id_variable(ngx_conf_t* cf) {
    ngx_str_t name = ngx_string("request_id");
    request_id_variable = ngx_http_get_variable_index(cf, &name);
    return request_id_variable == NGX_ERROR ? NGX_ERROR : NGX_OK;
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

ngx_int_t send_reply(ngx_http_request_t* r, const ipc::Reply& reply) {
    r->headers_out.status = reply.status;
    if (reply.status == 422) {
        // nginx 1.22 has no reason phrase of its own for 422
        static u_char line[] = "422 Unprocessable Entity";
        r->headers_out.status_line = {sizeof(line) - 1, line};
    }
    r->headers_out.content_length_n = static_cast<off_t>(reply.body.size());
    for (const auto& [name, value] : reply.headers) {
        // internal, never sent to clients
        if (name == idempotency::kOutcomeHeader || name == ipc::kNotExecutedHeader) continue;
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

namespace {

bool merchant_request(ngx_http_request_t* r) {
    std::string storage;
    return routes::merchant_surface(route_path(r, storage));
}

}  // namespace

std::string error_body(ngx_http_request_t* r, std::string_view code, std::string_view message) {
    return merchant_request(r) ? merchant_envelope::error_body(code, message) : ipc::json_error(code, message);
}

ngx_int_t send_error(ngx_http_request_t* r, ngx_uint_t status, std::string_view code, std::string_view message,
                     std::string_view allow) {
    const auto code_status = static_cast<std::uint16_t>(status);
    ipc::Reply reply = merchant_request(r) ? merchant_envelope::error_reply(0, code_status, code, message)
                                           : ipc::error_reply(0, code_status, code, message);
    if (!allow.empty()) reply.headers.emplace_back("Allow", std::string(allow));
    return send_reply(r, reply);
}

ngx_int_t send_unavailable(ngx_http_request_t* r, Unavailable cause, std::string_view why) {
    if (ModuleMetrics* m = metrics()) m->unavailable(cause);
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 503, %*s, request_id=%*s",
                  why.size(), why.data(), request_id(r).size(),
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

}  // namespace paygate::module
