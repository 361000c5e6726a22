// The nginx module's internal header: configuration, worker and request state, cross-file functions.
//
// Everything here is in paygate::module and hidden (the target's default visibility); file-local
// helpers stay in each file's anonymous namespace. The sections below follow the files.
#pragma once

#include "ngx_includes.hpp"

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon_channel.hpp"
#include "module_metrics.hpp"
#include "replay_cache.hpp"
#include "token_table.hpp"
#include "paygate/idempotency.hpp"
#include "paygate/ipc.hpp"
#include "paygate/routes.hpp"

extern ngx_module_t ngx_http_paygate_module;

namespace paygate::module {

struct CallbackKeys;   // paygate_callbacks.cpp
struct MerchantJwt;    // paygate_jwt.cpp

// One paygate_daemon line.
struct DaemonConf {
    ngx_str_t endpoint;
    ngx_str_t public_key;        // Z85 from its public_key=FILE, else empty (paygate_daemon_public_key)
};

struct MainConf {
    ngx_array_t* daemons;        // DaemonConf, from paygate_daemon
    ngx_flag_t curve;            // paygate_curve: on (default) or off (plain link, dev only)
    ngx_str_t curve_public_key;  // this module's key pair (Z85), from paygate_curve_secret_key
    ngx_str_t curve_secret_key;  //   (zeroed when the configuration's pool goes)
    ngx_str_t daemon_public_key; // paygate_daemon_public_key: the daemons' key unless a line has its own
    ngx_int_t max_in_flight;     // per worker
    size_t token_zone_size;      // paygate_token_zone
    ngx_shm_zone_t* token_zone;  // the shared token table; null without paygate_daemon
    ReplayZone replay;           // paygate_idempotency_zone; replay.shm null when not configured
    CallbackKeys* callbacks;     // paygate_callback_keys / paygate_partner_key; null when none
    MerchantJwt* jwt;            // paygate_jwt_key and friends; null when none
    size_t metrics_zone_size;    // paygate_metrics_zone
    ngx_flag_t metrics_used;     // some location has paygate_metrics
    ngx_shm_zone_t* metrics_zone;   // the shared counters; null without paygate_daemon or paygate_metrics
};

struct LocConf {
    ngx_flag_t pass;             // paygate_pass in this location
    ngx_msec_t timeout;
    size_t max_body_size;
    ngx_str_t callback_prefix;   // paygate_callback_prefix: where partner callbacks are served
    ngx_flag_t metrics;          // paygate_metrics in this location (not inherited)
    ngx_str_t partner_prefix;    // paygate_partner_api_prefix: where partners' own APIs are served
    ngx_str_t merchant_prefix;   // paygate_merchant_api_prefix: where the ZooTicket merchant API is served
};

// The route table's callback paths start with this; paygate_callback_prefix moves them.
inline constexpr std::string_view kCallbackRoutePrefix = "/callbacks";
// The route table's partner API paths (WhiteBird's orders) start with this; paygate_partner_api_prefix moves them.
inline constexpr std::string_view kPartnerRoutePrefix = "/partners";
// The route table's merchant API paths (ZooTicket, seed 002) start with this; paygate_merchant_api_prefix moves them.
inline constexpr std::string_view kMerchantRoutePrefix = "/v1";

// Ids of the module's own requests (token sync) have this bit; client requests never do.
constexpr std::uint64_t kInternalId = std::uint64_t{1} << 63;

// Per worker process: created in init_process (never in the master), gone in exit_process.
struct Worker {
    Worker(const std::vector<DaemonEndpoint>& endpoints, ngx_uint_t bound, const ClientKeys& keys)
        : channel(endpoints, static_cast<int>(bound), keys), max_in_flight(bound) {}

    DaemonChannel channel;
    std::vector<ngx_connection_t*> connections;   // wrap the channel's fds (one per daemon) for nginx's event loop
    std::unordered_map<std::uint64_t, ngx_http_request_t*> pending;   // request id -> waiting request
    std::uint64_t last_id = 0;
    ngx_uint_t max_in_flight;

    std::vector<ngx_http_request_t*> awaiting_tokens;   // parked until the token table is loaded
    ngx_event_t token_timer{};
    std::uint64_t token_sync_id = 0;          // the auth.tokens request awaited, 0 if none
    TokenTable::Clock::time_point token_sync_sent{};
    std::size_t sync_limit = 1024;            // entries asked for per chunk (adapted, paygate_token_sync.cpp)
    // The sync round in progress (from the first chunk to the daemon's head), for its log line.
    struct SyncRound {
        bool open = false;
        bool was_loaded = false;
        std::uint64_t version_before = 0;
        std::uint64_t size_before = 0;
        std::uint64_t changes = 0;
        std::uint64_t chunks = 0;
        std::int64_t longest_us = 0;       // the longest chunk: decode, apply, finish, on this event loop
        std::int64_t longest_cpu_us = 0;   // the same in CPU time (the wall time counts preemption too)
        TokenTable::Clock::time_point started{};
    } sync_round;

    std::unordered_map<std::uint64_t, ngx_http_request_t*> scrapes;   // system.metrics id -> waiting /metrics request

    ngx_event_t link_timer{};                 // reads the channel's handshake events
    std::unordered_map<std::string, bool> link_failing;   // endpoint -> a failure was logged
};

// This process's worker state; null in the master, without paygate_daemon, or when the channel
// could not be opened (paygate locations then answer 503).
extern Worker* worker;

// A /metrics request waiting for the daemons' own metrics (paygate_metrics.cpp).
struct Scrape {
    std::vector<std::uint64_t> ids;        // the system.metrics request sent to daemon i (0: not sent)
    std::vector<std::string> answers;      // daemon i's exposition, once it answered 200
    std::vector<bool> answered;
    std::size_t waiting = 0;
};

// Lives in the request pool's cleanup storage, so its destructor runs however the request ends.
struct RequestCtx {
    ngx_http_request_t* request = nullptr;
    bool awaiting_tokens = false;   // parked in worker->awaiting_tokens
    routes::Match match;
    std::string principal;       // the authenticated client id, for Access::Client routes
    std::string callback_ref;    // Access::Partner: the operation reference of the capability URL
    std::optional<idempotency::Key> idempotency_key;   // set when the reply may fill the replay zone
    std::uint64_t id = 0;        // nonzero while a reply is awaited
    int daemon = -1;             // the daemon it was sent to
    // Kept while a second daemon could take the request should the first refuse it unexecuted
    // (draining, overloaded); sent at most once more.
    std::optional<ipc::Request> resendable;
    std::uint64_t sent_unix_ms = 0;   // when it was sent: a replay-zone entry's expiry counts from it
    ngx_event_t timer{};
    std::string error_body;      // JSON replacing nginx's own HTML error page, once set
    bool error_body_sent = false;
    bool body_over_buffer = false;   // the body would have spilled to disk: refused with 413
    // For the access log ($paygate_route, $paygate_client, $paygate_replayed; paygate_variables.cpp).
    std::string_view route_name;     // the matched route (the route table's static names)
    std::string client;              // the authenticated client id of an Access::Client route
    std::string_view replayed;       // "zone" or "daemon" when the answer is a recorded one
    std::size_t route_slot = 0;      // paygate_requests_total's route (module_metrics.hpp), once matched
    bool routed = false;
    std::chrono::steady_clock::time_point sent_at{};   // the last send to a daemon: the round trip's start
    std::unique_ptr<Scrape> scrape;  // a /metrics request
};

inline std::string_view view(const ngx_str_t& s) { return {reinterpret_cast<const char*>(s.data), s.len}; }

// ---- paygate_reply.cpp: the answers the module writes itself ----

// Resolves $request_id once, at configuration time.
ngx_int_t register_request_id_variable(ngx_conf_t* cf);
std::string_view request_id(ngx_http_request_t* r);
// `from` copied into `pool` (NUL-terminated); `to` is set only on success.
bool copy_to_pool(ngx_pool_t* pool, std::string_view from, ngx_str_t& to);
ngx_int_t add_header(ngx_http_request_t* r, std::string_view name, std::string_view value);
// Sends status, headers and body of `reply`; returns what ngx_http_finalize_request wants.
ngx_int_t send_reply(ngx_http_request_t* r, const ipc::Reply& reply);
// The module's own error, in the vocabulary of the request's surface: the merchant API (under
// paygate_merchant_api_prefix) answers in its envelope, every other surface {code, message}.
ngx_int_t send_error(ngx_http_request_t* r, ngx_uint_t status, std::string_view code, std::string_view message,
                     std::string_view allow = {});
std::string error_body(ngx_http_request_t* r, std::string_view code, std::string_view message);
ngx_int_t send_unavailable(ngx_http_request_t* r, Unavailable cause, std::string_view why);
// Never throws: logs `what` and answers 500 (or NGX_ERROR).
ngx_int_t send_internal_error(ngx_http_request_t* r, const char* what);

// ---- paygate_handler.cpp: the content handler and the request's wait for its reply ----

// The request matched against the route table (paygate_callback_prefix applied); `storage` holds
// a rewritten path.
routes::Match match_route(ngx_http_request_t* r, std::string& storage);

// The content handler of paygate_pass locations.
ngx_int_t paygate_handler(ngx_http_request_t* r);
RequestCtx* ctx_of(ngx_http_request_t* r);
// The request's context, created on first use in the request pool's cleanup storage.
RequestCtx* ensure_ctx(ngx_http_request_t* r);
// Stops waiting (for a reply or for the token list): pending entry, parked entry and timer go.
void stop_waiting(RequestCtx* ctx);
// Ends a request whose reply is no longer awaited and runs what its end made runnable.
void complete(ngx_http_request_t* r, ngx_int_t rc);
// The read handler of a suspended request: notices a client that went away.
void on_client_event(ngx_http_request_t* r);
// The daemon answered request `r`: send the reply to the client and end the request.
void deliver_reply(ngx_http_request_t* r, const ipc::Reply& reply);
// Refuses (413) a paygate body that would be written to a temporary file (postconfiguration).
void install_request_body_filter();

// ---- paygate_auth.cpp: client tokens of Access::Client routes ----

// The client id of the request's token, if the token table is usable and the token live; no
// answer is sent and nothing is parked (for $paygate_client before the content phase).
std::optional<std::uint64_t> client_of_token(ngx_http_request_t* r);
// Likewise for Access::PartnerKey: "partner:<name>" when X-Api-Key is a live key of the route's partner.
std::optional<std::string> partner_of_key(ngx_http_request_t* r, const routes::Route& route);

// True with `principal` set; false when the request was answered instead (403, or 503 without a
// fresh token table) or parked until the table is loaded, `rc` being what the handler returns.
bool authenticate(ngx_http_request_t* r, std::string& principal, ngx_int_t& rc);
// Access::PartnerKey: the X-Api-Key header names a live key of the route's partner. True with
// `principal` "partner:<name>"; false when answered instead (401; 503 without a fresh table) or parked.
bool authenticate_partner_key(ngx_http_request_t* r, const routes::Route& route, std::string& principal, ngx_int_t& rc);
// Suspends a request until the token table is loaded (or paygate_timeout: 503).
ngx_int_t park_until_tokens(ngx_http_request_t* r);
// The token table is loaded: runs the parked requests from the start.
void resume_awaiting();

// The first request header named (case-insensitively) one of `names`, or "" if none; `count`
// says how many there are (a credential sent twice is ambiguous). No allocation.
std::string_view find_header(ngx_http_request_t* r, std::initializer_list<std::string_view> names, int& count);

// ---- paygate_callbacks.cpp: the callback proxy's edge checks of Access::Partner routes ----

char* set_callback_keys(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);   // paygate_callback_keys FILE
char* set_partner_key(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);     // paygate_partner_key NAME SPEC
char* set_app_secret(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);      // paygate_app_secret NAME APP_ID FILE
// Access::AppToken: app_id and access_token (headers or query) match the configured app.
bool check_app_token(ngx_http_request_t* r, const routes::Route& route, ngx_int_t& rc);
// [warn] at start-up for each partner whose callbacks will all be refused (no keys).
void warn_about_missing_callback_keys(ngx_conf_t* cf, const MainConf& conf);
// Before the body: the URL's capability tag. True with `ref` set; false when answered (401).
bool check_capability(ngx_http_request_t* r, const routes::Route& route, std::string& ref, ngx_int_t& rc);
// After the body: the partner's signature over it. True with `webhook_id` set; false when answered.
bool check_signature(ngx_http_request_t* r, const routes::Route& route, std::string_view body, std::string& webhook_id,
                     ngx_int_t& rc);

// ---- paygate_jwt.cpp: merchant Bearer JWTs (Access::MerchantJwt) ----

// paygate_jwt_key KID ES256|HS256 FILE, paygate_jwt_issuer, paygate_jwt_audience, paygate_jwt_leeway,
// paygate_jwt_merchant_claim (http). Key files are read here, in the master, at configuration time.
char* set_jwt_key(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_jwt_issuer(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_jwt_audience(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_jwt_leeway(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_jwt_merchant_claim(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
void warn_about_missing_jwt_keys(ngx_conf_t* cf, const MainConf& conf);
// True with `principal` = "merchant:<id>"; false when answered (401 in the merchant envelope).
bool check_merchant_jwt(ngx_http_request_t* r, std::string& principal, ngx_int_t& rc);
// "merchant:<id>" when the Bearer token verifies; nothing is logged or sent ($paygate_client).
std::optional<std::string> merchant_of_jwt(ngx_http_request_t* r);

// ---- paygate_token_sync.cpp: the shared token table and its sync from the daemons ----

// paygate_token_zone SIZE (http).
char* set_token_zone(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
// Adds the token zone (init_main_conf, with paygate_daemon): the directive's size or the default.
char* add_token_zone(ngx_conf_t* cf, MainConf& conf);
void start_token_sync(ngx_cycle_t* cycle, const MainConf& conf);
void stop_token_sync();
// An answer to the module's own auth.tokens request (its id has kInternalId).
void on_token_sync_reply(const ipc::Reply& reply, ngx_log_t* log);
// One read of the table (the zone's lock held briefly): whether it is loaded, whether it is fresh,
// and when it is both, the client id of `token` if that is live ("" looks nothing up).
struct TokenLookup {
    enum State { NotLoaded, Stale, Usable } state = NotLoaded;
    std::optional<std::uint64_t> client;
};
TokenLookup lookup_token(std::string_view token);

// ---- paygate_channel.cpp: the ZeroMQ channel in nginx's event loop ----

// Creates `worker` with its channel registered in the event loop. NGX_ERROR when nginx could not
// take the descriptor; throws when the channel cannot be opened (worker stays null).
ngx_int_t open_channel(ngx_cycle_t* cycle, const MainConf& conf);
// Unregisters and closes the channel; requests still waiting are forgotten. Deletes `worker`.
void close_channel();
// paygate_daemon ENDPOINT [public_key=FILE], paygate_curve_secret_key FILE, paygate_daemon_public_key FILE:
// key files are read here, in the master, at configuration time (docs/security.md).
char* set_daemon(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_curve_secret_key(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* set_daemon_public_key(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
// After the http block: CURVE unless `paygate_curve off`, with every key it needs, or an emerg.
char* check_link_keys(ngx_conf_t* cf, MainConf& conf);
// Queues `request` for the next daemon in turn (never daemon `avoid`) without blocking; returns
// the daemon's index, or -1 when none is connected or every queue is full. Schedules a drain of
// that daemon's socket (a send can swallow ZMQ_FD's edge).
int send_to_daemons(const ipc::Request& request, int avoid = -1);

// ---- paygate_variables.cpp: $paygate_route, $paygate_client, $paygate_replayed ----

ngx_int_t add_variables(ngx_conf_t* cf);
// ---- paygate_metrics.cpp: the shared counters (paygate_metrics_zone) and GET /metrics ----

char* set_metrics_zone(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);   // paygate_metrics_zone SIZE (http)
char* set_metrics(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);        // paygate_metrics (location)
// Adds the zone (init_main_conf) when paygate_daemon or paygate_metrics is configured.
char* add_metrics_zone(ngx_conf_t* cf, MainConf& conf);
// Counts every request of paygate locations by route and status as its header goes out (a header
// filter), or at the log phase when it got none (postconfiguration).
ngx_int_t install_metrics_log_handler(ngx_conf_t* cf);
void start_metrics(const MainConf& conf);   // init_process
void stop_metrics();                        // exit_process
// This process's counters, or null when there is no zone.
ModuleMetrics* metrics();
std::size_t route_slot(const routes::Route* route);
// A daemon answered a scrape's system.metrics request (its id is in worker->scrapes).
void on_metrics_reply(ngx_http_request_t* r, std::size_t daemon, const ipc::Reply& reply);
// Queues `request` for daemon i only; schedules the drain of its socket like send_to_daemons.
bool send_to_daemon(std::size_t daemon, const ipc::Request& request);
// The path matched against the route table (paygate_callback_prefix rewritten); `storage` holds a rewrite.
std::string_view route_path(ngx_http_request_t* r, std::string& storage);

// ---- paygate_error_pages.cpp: nginx's own error pages in paygate locations become JSON ----

void install_error_page_filters();

}  // namespace paygate::module
