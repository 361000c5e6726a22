// The shared token table: its zone (paygate_token_zone), one worker's sync from the daemons, the
// lookups every worker makes.
//
// The table (token_table.hpp) sits in a shared-memory zone, like limit_req's state: one copy per
// nginx instance, kept across reloads, read by every worker under the zone's mutex. One worker at
// a time holds the sync lease (in the zone) and asks paygated for the changes since the table's
// version (auth.tokens, answered from the daemon's memory), chunk after chunk until it reaches the
// daemon's head, then again every kTokenSyncMs. A chunk is applied in batches of kLockBatch
// entries per hold of the mutex, so no worker waits on the lock for long and the syncing worker's
// event loop is back to its requests within a few milliseconds per chunk. The zone's mutex is the
// slab pool's, which nginx's master releases should a worker die holding it.
#include "paygate_module.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <time.h>

#include "paygate/token_sync.hpp"

namespace paygate::module {
namespace {

using Clock = TokenTable::Clock;

// How often a worker looks at the table (and the lease holder asks for changes): fast until the
// table is loaded, then four times a second, so a revocation is applied within ~0.3 s.
constexpr ngx_msec_t kTokenSyncStartingMs = 10;
constexpr ngx_msec_t kTokenSyncMs = 250;
constexpr auto kTokenSyncLost = std::chrono::milliseconds(1000);   // no reply: ask again
// Entries asked for per request: sized so that handling one chunk takes about kChunkTargetUs on
// this machine (first writes into fresh zone pages cost a page fault each, a sanitizer build is
// slower), between kMinChunk and kMaxChunk. And entries applied per hold of the zone's mutex, so
// a worker looking a token up never waits long.
constexpr std::size_t kMinChunk = 128;
constexpr std::size_t kMaxChunk = 8192;
constexpr std::int64_t kChunkTargetUs = 2000;
constexpr std::size_t kLockBatch = 128;
constexpr size_t kDefaultZoneSize = 64 * 1024 * 1024;
constexpr size_t kMinZoneSize = 128 * 1024;
const char kZoneName[] = "paygate_tokens";

struct ZoneCtx {
    ngx_slab_pool_t* pool;
    TokenTable table;
};

// This process's zone (set in init_process).
ZoneCtx* zone = nullptr;

class ZoneLock {
public:
    explicit ZoneLock(ZoneCtx* z) : pool_(z->pool) { ngx_shmtx_lock(&pool_->mutex); }
    ~ZoneLock() { ngx_shmtx_unlock(&pool_->mutex); }
    ZoneLock(const ZoneLock&) = delete;
    ZoneLock& operator=(const ZoneLock&) = delete;

private:
    ngx_slab_pool_t* pool_;
};

std::int64_t us_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}

// CPU time of this thread: a chunk's own cost, apart from the time the process was not running.
std::int64_t thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* old_data) {
    auto* ctx = static_cast<ZoneCtx*>(shm_zone->data);
    if (old_data != nullptr) {
        // nginx -s reload with the same size: the table and every token in it carry over.
        *ctx = *static_cast<ZoneCtx*>(old_data);
        return NGX_OK;
    }
    ctx->pool = reinterpret_cast<ngx_slab_pool_t*>(shm_zone->shm.addr);
    if (shm_zone->shm.exists) {
        ctx->table = TokenTable::attach(ctx->pool->data);
        return ctx->table.valid() ? NGX_OK : NGX_ERROR;
    }
    // One block as large as the pool gives: the slab allocator's own bookkeeping takes under 1%.
    ctx->pool->log_nomem = 0;
    size_t bytes = shm_zone->shm.size - shm_zone->shm.size / 64 - 4 * ngx_pagesize;
    void* block = nullptr;
    while (block == nullptr && bytes > TokenTable::bytes_for(64)) {
        block = ngx_slab_alloc(ctx->pool, bytes);
        if (block == nullptr) bytes -= bytes / 32;
    }
    if (block == nullptr) return NGX_ERROR;
    ctx->pool->data = block;
    ctx->table = TokenTable::create(block, bytes);
    return NGX_OK;
}

void send_token_sync(ngx_log_t* log, std::uint64_t since) {
    auto now = Clock::now();
    if (worker->token_sync_id != 0 && now - worker->token_sync_sent < kTokenSyncLost) return;
    ipc::Request request;
    request.id = kInternalId | ++worker->last_id;
    request.route = std::string(routes::kAuthTokensRoute);
    request.request_id = "auth-sync-" + std::to_string(ngx_pid);
    request.timeout_ms = static_cast<std::uint32_t>(kTokenSyncLost.count());
    ngx_time_t* tp = ngx_timeofday();
    request.sent_unix_ms = static_cast<std::uint64_t>(tp->sec) * 1000 + tp->msec;
    request.params.emplace_back("since", std::to_string(since));
    request.params.emplace_back("limit", std::to_string(worker->sync_limit));
    if (send_to_daemons(request) < 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0, "paygate: token sync not sent, no daemon connected");
        return;
    }
    worker->token_sync_id = request.id;
    worker->token_sync_sent = now;
}

void on_token_timer(ngx_event_t* ev) {
    if (worker == nullptr || zone == nullptr) return;
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        // A worker on its way out (reload, stop) hands the sync over at once.
        ZoneLock lock(zone);
        zone->table.release_lease(ngx_pid);
        return;
    }
    bool mine = false;
    bool loaded = false;
    std::uint64_t version = 0;
    {
        ZoneLock lock(zone);
        mine = zone->table.take_lease(ngx_pid, Clock::now());
        loaded = zone->table.loaded();
        version = zone->table.version();
    }
    try {
        if (loaded && !worker->awaiting_tokens.empty()) resume_awaiting();
        if (mine) send_token_sync(ev->log, version);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0, "paygate: token sync: %s", e.what());
    }
    ngx_add_timer(ev, loaded ? kTokenSyncMs : kTokenSyncStartingMs);
}

// The chunk brought the table to the daemon's head: one line for the round, if anything changed.
void end_round(std::uint64_t version, std::uint64_t size, ngx_log_t* log) {
    Worker::SyncRound& round = worker->sync_round;
    if (version != round.version_before || !round.was_loaded) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "paygate: token list version %uL, %uL live tokens (was %uL); %uL changes in %uL chunks, "
                      "%L ms, longest chunk %L us (cpu %L us)",
                      version, size, round.size_before, round.changes, round.chunks,
                      static_cast<std::int64_t>(us_between(round.started, Clock::now()) / 1000), round.longest_us,
                      round.longest_cpu_us);
    }
    round = Worker::SyncRound{};
}

}  // namespace

char* set_token_zone(ngx_conf_t* cf, ngx_command_t*, void* data) {
    auto* conf = static_cast<MainConf*>(data);
    if (conf->token_zone_size != NGX_CONF_UNSET_SIZE) return const_cast<char*>("is duplicate");
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    ssize_t size = ngx_parse_size(&value[1]);
    if (size == NGX_ERROR || static_cast<size_t>(size) < kMinZoneSize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_token_zone \"%V\": expected a size of at least 128k",
                           &value[1]);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    conf->token_zone_size = static_cast<size_t>(size);
    return NGX_CONF_OK;
}

char* add_token_zone(ngx_conf_t* cf, MainConf& conf) {
    ngx_conf_init_size_value(conf.token_zone_size, kDefaultZoneSize);
    auto* ctx = static_cast<ZoneCtx*>(ngx_pcalloc(cf->pool, sizeof(ZoneCtx)));
    if (ctx == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    ngx_str_t name = ngx_string(kZoneName);
    conf.token_zone = ngx_shared_memory_add(cf, &name, conf.token_zone_size, &ngx_http_paygate_module);
    if (conf.token_zone == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (conf.token_zone->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is already used", &name);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    conf.token_zone->init = init_zone;
    conf.token_zone->data = ctx;
    return NGX_CONF_OK;
}

void start_token_sync(ngx_cycle_t* cycle, const MainConf& conf) {
    if (conf.token_zone == nullptr) return;
    zone = static_cast<ZoneCtx*>(conf.token_zone->data);
    // The timer must not hold up a graceful shutdown.
    worker->token_timer.handler = on_token_timer;
    worker->token_timer.log = cycle->log;
    worker->token_timer.cancelable = 1;
    ngx_add_timer(&worker->token_timer, 1);
}

void stop_token_sync() {
    if (worker != nullptr && worker->token_timer.timer_set) ngx_del_timer(&worker->token_timer);
    if (zone != nullptr) {
        ZoneLock lock(zone);
        zone->table.release_lease(ngx_pid);
    }
    zone = nullptr;
}

TokenLookup lookup_token(std::string_view token) {
    TokenLookup out;
    if (zone == nullptr) return out;
    unsigned char hash[token_sync::kHashBytes];
    if (!token.empty()) token_hash(token, hash);   // outside the lock
    auto now = Clock::now();
    ZoneLock lock(zone);
    if (!zone->table.loaded()) return out;
    if (!zone->table.usable(now)) {
        out.state = TokenLookup::Stale;
        return out;
    }
    out.state = TokenLookup::Usable;
    if (!token.empty()) out.client = zone->table.client_of_hash(hash);
    return out;
}

void on_token_sync_reply(const ipc::Reply& reply, ngx_log_t* log) {
    if (reply.id != worker->token_sync_id || zone == nullptr) return;   // an answer to a sync given up on
    worker->token_sync_id = 0;
    Clock::time_point sent_at = worker->token_sync_sent;
    if (reply.status != 200) {
        // 503 while a daemon reads the token table at its start: ask again at the next tick.
        ngx_uint_t level = reply.status == 503 ? NGX_LOG_INFO : NGX_LOG_WARN;
        ngx_log_error(level, log, 0, "paygate: token sync answered %d", static_cast<int>(reply.status));
        return;
    }
    auto started = Clock::now();
    std::int64_t cpu_started = thread_cpu_us();
    token_sync::View chunk;
    std::string error;
    if (!token_sync::decode(reply.body, chunk, error)) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "paygate: token sync: %s", error.c_str());
        return;
    }
    Worker::SyncRound& round = worker->sync_round;
    TokenTable::Start start;
    {
        ZoneLock lock(zone);
        if (!round.open) {
            round.open = true;
            round.was_loaded = zone->table.loaded();
            round.version_before = zone->table.version();
            round.size_before = zone->table.size();
            round.started = started;
        }
        start = zone->table.begin_chunk(chunk, ngx_pid, started);
    }
    switch (start) {
        case TokenTable::Start::Ignore:
            round = Worker::SyncRound{};   // not ours any more, or a stale answer
            return;
        case TokenTable::Start::Behind:
            return;   // the next tick asks again
        case TokenTable::Start::BehindReset:
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "paygate: every daemon has been behind the token table's version for 2 s (was the "
                          "database restored?): loading all tokens again");
            round = Worker::SyncRound{};
            send_token_sync(log, 0);
            return;
        case TokenTable::Start::Apply:
            break;
    }
    std::size_t count = chunk.header.count;
    for (std::size_t first = 0; first < count; first += kLockBatch) {
        TokenTable::Applied applied;
        std::uint64_t size = 0;
        std::uint64_t max = 0;
        {
            ZoneLock lock(zone);
            applied = zone->table.apply_entries(chunk, first, first + kLockBatch, ngx_pid, Clock::now());
            size = zone->table.size();
            max = zone->table.max_count();
        }
        if (applied == TokenTable::Applied::LostLease) return;
        if (applied == TokenTable::Applied::Full) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "paygate: paygate_token_zone is full (%uL tokens, it takes %uL): raise its size; "
                          "authenticated requests get 503 once the token table is stale",
                          size, max);
            return;
        }
    }
    TokenTable::Finished finished;
    std::uint64_t version = 0;
    std::uint64_t size = 0;
    {
        ZoneLock lock(zone);
        finished = zone->table.finish_chunk(chunk, ngx_pid, sent_at, Clock::now());
        version = zone->table.version();
        size = zone->table.size();
    }
    std::int64_t took = us_between(started, Clock::now());
    std::int64_t cpu = thread_cpu_us() - cpu_started;
    if (count >= worker->sync_limit / 2 && took > 0) {
        // Halfway to the size that would have taken the target: no chunk size swings.
        std::size_t ideal = static_cast<std::size_t>(static_cast<std::int64_t>(count) * kChunkTargetUs / took);
        worker->sync_limit = std::clamp((worker->sync_limit + ideal) / 2, kMinChunk, kMaxChunk);
    }
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0, "paygate: token chunk of %uz entries to version %uL in %L us", count,
                   version, took);
    if (!finished.ok) return;
    round.changes += count;
    round.chunks += 1;
    if (took > round.longest_us) round.longest_us = took;
    if (cpu > round.longest_cpu_us) round.longest_cpu_us = cpu;
    if (!finished.at_head) {
        send_token_sync(log, version);   // the next chunk at once
        return;
    }
    end_round(version, size, log);
    if (!worker->awaiting_tokens.empty()) resume_awaiting();
}

}  // namespace paygate::module
