// The module's metrics: the shared counters' zone (paygate_metrics_zone), the log-phase count of
// every request, and GET /metrics (paygate_metrics), which adds each daemon's own metrics.
//
// A scrape asks every daemon at once for system.metrics (answered by its broker thread from
// memory, never queued behind payments) and waits, parked like a forwarded request, for all of
// them or the scrape's deadline; a daemon that did not answer shows paygate_daemon_up 0. The
// event loop never blocks: the counters are atomics, the formatting is plain C++
// (module_metrics.hpp, paygate/metrics_text.hpp).
#include "paygate_module.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <exception>
#include <new>
#include <string>

#include "paygate/metrics_text.hpp"

namespace paygate::module {
namespace {

constexpr size_t kDefaultZoneSize = 1024 * 1024;
constexpr ngx_msec_t kMaxScrapeWaitMs = 3000;
const char kZoneName[] = "paygate_metrics";

struct ZoneCtx {
    ngx_slab_pool_t* pool;
    ModuleMetrics metrics;
};

ModuleMetrics* process_metrics = nullptr;   // set in init_process

bool process_alive(std::int64_t pid) { return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// The zone's own overhead (slab pool, page table) besides the block.
size_t min_zone_size() { return ModuleMetrics::bytes() + 16 * ngx_pagesize; }

ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* old_data) {
    auto* ctx = static_cast<ZoneCtx*>(shm_zone->data);
    ctx->pool = reinterpret_cast<ngx_slab_pool_t*>(shm_zone->shm.addr);
    if (old_data != nullptr || shm_zone->shm.exists) {
        // A reload: the counters go on, unless the block is of another layout (a module upgraded
        // under a running master), which gets a fresh block.
        ctx->metrics = ModuleMetrics::attach(ctx->pool->data);
        if (ctx->metrics.valid()) return NGX_OK;
    }
    void* block = ngx_slab_calloc(ctx->pool, ModuleMetrics::bytes());
    if (block == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0, "paygate_metrics_zone is too small: it needs at least %uz",
                      min_zone_size());
        return NGX_ERROR;
    }
    ctx->pool->data = block;
    ctx->metrics = ModuleMetrics::create(block);
    return NGX_OK;
}

std::vector<std::string_view> route_names() {
    std::vector<std::string_view> names;
    for (const routes::Route& route : routes::table()) names.push_back(route.name);
    return names;
}

// The exposition: the module's counters, each daemon's up/down, and the daemons' own metrics
// labelled by daemon (their endpoint, as paygate_daemon names it).
std::string exposition(ngx_http_request_t* r, const Scrape* scrape) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_paygate_module));
    std::string out;
    if (process_metrics != nullptr) out = process_metrics->format(route_names(), process_alive);
    if (mcf->daemons == NGX_CONF_UNSET_PTR) return out;
    auto* daemons = static_cast<DaemonConf*>(mcf->daemons->elts);
    metrics::TextWriter up;
    up.family("paygate_daemon_up", "gauge", "1 when the daemon answered this scrape's metrics request, else 0.");
    std::vector<std::pair<std::string, std::string>> answers;
    for (ngx_uint_t i = 0; i < mcf->daemons->nelts; ++i) {
        std::string name(view(daemons[i].endpoint));
        bool answered = scrape != nullptr && i < scrape->answered.size() && scrape->answered[i];
        up.sample("paygate_daemon_up", {{"daemon", name}}, answered ? 1 : 0);
        if (answered) answers.emplace_back(name, scrape->answers[i]);
    }
    out += up.text();
    out += metrics::merge_labelled("daemon", answers);
    return out;
}

ngx_int_t send_exposition(ngx_http_request_t* r, const Scrape* scrape) {
    ipc::Reply reply;
    reply.status = 200;
    reply.headers.emplace_back("content-type", std::string(metrics::kContentType));
    reply.body = exposition(r, scrape);
    return send_reply(r, reply);
}

void finish_scrape(ngx_http_request_t* r) {
    RequestCtx* ctx = ctx_of(r);
    stop_waiting(ctx);
    ngx_int_t rc;
    try {
        rc = send_exposition(r, ctx->scrape.get());
    } catch (const std::exception& e) {
        rc = send_internal_error(r, e.what());
    }
    complete(r, rc);
}

void on_scrape_timeout(ngx_event_t* ev) { finish_scrape(static_cast<ngx_http_request_t*>(ev->data)); }

ngx_int_t metrics_handler(ngx_http_request_t* r) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        return send_error(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "metrics are read with GET", "GET, HEAD");
    }
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) return rc;
    RequestCtx* ctx = ensure_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ctx->request = r;
    ctx->scrape = std::make_unique<Scrape>();
    Scrape& scrape = *ctx->scrape;
    std::size_t daemons = worker != nullptr ? worker->channel.size() : 0;
    scrape.ids.assign(daemons, 0);
    scrape.answers.assign(daemons, {});
    scrape.answered.assign(daemons, false);
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    ngx_msec_t wait = std::min<ngx_msec_t>(lcf->timeout, kMaxScrapeWaitMs);
    for (std::size_t i = 0; i < daemons; ++i) {
        ipc::Request request;
        request.id = kInternalId | ++worker->last_id;
        request.route = std::string(metrics::kMetricsRoute);
        request.request_id = std::string(request_id(r));
        request.timeout_ms = static_cast<std::uint32_t>(wait);
        ngx_time_t* now = ngx_timeofday();
        request.sent_unix_ms = static_cast<std::uint64_t>(now->sec) * 1000 + now->msec;
        if (!send_to_daemon(i, request)) continue;   // not connected: paygate_daemon_up 0
        scrape.ids[i] = request.id;
        worker->scrapes.emplace(request.id, r);
        ++scrape.waiting;
    }
    if (scrape.waiting == 0) return send_exposition(r, &scrape);
    ctx->timer.handler = on_scrape_timeout;
    ctx->timer.data = r;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, wait);
    r->main->count++;   // held until every daemon answered or the wait ran out (finish_scrape)
    r->read_event_handler = on_client_event;
    r->write_event_handler = ngx_http_request_empty_handler;
    return NGX_DONE;
}

ngx_int_t guarded_metrics_handler(ngx_http_request_t* r) {
    try {
        return metrics_handler(r);
    } catch (const std::exception& e) {
        return send_internal_error(r, e.what());
    }
}

// A request of a paygate_pass location, by route and status.
void count_request(ngx_http_request_t* r, ngx_uint_t status) {
    std::size_t slot = 0;
    RequestCtx* ctx = ctx_of(r);
    if (ctx != nullptr && ctx->routed) {
        slot = ctx->route_slot;
    } else {
        // Answered before the content handler (nginx's own 413, 400): match it here.
        try {
            std::string storage;
            routes::Match match = routes::match(view(r->method_name), route_path(r, storage));
            slot = route_slot(match.route);
        } catch (const std::exception&) {
            slot = 0;
        }
    }
    process_metrics->request(slot, static_cast<int>(status));
}

bool counted_here(ngx_http_request_t* r) {
    if (process_metrics == nullptr || r != r->main) return false;
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_paygate_module));
    return lcf->pass;
}

ngx_http_output_header_filter_pt next_header_filter;

// Counted as the header goes out, before the client can see the answer: a scrape that follows a
// response always includes it.
ngx_int_t count_response(ngx_http_request_t* r) {
    if (counted_here(r)) count_request(r, r->headers_out.status);
    return next_header_filter(r);
}

// Log phase: a request that ended without a response (the client went away: 499).
ngx_int_t count_unanswered(ngx_http_request_t* r) {
    if (r->header_sent || !counted_here(r)) return NGX_OK;
    ngx_uint_t status = r->err_status ? r->err_status : r->headers_out.status;
    count_request(r, status != 0 ? status : NGX_HTTP_CLIENT_CLOSED_REQUEST);
    return NGX_OK;
}

}  // namespace

char* set_metrics_zone(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    if (conf->metrics_zone_size != NGX_CONF_UNSET_SIZE) return const_cast<char*>("is duplicate");
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    ssize_t size = ngx_parse_size(&value[1]);
    if (size == NGX_ERROR || static_cast<size_t>(size) < min_zone_size()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_metrics_zone \"%V\": expected a size of at least %uzk",
                           &value[1], (min_zone_size() + 1023) / 1024);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    conf->metrics_zone_size = static_cast<size_t>(size);
    return NGX_CONF_OK;
}

char* set_metrics(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler == guarded_metrics_handler) return const_cast<char*>("is duplicate");
    static_cast<LocConf*>(data)->metrics = 1;
    clcf->handler = guarded_metrics_handler;
    auto* mcf = static_cast<MainConf*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_paygate_module));
    mcf->metrics_used = 1;
    return NGX_CONF_OK;
}

char* add_metrics_zone(ngx_conf_t* cf, MainConf& conf) {
    if (conf.daemons == NGX_CONF_UNSET_PTR && conf.metrics_used != 1) return NGX_CONF_OK;
    ngx_conf_init_size_value(conf.metrics_zone_size, std::max(kDefaultZoneSize, min_zone_size()));
    auto* ctx = static_cast<ZoneCtx*>(ngx_pcalloc(cf->pool, sizeof(ZoneCtx)));
    if (ctx == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    new (&ctx->metrics) ModuleMetrics();
    ngx_str_t name = ngx_string(kZoneName);
    conf.metrics_zone = ngx_shared_memory_add(cf, &name, conf.metrics_zone_size, &ngx_http_paygate_module);
    if (conf.metrics_zone == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (conf.metrics_zone->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is already used", &name);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    conf.metrics_zone->init = init_zone;
    conf.metrics_zone->data = ctx;
    return NGX_CONF_OK;
}

ngx_int_t install_metrics_log_handler(ngx_conf_t* cf) {
    auto* cmcf = static_cast<ngx_http_core_main_conf_t*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto* h = static_cast<ngx_http_handler_pt*>(ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers));
    if (h == nullptr) return NGX_ERROR;
    *h = count_unanswered;
    next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = count_response;
    return NGX_OK;
}

void start_metrics(const MainConf& conf) {
    if (conf.metrics_zone == nullptr) return;
    auto* ctx = static_cast<ZoneCtx*>(conf.metrics_zone->data);
    process_metrics = ctx->metrics.valid() ? &ctx->metrics : nullptr;
    if (process_metrics != nullptr && !process_metrics->claim_worker_slot(ngx_pid, process_alive)) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "paygate: no free worker slot in paygate_metrics_zone: this worker's requests in flight are not "
                      "counted");
    }
}

void stop_metrics() {
    if (process_metrics != nullptr) process_metrics->release_worker_slot();
    process_metrics = nullptr;
}

ModuleMetrics* metrics() { return process_metrics; }

std::size_t route_slot(const routes::Route* route) {
    if (route == nullptr) return 0;
    const auto& table = routes::table();
    auto index = static_cast<std::size_t>(route - table.data());
    return index < table.size() && index + 1 < kRouteSlots ? index + 1 : 0;
}

void on_metrics_reply(ngx_http_request_t* r, std::size_t daemon, const ipc::Reply& reply) {
    RequestCtx* ctx = ctx_of(r);
    if (ctx == nullptr || !ctx->scrape) return;
    Scrape& scrape = *ctx->scrape;
    if (daemon >= scrape.ids.size() || scrape.ids[daemon] != reply.id) return;
    worker->scrapes.erase(reply.id);
    scrape.ids[daemon] = 0;
    if (reply.status == 200) {
        scrape.answers[daemon] = reply.body;
        scrape.answered[daemon] = true;
    }
    if (--scrape.waiting == 0) finish_scrape(r);
}

}  // namespace paygate::module
