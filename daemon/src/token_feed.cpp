// The token feed: the in-memory token log and the thread that keeps it current (see token_feed.hpp).
#include "paygated/token_feed.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "paygated/backoff.hpp"
#include "paygated/db.hpp"
#include "paygated/log.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t hash_key(const unsigned char* hash) {
    std::uint64_t k = 0;
    std::memcpy(&k, hash, sizeof k);   // SHA-256 output: already uniform
    return k;
}

std::uint64_t be64(const char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<unsigned char>(p[i]);
    return v;
}

double ms_since(TokenLog::Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(TokenLog::Clock::now() - t).count();
}

}  // namespace

// ---- TokenLog ---------------------------------------------------------------------------------

TokenLog::TokenLog(std::size_t min_revoked_kept, std::size_t min_garbage)
    : min_revoked_kept_(min_revoked_kept), min_garbage_(min_garbage) {}

std::size_t TokenLog::find_slot(const unsigned char* hash) const {
    std::size_t mask = index_.size() - 1;
    std::size_t i = hash_key(hash) & mask;
    for (;;) {
        std::uint32_t at = index_[i];
        if (at == 0 || std::memcmp(log_[at - 1].hash.data(), hash, token_sync::kHashBytes) == 0) return i;
        i = (i + 1) & mask;
    }
}

void TokenLog::rebuild_index() {
    std::size_t size = 1024;
    while (size < 2 * (log_.size() + kApplyBatch)) size *= 2;
    index_.assign(size, 0);
    for (std::size_t pos = 0; pos < log_.size(); ++pos) {
        if (log_[pos].superseded) continue;
        index_[find_slot(log_[pos].hash.data())] = static_cast<std::uint32_t>(pos + 1);
    }
}

void TokenLog::apply(const std::vector<Change>& changes) {
    for (std::size_t begin = 0; begin < changes.size(); begin += kApplyBatch) {
        std::size_t end = std::min(changes.size(), begin + kApplyBatch);
        // Room for this batch at half load, made before the lock (the index is the writer's own).
        if (index_.size() < 2 * (log_.size() + kApplyBatch)) rebuild_index();
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::size_t c = begin; c < end; ++c) {
            const Change& change = changes[c];
            if (change.version <= version_) continue;   // already have it (never expected)
            std::size_t slot = find_slot(change.hash.data());
            if (std::uint32_t at = index_[slot]) {
                Entry& old = log_[at - 1];
                old.superseded = true;
                ++superseded_;
                --(old.client_id != 0 ? live_ : revoked_);
            }
            log_.push_back(Entry{change.version, change.client_id, change.hash, false});
            ++(change.client_id != 0 ? live_ : revoked_);
            index_[slot] = static_cast<std::uint32_t>(log_.size());
            version_ = change.version;
        }
    }
    compact_if_due();
}

void TokenLog::compact_if_due() {
    std::size_t keep_revoked = std::max(live_, min_revoked_kept_);
    bool garbage = superseded_ > live_ / 2 + min_garbage_;
    bool too_many_revoked = revoked_ > keep_revoked;
    if (!garbage && !too_many_revoked) return;
    // The oldest revoked entries go first, down to half the bound, so this does not recur at once.
    std::size_t drop = too_many_revoked ? revoked_ - keep_revoked / 2 : 0;
    std::size_t dropped = 0;
    std::uint64_t floor = floor_;
    std::deque<Entry> next;
    for (const Entry& e : log_) {   // the writer reads its own data without the lock
        if (e.superseded) continue;
        if (e.client_id == 0 && dropped < drop) {
            ++dropped;
            floor = std::max(floor, e.version);
            continue;
        }
        next.push_back(e);
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        log_.swap(next);
        floor_ = floor;
    }
    revoked_ -= dropped;
    superseded_ = 0;
    rebuild_index();
    log::info("token_log_compacted")
        .kv("entries", log_.size())
        .kv("live", live_)
        .kv("revoked", revoked_)
        .kv("floor", floor);
}

void TokenLog::clear() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        log_.clear();
        version_ = 0;
        floor_ = 0;
        loaded_ = false;
    }
    index_.clear();
    live_ = revoked_ = superseded_ = 0;
}

void TokenLog::mark_current(Clock::time_point as_of) {
    std::lock_guard<std::mutex> lock(mutex_);
    current_as_of_ = as_of;
    loaded_ = true;
}

std::uint64_t TokenLog::version() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return version_;
}

bool TokenLog::read(std::uint64_t since, std::size_t limit, Clock::time_point now, std::string& body) const {
    limit = std::clamp<std::size_t>(limit, 1, token_sync::kMaxChunkEntries);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!loaded_) return false;
    token_sync::Header h;
    h.head = version_;
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - current_as_of_).count();
    h.age_ms = static_cast<std::uint32_t>(std::clamp<long long>(age, 0, std::numeric_limits<std::uint32_t>::max()));
    if (since > version_) {
        h.behind = true;
        h.from = h.upto = since;
        token_sync::Writer(body, h).finish();
        return true;
    }
    h.reset = since == 0 || since < floor_;
    h.from = h.reset ? 0 : since;
    body.reserve(body.size() + token_sync::kHeaderBytes + limit * token_sync::kEntryBytes);
    std::size_t header_at = body.size();
    token_sync::Writer w(body, h);
    auto it = std::upper_bound(log_.begin(), log_.end(), h.from,
                               [](std::uint64_t v, const Entry& e) { return v < e.version; });
    std::uint64_t upto = h.from;
    std::size_t looked = 0;
    for (; it != log_.end() && w.count() < limit && looked < 4 * limit; ++it, ++looked) {
        upto = it->version;
        if (it->superseded || (h.reset && it->client_id == 0)) continue;   // nothing to forget after a reset
        w.add(it->hash.data(), it->client_id);
    }
    if (it == log_.end()) upto = version_;
    w.finish();
    for (int i = 0; i < 8; ++i) body[header_at + 16 + static_cast<std::size_t>(i)] = static_cast<char>((upto >> (8 * i)) & 0xff);
    return true;
}

TokenLog::Stats TokenLog::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return Stats{log_.size(), live_, revoked_, superseded_, version_, floor_, loaded_};
}

// ---- TokenFeed --------------------------------------------------------------------------------

TokenFeed::TokenFeed(TokenFeedSettings settings) : settings_(std::move(settings)) {
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

TokenFeed::~TokenFeed() {
    stop();
    if (stop_fd_ >= 0) ::close(stop_fd_);
}

void TokenFeed::start() {
    if (thread_.joinable()) return;
    thread_ = std::thread([this] { run(); });
}

void TokenFeed::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    if (stop_fd_ >= 0) {
        std::uint64_t one = 1;
        (void)!::write(stop_fd_, &one, sizeof one);
    }
    if (thread_.joinable()) thread_.join();
}

bool TokenFeed::stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
}

void TokenFeed::wait(PGconn* conn, std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {conn ? PQsocket(conn) : -1, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(timeout.count()));
    (void)n;   // EINTR or a timeout: the caller looks again either way
}

bool TokenFeed::catch_up(PGconn* conn) {
    auto round_started = Clock::now();
    bool was_loaded = log_.stats().loaded;
    std::size_t changed = 0;
    std::string limit = std::to_string(settings_.page_rows);
    for (;;) {
        // The statement's snapshot is at least as new as this instant: once a page comes back
        // short, everything committed before it is in the log.
        auto started = Clock::now();
        std::uint64_t have = log_.version();
        std::string since = std::to_string(have);
        const char* params[2] = {since.c_str(), limit.c_str()};
        PgResult r(PQexecParams(conn, kTokenChangesSql, 2, nullptr, params, nullptr, nullptr, 1));
        if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
            log::warn("token_feed_failed").kv("error", pg_error_line(r.get()));
            return false;
        }
        int rows = PQntuples(r.get());
        std::uint64_t newest = have;
        if (rows > 0) {
            newest = be64(PQgetvalue(r.get(), 0, 0));
        } else {
            PgResult n(PQexecParams(conn, kTokenNewestSql, 0, nullptr, nullptr, nullptr, nullptr, 1));
            if (PQresultStatus(n.get()) != PGRES_TUPLES_OK || PQntuples(n.get()) != 1) {
                log::warn("token_feed_failed").kv("error", pg_error_line(n.get()));
                return false;
            }
            newest = be64(PQgetvalue(n.get(), 0, 0));
        }
        if (newest < have) {
            // Versions never go down unless the database was restored or recreated: what we hold
            // belongs to another history. Start over; modules then hear "behind" and reset.
            log::warn("token_history_rewound").kv("held", have).kv("database", newest);
            log_.clear();
            continue;
        }
        std::vector<TokenLog::Change> changes;
        changes.reserve(static_cast<std::size_t>(rows));
        for (int i = 0; i < rows; ++i) {
            TokenLog::Change c;
            c.version = be64(PQgetvalue(r.get(), i, 1));
            if (c.version <= (changes.empty() ? have : changes.back().version)) {
                log::error("token_feed_bad_row").kv("version", c.version).kv("what", "rows out of version order");
                return false;
            }
            if (PQgetlength(r.get(), i, 2) != static_cast<int>(token_sync::kHashBytes)) {
                log::error("token_feed_bad_row").kv("version", c.version).kv("what", "token_sha256 is not 32 bytes");
                return false;
            }
            std::memcpy(c.hash.data(), PQgetvalue(r.get(), i, 2), token_sync::kHashBytes);
            std::uint64_t client = be64(PQgetvalue(r.get(), i, 3));
            bool live = PQgetvalue(r.get(), i, 4)[0] != 0;
            std::string_view partner(PQgetvalue(r.get(), i, 5), static_cast<std::size_t>(PQgetlength(r.get(), i, 5)));
            unsigned kind = partner.empty() ? token_sync::kClientToken : token_sync::key_partner_kind(partner);
            if (live && (client == 0 || client > token_sync::kMaxOwnerId)) {
                // The module cannot carry it; refusing the token is the safe side.
                log::error("token_feed_bad_row").kv("version", c.version).kv("what", "client_id out of range");
                live = false;
            }
            if (live && !partner.empty() && kind == 0) {
                log::error("token_feed_bad_row").kv("version", c.version).kv("what", "key of an unknown partner");
                live = false;
            }
            c.client_id = live ? token_sync::credential_value(kind, client) : 0;
            changes.push_back(c);
        }
        log_.apply(changes);
        changed += changes.size();
        if (static_cast<int>(changes.size()) < settings_.page_rows) {
            log_.mark_current(started);
            if (changed > 0 || !was_loaded) {
                TokenLog::Stats s = log_.stats();
                log::info(was_loaded ? "tokens_changed" : "tokens_loaded")
                    .kv("changes", changed)
                    .kv("version", s.version)
                    .kv("live", s.live)
                    .kv("ms", ms_since(round_started));
            }
            return true;
        }
    }
}

void TokenFeed::run() {
    Backoff backoff(std::chrono::milliseconds(100), settings_.db_retry_max);
    PgConn conn;
    while (!stopping()) {
        if (!conn) {
            auto began = Clock::now();
            std::string error;
            conn = pg_connect(settings_.database, "paygated", error);
            if (conn) {
                // Listening first: a change committed after this point is notified, one committed
                // before is found by the catch-up that follows.
                PgResult r(PQexec(conn.get(), "LISTEN paygate_tokens"));
                if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
                    error = pg_error_line(r.get());
                    conn.reset();
                }
            }
            if (!conn) {
                auto delay = backoff.failure(Clock::now());
                log::warn("db_unavailable").kv("worker", "tokens").kv("backoff_ms", delay.count()).kv("error", error);
                wait(nullptr, delay);
                continue;
            }
            log::info("db_connected")
                .kv("worker", "tokens")
                .kv("db", describe_conninfo(settings_.database))
                .kv("server_version", PQserverVersion(conn.get()))
                .kv("ms", ms_since(began));
        }
        if (!catch_up(conn.get())) {
            // A broken connection or a failing statement (no schema yet): start over, slowly.
            conn.reset();
            auto delay = backoff.failure(Clock::now());
            wait(nullptr, delay);
            continue;
        }
        backoff.success();
        wait(conn.get(), settings_.check_interval);
        if (!PQconsumeInput(conn.get())) {
            log::warn("db_connection_lost").kv("worker", "tokens").kv("reason", "connection broken")
                .kv("error", pg_error_line(conn.get()));
            conn.reset();
            continue;
        }
        // A notification only says "something changed": the next catch-up reads what.
        while (PGnotify* n = PQnotifies(conn.get())) PQfreemem(n);
    }
}

}  // namespace paygate::daemon
