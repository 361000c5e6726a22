// Token list sync: each worker asks the daemons for the live client tokens (auth.tokens) on a timer.
#include "paygate_module.hpp"

#include <chrono>
#include <exception>
#include <string>

namespace paygate::module {
namespace {

// How often a worker refreshes its token list: fast until it has one, then twice a second, so a
// revocation reaches every worker within a second.
constexpr ngx_msec_t kTokenSyncStartingMs = 10;
constexpr ngx_msec_t kTokenSyncMs = 500;
constexpr auto kTokenSyncLost = std::chrono::milliseconds(2000);   // no reply: ask again

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
    if (send_to_daemons(request) < 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0, "paygate: token sync not sent, no daemon connected");
        return;
    }
    worker->token_sync_id = request.id;
    worker->token_sync_sent = now;
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

}  // namespace

void start_token_sync(ngx_log_t* log) {
    // The token list is refreshed by a timer that must not hold up a graceful shutdown.
    worker->token_timer.handler = on_token_timer;
    worker->token_timer.log = log;
    worker->token_timer.cancelable = 1;
    ngx_add_timer(&worker->token_timer, 1);
}

void stop_token_sync() {
    if (worker != nullptr && worker->token_timer.timer_set) ngx_del_timer(&worker->token_timer);
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

}  // namespace paygate::module
