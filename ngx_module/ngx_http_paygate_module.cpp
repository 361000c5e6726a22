// ngx_http_paygate_module: the module definition: directives, configuration, postconfiguration, worker init/exit.
//
// The nginx side of paygate is a thin adapter: it matches the request against the shared route
// table, reads the body without blocking, and forwards it over the worker's ZeroMQ channel to
// paygated; the request is suspended until the reply, the timeout timer or the client's
// disconnect, whichever comes first. Each concern has its file (see paygate_module.hpp);
// everything without nginx types lives in plain C++ (daemon_channel, token_table, replay_policy).
#include "paygate_module.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <string_view>
#include <vector>

#ifdef PAYGATE_TEST_HOOKS
#include <cstdlib>
#include <cstring>
#endif

namespace paygate::module {
namespace {

// ---- configuration ----

void* create_main_conf(ngx_conf_t* cf) {
    auto* conf = static_cast<MainConf*>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (conf == nullptr) return nullptr;
    conf->daemons = static_cast<ngx_array_t*>(NGX_CONF_UNSET_PTR);
    conf->max_in_flight = NGX_CONF_UNSET;
    conf->curve = NGX_CONF_UNSET;
    conf->token_zone_size = NGX_CONF_UNSET_SIZE;
    conf->metrics_zone_size = NGX_CONF_UNSET_SIZE;
    conf->metrics_used = NGX_CONF_UNSET;
    return conf;
}

char* init_main_conf(ngx_conf_t* cf, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    ngx_conf_init_value(conf->max_in_flight, 1024);
    ngx_conf_init_value(conf->curve, 1);
    if (conf->daemons != NGX_CONF_UNSET_PTR) {
        warn_about_missing_callback_keys(cf, *conf);
        warn_about_missing_jwt_keys(cf, *conf);
        // The token table every worker shares (a zone only costs the pages tokens occupy).
        if (add_token_zone(cf, *conf) != NGX_CONF_OK) return static_cast<char*>(NGX_CONF_ERROR);
    }
    if (add_metrics_zone(cf, *conf) != NGX_CONF_OK) return static_cast<char*>(NGX_CONF_ERROR);
    return check_link_keys(cf, *conf);
}

void* create_loc_conf(ngx_conf_t* cf) {
    auto* conf = static_cast<LocConf*>(ngx_pcalloc(cf->pool, sizeof(LocConf)));
    if (conf == nullptr) return nullptr;
    conf->pass = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    // callback_prefix, partner_prefix, merchant_prefix: unset is {0, nullptr} (ngx_pcalloc)
    return conf;
}

// Each prefix directive names a path (a leading slash, no trailing slash, no query), and no two
// surfaces may share a path, or route_path() would send a request to the wrong one: a prefix may
// not overlap another directive's, another movable surface's own (the table's /callbacks,
// /partners, /v1: route_path() answers those 404 once moved), nor the first segment of a route
// that does not move (/api, /pay, /health, /ping).
char* check_route_prefixes(ngx_conf_t* cf, LocConf& conf) {
    struct Movable {
        const char* directive;
        ngx_str_t* value;
        std::string_view table_prefix;
    };
    const Movable prefixes[] = {{"paygate_callback_prefix", &conf.callback_prefix, kCallbackRoutePrefix},
                                {"paygate_partner_api_prefix", &conf.partner_prefix, kPartnerRoutePrefix},
                                {"paygate_merchant_api_prefix", &conf.merchant_prefix, kMerchantRoutePrefix}};
    auto overlap = [](std::string_view a, std::string_view b) {
        std::string_view shorter = a.size() <= b.size() ? a : b, longer = a.size() <= b.size() ? b : a;
        return longer.substr(0, shorter.size()) == shorter && (longer.size() == shorter.size() || longer[shorter.size()] == '/');
    };
    std::vector<std::string_view> fixed;   // "/api", "/pay", ...: the first segments of routes that stay
    for (const routes::Route& route : routes::table()) {
        std::string_view first = route.pattern.substr(0, route.pattern.find('/', 1));
        bool movable = false;
        for (const Movable& m : prefixes) movable = movable || overlap(first, m.table_prefix);
        if (!movable && std::find(fixed.begin(), fixed.end(), first) == fixed.end()) fixed.push_back(first);
    }
    for (const auto& [directive, value, table_prefix] : prefixes) {
        std::string_view prefix = view(*value);
        if (prefix.size() < 2 || prefix.front() != '/' || prefix.back() == '/' ||
            prefix.find_first_of("?#% \t") != std::string_view::npos) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s \"%V\": expected a path like /callbacks (a leading slash, no trailing slash, no query)",
                               directive, value);
            return static_cast<char*>(NGX_CONF_ERROR);
        }
        for (std::string_view taken : fixed) {
            if (overlap(prefix, taken)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\": %*s is served by paygate already", directive,
                                   value, taken.size(), taken.data());
                return static_cast<char*>(NGX_CONF_ERROR);
            }
        }
    }
    for (const Movable& a : prefixes) {
        for (const Movable& b : prefixes) {
            if (&a == &b) continue;
            if ((&a < &b && overlap(view(*a.value), view(*b.value))) || overlap(view(*a.value), b.table_prefix)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\" and %s (\"%V\", by default %*s): two surfaces under one path",
                                   a.directive, a.value, b.directive, b.value, b.table_prefix.size(),
                                   b.table_prefix.data());
                return static_cast<char*>(NGX_CONF_ERROR);
            }
        }
    }
    return NGX_CONF_OK;
}

char* merge_loc_conf(ngx_conf_t* cf, void* parent, void* child) {
    auto* prev = static_cast<LocConf*>(parent);
    auto* conf = static_cast<LocConf*>(child);
    ngx_conf_merge_value(conf->pass, prev->pass, 0);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 5000);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size, 64 * 1024);
    ngx_conf_merge_str_value(conf->callback_prefix, prev->callback_prefix, "/callbacks");
    ngx_conf_merge_str_value(conf->partner_prefix, prev->partner_prefix, "/partners");
    ngx_conf_merge_str_value(conf->merchant_prefix, prev->merchant_prefix, "/v1");
    if (check_route_prefixes(cf, *conf) != NGX_CONF_OK) return static_cast<char*>(NGX_CONF_ERROR);
    if (conf->pass && conf->metrics) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"paygate_metrics\" needs a location of its own, without \"paygate_pass\" (set here or "
                           "inherited)");
        return static_cast<char*>(NGX_CONF_ERROR);
    }
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
        // A payment body never touches disk: nginx spools a body that outgrows
        // client_body_buffer_size to a temporary file (blocking writes and reads). The buffer
        // holds a body of the limit plus a quarter for a chunked body's framing; nginx sizes a
        // Content-Length body's buffer to the body itself, so only chunked and length-less
        // HTTP/2 bodies take the whole of it. What would still spill is refused (413) by
        // the request body filter in paygate_handler.cpp.
        size_t buffer = conf->max_body_size + conf->max_body_size / 4;
        if (clcf->client_body_buffer_size < buffer) clcf->client_body_buffer_size = buffer;
        if (clcf->client_body_in_file_only != 0) {   // 0: off (on and clean write every body)
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"paygate_pass\" keeps request bodies in memory: \"client_body_in_file_only\" "
                               "must be off");
            return static_cast<char*>(NGX_CONF_ERROR);
        }
    }
    return NGX_CONF_OK;
}

char* set_idempotency_zone(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    return configure_replay_zone(cf, static_cast<ngx_str_t*>(cf->args->elts), cf->args->nelts, conf->replay);
}

char* set_pass(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<LocConf*>(data);
    if (conf->pass != NGX_CONF_UNSET) return const_cast<char*>("is duplicate");
    conf->pass = 1;
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = paygate_handler;
    return NGX_CONF_OK;
}

ngx_int_t preconfiguration(ngx_conf_t* cf) { return add_variables(cf); }

ngx_int_t postconfiguration(ngx_conf_t* cf) {
    if (register_request_id_variable(cf) != NGX_OK) return NGX_ERROR;
    install_error_page_filters();
    install_request_body_filter();
    if (install_metrics_log_handler(cf) != NGX_OK) return NGX_ERROR;
    return NGX_OK;
}

// ---- worker lifecycle ----

#ifdef PAYGATE_TEST_HOOKS
// Test builds only (Debug defines PAYGATE_TEST_HOOKS): with PAYGATE_TEST_LEAK_CANARY=1 in a
// worker's environment (nginx.conf: `env PAYGATE_TEST_LEAK_CANARY;`), every worker leaks 24 bytes
// on purpose, so the e2e harness can prove LeakSanitizer reports leaks of nginx workers.

void* volatile leak_canary_sink = nullptr;

// malloc <- paygate_test_leak_canary <- ... <- init_process: the stack LSan reports.
__attribute__((noinline)) void paygate_test_leak_canary() {
    static constexpr char kPattern[24] = "paygate-leak-canary-24b";   // 23 characters and a NUL
    void* p = std::malloc(sizeof(kPattern));
    if (p == nullptr) return;
    std::memcpy(p, kPattern, sizeof(kPattern));
    leak_canary_sink = p;         // a volatile store: the allocation cannot be optimised away...
    leak_canary_sink = nullptr;   // ...and the only reference is gone: a direct leak
}

// Overwrites the stack below the caller, where stale copies of the canary's pointer (from its
// frame and malloc's) could otherwise make LSan see it as still referenced.
__attribute__((noinline)) void scrub_stack() {
    volatile unsigned char area[16384];
    for (std::size_t i = 0; i < sizeof(area); ++i) area[i] = 0;
}

void arm_test_leak_canary(ngx_log_t* log) {
    const char* flag = std::getenv("PAYGATE_TEST_LEAK_CANARY");
    if (flag == nullptr || std::strcmp(flag, "1") != 0) return;
    paygate_test_leak_canary();
    scrub_stack();
    ngx_log_error(NGX_LOG_NOTICE, log, 0, "paygate: test leak canary armed");
}
#endif

ngx_int_t init_process(ngx_cycle_t* cycle) {
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) return NGX_OK;
#ifdef PAYGATE_TEST_HOOKS
    arm_test_leak_canary(cycle->log);   // nginx set the worker's environment (env directives) already
#endif
    auto* mcf = static_cast<MainConf*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_paygate_module));
    if (mcf != nullptr) start_metrics(*mcf);
    if (mcf == nullptr || mcf->daemons == NGX_CONF_UNSET_PTR || mcf->daemons->nelts == 0) return NGX_OK;
    try {
        if (open_channel(cycle, *mcf) != NGX_OK) return NGX_ERROR;
    } catch (const std::exception& e) {
        // The worker still serves: paygate locations answer 503 until a reload fixes this.
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "paygate: cannot open the daemon channel: %s", e.what());
        return NGX_OK;
    }
    start_token_sync(cycle, *mcf);
    return NGX_OK;
}

void exit_process(ngx_cycle_t*) {
    stop_token_sync();
    close_channel();
    stop_metrics();
}

ngx_conf_num_bounds_t in_flight_bounds = {ngx_conf_check_num_bounds, 1, 1000000};

ngx_command_t commands[] = {
    {ngx_string("paygate_daemon"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12, set_daemon, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_curve"), NGX_HTTP_MAIN_CONF | NGX_CONF_FLAG, ngx_conf_set_flag_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(MainConf, curve), nullptr},
    {ngx_string("paygate_curve_secret_key"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_curve_secret_key,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_daemon_public_key"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_daemon_public_key,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_max_in_flight"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_num_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, max_in_flight), &in_flight_bounds},
    {ngx_string("paygate_token_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_token_zone, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_idempotency_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12, set_idempotency_zone,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_callback_keys"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_callback_keys,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_partner_key"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2, set_partner_key, NGX_HTTP_MAIN_CONF_OFFSET,
     0, nullptr},
    {ngx_string("paygate_app_secret"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE3, set_app_secret, NGX_HTTP_MAIN_CONF_OFFSET,
     0, nullptr},
    {ngx_string("paygate_jwt_key"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE3, set_jwt_key, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_jwt_issuer"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_jwt_issuer, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_jwt_audience"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_jwt_audience, NGX_HTTP_MAIN_CONF_OFFSET,
     0, nullptr},
    {ngx_string("paygate_jwt_leeway"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_jwt_leeway, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_jwt_merchant_claim"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_jwt_merchant_claim,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_metrics_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_metrics_zone, NGX_HTTP_MAIN_CONF_OFFSET,
     0, nullptr},
    {ngx_string("paygate_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_metrics, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("paygate_pass"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_pass, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("paygate_timeout"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, timeout), nullptr},
    {ngx_string("paygate_callback_prefix"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, callback_prefix), nullptr},
    {ngx_string("paygate_partner_api_prefix"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, partner_prefix), nullptr},
    {ngx_string("paygate_merchant_api_prefix"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, merchant_prefix), nullptr},
    {ngx_string("paygate_max_body_size"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, max_body_size), nullptr},
    ngx_null_command};

ngx_http_module_t module_ctx = {
    preconfiguration,    // preconfiguration: the $paygate_* variables
    postconfiguration,   // postconfiguration
    create_main_conf,    // create main configuration
    init_main_conf,      // init main configuration
    nullptr,             // create server configuration
    nullptr,             // merge server configuration
    create_loc_conf,     // create location configuration
    merge_loc_conf,      // merge location configuration
};

}  // namespace
}  // namespace paygate::module

ngx_module_t ngx_http_paygate_module = {
    NGX_MODULE_V1,
    &paygate::module::module_ctx,
    paygate::module::commands,
    NGX_HTTP_MODULE,
    nullptr,                            // init master
    nullptr,                            // init module
    paygate::module::init_process,      // init process
    nullptr,                            // init thread
    nullptr,                            // exit thread
    paygate::module::exit_process,      // exit process
    nullptr,                            // exit master
    NGX_MODULE_V1_PADDING};
