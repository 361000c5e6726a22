// Merchant authentication of Access::MerchantJwt routes (ZooTicket, seed 002): the Bearer JWT is
// verified here, in the worker, from keys read at configuration time: no daemon round trip, no
// blocking. The verification itself is plain C++ (ipc/jwt.cpp); this file is the nginx adapter:
// directives paygate_jwt_key / _issuer / _audience / _leeway / _merchant_claim, and the check.
#include "paygate_module.hpp"

#include <new>
#include <string>

#include "paygate/jwt.hpp"
#include "paygate/merchant_envelope.hpp"

namespace paygate::module {

struct MerchantJwt {
    jwt::Policy policy;
    bool leeway_set = false;
};

namespace {

constexpr std::int64_t kMaxLeewayS = 600;

void destroy_jwt(void* data) { static_cast<MerchantJwt*>(data)->~MerchantJwt(); }

// Lives in the configuration pool: gone (destructor run) with the cycle that read it.
MerchantJwt* jwt_for(ngx_conf_t* cf, MainConf* conf) {
    if (conf->jwt != nullptr) return conf->jwt;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, sizeof(MerchantJwt));
    if (cln == nullptr) return nullptr;
    conf->jwt = new (cln->data) MerchantJwt();
    cln->handler = destroy_jwt;
    return conf->jwt;
}

char* jwt_conf_error(ngx_conf_t* cf, const std::string& message) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", message.c_str());
    return static_cast<char*>(NGX_CONF_ERROR);
}

// Stores the directive's one argument into `field` (refusing a second time and an empty value).
// A field still at its default has not been set yet.
char* set_policy_string(ngx_conf_t* cf, void* data, std::string jwt::Policy::*field, const char* name) {
    MerchantJwt* state = jwt_for(cf, static_cast<MainConf*>(data));
    if (state == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (state->policy.*field != jwt::Policy{}.*field) return const_cast<char*>("is duplicate");
    std::string_view value = view(static_cast<ngx_str_t*>(cf->args->elts)[1]);
    if (value.empty() || value.size() > 256) return jwt_conf_error(cf, std::string(name) + ": expected 1-256 bytes");
    state->policy.*field = std::string(value);
    return NGX_CONF_OK;
}

// The Bearer token of the Authorization header; empty when absent or another scheme.
std::string_view bearer_token(ngx_http_request_t* r) {
    if (r->headers_in.authorization == nullptr) return {};
    std::string_view value = view(r->headers_in.authorization->value);
    constexpr std::string_view kScheme = "bearer";
    if (value.size() <= kScheme.size() || value[kScheme.size()] != ' ') return {};
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        char c = value[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != kScheme[i]) return {};
    }
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    return value;
}

}  // namespace

char* set_jwt_key(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* value = static_cast<ngx_str_t*>(cf->args->elts);
    MerchantJwt* state = jwt_for(cf, static_cast<MainConf*>(data));
    if (state == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    std::string kid(view(value[1]));
    if (state->policy.find(kid) != nullptr) return jwt_conf_error(cf, "paygate_jwt_key: key id \"" + kid + "\" given twice");
    std::string path(view(value[3]));
    if (ngx_conf_full_name(cf->cycle, &value[3], 1) == NGX_OK) path = std::string(view(value[3]));
    std::string error;
    std::optional<jwt::Key> key = jwt::load_key(kid, view(value[2]), path, error);
    if (!key) return jwt_conf_error(cf, "paygate_jwt_key " + kid + ": " + error);
    state->policy.keys.push_back(std::move(*key));
    return NGX_CONF_OK;
}

char* set_jwt_issuer(ngx_conf_t* cf, ngx_command_t*, void* data) {
    return set_policy_string(cf, data, &jwt::Policy::issuer, "paygate_jwt_issuer");
}

char* set_jwt_audience(ngx_conf_t* cf, ngx_command_t*, void* data) {
    return set_policy_string(cf, data, &jwt::Policy::audience, "paygate_jwt_audience");
}

char* set_jwt_merchant_claim(ngx_conf_t* cf, ngx_command_t*, void* data) {
    char* rc = set_policy_string(cf, data, &jwt::Policy::merchant_claim, "paygate_jwt_merchant_claim");
    if (rc == NGX_CONF_OK && !jwt::valid_kid(static_cast<MainConf*>(data)->jwt->policy.merchant_claim)) {
        return jwt_conf_error(cf, "paygate_jwt_merchant_claim: expected 1-64 of [A-Za-z0-9._-]");
    }
    return rc;
}

char* set_jwt_leeway(ngx_conf_t* cf, ngx_command_t*, void* data) {
    MerchantJwt* state = jwt_for(cf, static_cast<MainConf*>(data));
    if (state == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (state->leeway_set) return const_cast<char*>("is duplicate");
    ngx_str_t* value = &static_cast<ngx_str_t*>(cf->args->elts)[1];
    ngx_int_t seconds = ngx_parse_time(value, 1);
    if (seconds == NGX_ERROR || seconds > kMaxLeewayS) {
        return jwt_conf_error(cf, "paygate_jwt_leeway: expected a time from 0s to 10m");
    }
    state->policy.leeway_s = seconds;
    state->leeway_set = true;
    return NGX_CONF_OK;
}

void warn_about_missing_jwt_keys(ngx_conf_t* cf, const MainConf& conf) {
    if (conf.jwt != nullptr && !conf.jwt->policy.keys.empty()) return;
    for (const routes::Route& route : routes::table()) {
        if (route.access == routes::Access::MerchantJwt) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "paygate: no \"paygate_jwt_key\": every merchant API request (/v1/payments) is refused (401)");
            return;
        }
    }
}

std::optional<std::string> merchant_of_jwt(ngx_http_request_t* r) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    std::string_view token = bearer_token(r);
    if (token.empty() || mcf->jwt == nullptr) return std::nullopt;
    jwt::Result result = jwt::verify(mcf->jwt->policy, token, static_cast<std::int64_t>(ngx_time()));
    if (result.verdict != jwt::Verdict::Ok) return std::nullopt;
    return "merchant:" + result.merchant;
}

bool check_merchant_jwt(ngx_http_request_t* r, std::string& principal, ngx_int_t& rc) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    std::string_view token = bearer_token(r);
    jwt::Result result;
    if (!token.empty() && mcf->jwt != nullptr) {
        result = jwt::verify(mcf->jwt->policy, token, static_cast<std::int64_t>(ngx_time()));
    }
    if (result.verdict == jwt::Verdict::Ok) {
        principal = "merchant:" + result.merchant;
        return true;
    }
    const bool missing = token.empty();
    // The token itself is never logged: its kid and the verdict say enough.
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "paygate: 401, merchant token %s, kid=%*s, request_id=%*s",
                  missing ? "missing" : std::string(jwt::verdict_name(result.verdict)).c_str(),
                  result.kid.size(), result.kid.data(), request_id(r).size(),
                  request_id(r).data());
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) return false;
    ipc::Reply reply;
    reply.status = NGX_HTTP_UNAUTHORIZED;
    reply.headers.emplace_back("content-type", "application/json");
    reply.headers.emplace_back("WWW-Authenticate", merchant_envelope::www_authenticate(missing));
    reply.body = merchant_envelope::unauthorized_body(missing, result.verdict);
    rc = send_reply(r, reply);
    return false;
}

}  // namespace paygate::module
