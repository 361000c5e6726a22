// $paygate_route, $paygate_client and $paygate_replayed, for log_format and limit_req.
#include "paygate_module.hpp"

#include <string>

namespace paygate::module {
namespace {

ngx_int_t set_value(ngx_http_request_t* r, ngx_http_variable_value_t* v, std::string_view value) {
    if (value.empty()) {
        v->not_found = 1;   // logged as "-", an empty limit_req key (not counted)
        return NGX_OK;
    }
    auto* data = static_cast<u_char*>(ngx_pnalloc(r->pool, value.size()));
    if (data == nullptr) return NGX_ERROR;
    ngx_memcpy(data, value.data(), value.size());
    v->data = data;
    v->len = static_cast<unsigned>(value.size());
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    return NGX_OK;
}

bool in_paygate_location(ngx_http_request_t* r) {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    return lcf != nullptr && lcf->pass == 1;
}

// The route the request matched: from the content handler, or matched here when asked earlier
// (preaccess) or when the content handler did not run.
ngx_int_t route_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) {
    try {
        if (RequestCtx* ctx = ctx_of(r); ctx != nullptr && !ctx->route_name.empty()) {
            return set_value(r, v, ctx->route_name);
        }
        if (!in_paygate_location(r)) return set_value(r, v, {});
        std::string storage;
        routes::Match match = match_route(r, storage);
        return set_value(r, v, match.result == routes::MatchResult::Found ? match.route->name : std::string_view());
    } catch (...) {
        return NGX_ERROR;
    }
}

// The authenticated caller: a client id (a client token), "partner:<name>" (a partner's API
// key) or "merchant:<id>" (a merchant's JWT). Asked for after the content handler, it is the one
// the request was served as; asked for earlier (limit_req keys are evaluated in the preaccess
// phase, before the content handler authenticates), the credential is checked here: a token or
// key is one hash and one hold of the token zone's lock, a JWT one signature check; no I/O.
// Empty when the credential does not pass, the token table is not usable yet, or the route takes
// none of these (callbacks, /health).
ngx_int_t client_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) {
    try {
        if (RequestCtx* ctx = ctx_of(r); ctx != nullptr && !ctx->client.empty()) return set_value(r, v, ctx->client);
        if (!in_paygate_location(r)) return set_value(r, v, {});
        std::string storage;
        routes::Match match = match_route(r, storage);
        if (match.result != routes::MatchResult::Found) return set_value(r, v, {});
        std::optional<std::string> caller;
        switch (match.route->access) {
        case routes::Access::Client:
            if (std::optional<std::uint64_t> client = client_of_token(r)) caller = std::to_string(*client);
            break;
        case routes::Access::PartnerKey:
            caller = partner_of_key(r, *match.route);
            break;
        case routes::Access::MerchantJwt:
            caller = merchant_of_jwt(r);
            break;
        default:
            break;
        }
        return set_value(r, v, caller.value_or(std::string()));
    } catch (...) {
        return NGX_ERROR;
    }
}

// "zone" (answered from nginx's replay zone), "daemon" (paygated's recorded answer), else empty.
ngx_int_t replayed_variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t) {
    RequestCtx* ctx = ctx_of(r);
    return set_value(r, v, ctx != nullptr ? ctx->replayed : std::string_view());
}

struct VariableDef {
    const char* name;
    ngx_http_get_variable_pt get;
};

const VariableDef kVariables[] = {
    {"paygate_route", route_variable},
    {"paygate_client", client_variable},
    {"paygate_replayed", replayed_variable},
};

}  // namespace

ngx_int_t add_variables(ngx_conf_t* cf) {
    for (const VariableDef& def : kVariables) {
        ngx_str_t name = {std::char_traits<char>::length(def.name), reinterpret_cast<u_char*>(const_cast<char*>(def.name))};
        ngx_http_variable_t* var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOHASH);
        if (var == nullptr) return NGX_ERROR;
        var->get_handler = def.get;
    }
    return NGX_OK;
}

}  // namespace paygate::module
