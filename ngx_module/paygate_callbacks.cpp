// The callback proxy's edge checks: the capability URL's tag (before the body is read) and the
// partner's Standard Webhooks signature over the raw body (after). No database, no daemon round
// trip; any failure is a 401 and nothing is forwarded. Keys: paygate_callback_keys (capability
// keyring) and paygate_partner_key NAME SPEC (see docs/callbacks.md).
#include "paygate_module.hpp"

#include <cstdio>
#include <new>
#include <string>

#include "paygate/capability.hpp"
#include "paygate/mserver_token.hpp"
#include "paygate/webhook.hpp"

namespace paygate::module {

struct CallbackKeys {
    std::optional<capability::Keyring> capability;
    std::vector<std::pair<std::string, std::vector<webhook::Key>>> partners;

    // paygate_app_secret: partner -> (app_id, app_secret) for Access::AppToken routes.
    std::vector<std::pair<std::string, std::pair<std::string, std::string>>> apps;

    const std::pair<std::string, std::string>* app_of(std::string_view partner) const {
        for (const auto& [name, app] : apps) {
            if (name == partner) return &app;
        }
        return nullptr;
    }

    const std::vector<webhook::Key>* keys_of(std::string_view partner) const {
        for (const auto& [name, keys] : partners) {
            if (name == partner) return &keys;
        }
        return nullptr;
    }
};

namespace {

void destroy_keys(void* data) { static_cast<CallbackKeys*>(data)->~CallbackKeys(); }

// The keys live in the configuration pool: gone (destructor run) with the cycle that read them.
CallbackKeys* keys_for(ngx_conf_t* cf, MainConf* conf) {
    if (conf->callbacks != nullptr) return conf->callbacks;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, sizeof(CallbackKeys));
    if (cln == nullptr) return nullptr;
    conf->callbacks = new (cln->data) CallbackKeys();
    cln->handler = destroy_keys;
    return conf->callbacks;
}

char* conf_error(ngx_conf_t* cf, const std::string& message) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", message.c_str());
    return static_cast<char*>(NGX_CONF_ERROR);
}

ngx_int_t refuse(ngx_http_request_t* r, std::string_view partner, const char* why) {
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 401, %*s callback refused: %s, request_id=%*s",
                  partner.size(), partner.data(), why, request_id(r).size(),
                  request_id(r).data());
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) return rc;
    return send_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized", std::string("callback refused: ") + why);
}

}  // namespace

char* set_callback_keys(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    CallbackKeys* keys = keys_for(cf, conf);
    if (keys == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (keys->capability) return const_cast<char*>("is duplicate");
    std::string path(view(static_cast<ngx_str_t*>(cf->args->elts)[1]));
    std::string error;
    keys->capability = capability::Keyring::load_file(path, error);
    if (!keys->capability) return conf_error(cf, "paygate_callback_keys: " + error);
    return NGX_CONF_OK;
}

char* set_partner_key(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    auto* value = static_cast<ngx_str_t*>(cf->args->elts);
    std::string_view partner = view(value[1]);
    bool known = false;
    for (const routes::Route& route : routes::table()) known = known || route.partner == partner;
    if (!known) return conf_error(cf, "paygate_partner_key: no callback route for partner \"" + std::string(partner) + "\"");
    CallbackKeys* keys = keys_for(cf, conf);
    if (keys == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    std::string error;
    std::optional<webhook::Key> key = webhook::parse_key_spec(view(value[2]), error);
    if (!key) return conf_error(cf, "paygate_partner_key " + std::string(partner) + ": " + error);
    for (auto& [name, list] : keys->partners) {
        if (name == partner) {
            list.push_back(std::move(*key));
            return NGX_CONF_OK;
        }
    }
    keys->partners.emplace_back(std::string(partner), std::vector<webhook::Key>{});
    keys->partners.back().second.push_back(std::move(*key));
    return NGX_CONF_OK;
}

// paygate_app_secret mserver APP_ID FILE: the secret is read from FILE (its first line), never
// written in nginx.conf itself.
char* set_app_secret(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    auto* value = static_cast<ngx_str_t*>(cf->args->elts);
    std::string_view partner = view(value[1]);
    bool known = false;
    for (const routes::Route& route : routes::table()) {
        known = known || (route.access == routes::Access::AppToken && route.partner == partner);
    }
    if (!known) return conf_error(cf, "paygate_app_secret: no notification route for partner "" + std::string(partner) + """);
    std::string app_id(view(value[2]));
    if (app_id.empty() || app_id.size() > 128) return conf_error(cf, "paygate_app_secret: app id must be 1-128 bytes");
    std::string path(view(value[3]));
    std::string secret;
    {
        FILE* f = std::fopen(path.c_str(), "rb");
        if (f == nullptr) return conf_error(cf, "paygate_app_secret: cannot open "" + path + """);
        char buf[1024];
        std::size_t n = std::fread(buf, 1, sizeof buf, f);
        std::fclose(f);
        secret.assign(buf, n);
    }
    secret = secret.substr(0, secret.find('\n'));
    if (!secret.empty() && secret.back() == '\r') secret.pop_back();
    if (secret.empty()) return conf_error(cf, "paygate_app_secret: \"" + path + "\" has an empty first line");
    CallbackKeys* keys = keys_for(cf, conf);
    if (keys == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (keys->app_of(partner) != nullptr) return const_cast<char*>("is duplicate");
    keys->apps.emplace_back(std::string(partner), std::make_pair(std::move(app_id), std::move(secret)));
    return NGX_CONF_OK;
}

// app_id and access_token travel as headers (App-Id, Access-Token; X-App-Id, X-Access-Token) or
// as query parameters (?app_id=&access_token=): the seed does not say where. Exactly one source
// per value; two different ones are refused as ambiguous.
bool check_app_token(ngx_http_request_t* r, const routes::Route& route, ngx_int_t& rc) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    const std::pair<std::string, std::string>* app = mcf->callbacks ? mcf->callbacks->app_of(route.partner) : nullptr;
    if (app == nullptr) {
        rc = refuse(r, route.partner, "no app secret configured");
        return false;
    }
    int id_headers = 0, token_headers = 0;
    std::string_view id = find_header(r, {"app-id", "x-app-id", "app_id"}, id_headers);
    std::string_view token = find_header(r, {"access-token", "x-access-token", "access_token"}, token_headers);
    ngx_str_t qid = ngx_null_string, qtoken = ngx_null_string;
    bool has_qid = ngx_http_arg(r, reinterpret_cast<u_char*>(const_cast<char*>("app_id")), 6, &qid) == NGX_OK;
    bool has_qtoken = ngx_http_arg(r, reinterpret_cast<u_char*>(const_cast<char*>("access_token")), 12, &qtoken) == NGX_OK;
    if (id_headers > 1 || token_headers > 1 || (id_headers == 1 && has_qid) || (token_headers == 1 && has_qtoken)) {
        rc = refuse(r, route.partner, "app_id or access_token given more than once");
        return false;
    }
    if (id_headers == 0 && has_qid) id = view(qid);
    if (token_headers == 0 && has_qtoken) token = view(qtoken);
    if (id.empty() || token.empty()) {
        rc = refuse(r, route.partner, "missing app_id or access_token");
        return false;
    }
    if (!mserver_token::check(app->first, app->second, id, token)) {
        rc = refuse(r, route.partner, "bad app_id or access_token");
        return false;
    }
    return true;
}

void warn_about_missing_callback_keys(ngx_conf_t* cf, const MainConf& conf) {
    if (conf.callbacks == nullptr || !conf.callbacks->capability) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "paygate: no \"paygate_callback_keys\": every partner callback is refused (401)");
    }
    for (const routes::Route& route : routes::table()) {
        if (route.access == routes::Access::AppToken && (conf.callbacks == nullptr || conf.callbacks->app_of(route.partner) == nullptr)) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "paygate: no \"paygate_app_secret %*s\": its notifications are refused (401)",
                               route.partner.size(), route.partner.data());
        }
        if (route.access != routes::Access::Partner) continue;
        if (conf.callbacks == nullptr || conf.callbacks->keys_of(route.partner) == nullptr) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "paygate: no \"paygate_partner_key %*s\": its callbacks are refused (401)",
                               route.partner.size(), route.partner.data());
        }
    }
}

bool check_capability(ngx_http_request_t* r, const routes::Route& route, std::string& ref, ngx_int_t& rc) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    if (mcf->callbacks == nullptr || !mcf->callbacks->capability || mcf->callbacks->keys_of(route.partner) == nullptr) {
        rc = refuse(r, route.partner, "no keys configured");
        return false;
    }
    capability::Parsed parsed;
    if (!capability::parse_query(view(r->args), parsed)) {
        rc = refuse(r, route.partner, "not a capability URL (ref, kid, tag)");
        return false;
    }
    if (!capability::verify(*mcf->callbacks->capability, parsed.kid, parsed.ref, parsed.tag)) {
        rc = refuse(r, route.partner, "bad capability tag");
        return false;
    }
    ref = std::move(parsed.ref);
    return true;
}

bool check_signature(ngx_http_request_t* r, const routes::Route& route, std::string_view body, std::string& webhook_id,
                     ngx_int_t& rc) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    const std::vector<webhook::Key>* keys = mcf->callbacks ? mcf->callbacks->keys_of(route.partner) : nullptr;
    int ids = 0, timestamps = 0, signatures = 0;
    std::string_view id = find_header(r, {"webhook-id"}, ids);
    std::string_view ts = find_header(r, {"webhook-timestamp"}, timestamps);
    std::string_view sig = find_header(r, {"webhook-signature"}, signatures);
    webhook::Verdict verdict = webhook::Verdict::MissingHeader;
    if (keys == nullptr) {
        verdict = webhook::Verdict::NoKeys;
    } else if (ids == 1 && timestamps == 1 && signatures == 1 && id.size() <= 128) {
        verdict = webhook::verify(*keys, id, ts, sig, body, static_cast<std::int64_t>(ngx_time()));
    }
    if (verdict != webhook::Verdict::Ok) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0, "paygate: 401, %*s callback refused: signature %s, request_id=%*s",
                      route.partner.size(), route.partner.data(), webhook::verdict_name(verdict),
                      request_id(r).size(), request_id(r).data());
        rc = send_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                        std::string("callback refused: signature ") + webhook::verdict_name(verdict));
        return false;
    }
    webhook_id = std::string(id);
    return true;
}

}  // namespace paygate::module
