// The token feed: paygated's in-memory copy of api_tokens, kept current by LISTEN/NOTIFY, from
// which auth.tokens is answered on the broker thread without a worker and without the database.
//
// TokenLog is the state (plain C++, unit-tested): every token row's latest change, in version
// order (api_tokens.version, one sequence stamped on each insert and update, see
// sql/0002_payments.sql). "What changed since V" is then the entries above V: a live token is
// an upsert, a revoked one a removal. A row changed again leaves its older entry superseded
// (skipped, dropped at the next compaction). Revoked entries are kept for the modules that may
// still hold the token; past a bound the oldest are dropped and `floor` rises: a module asking
// from below the floor gets everything again (a reset chunk).
//
// One writer (the feed thread) and any number of readers (the broker thread): readers take the
// mutex only to copy at most one chunk; the writer holds it for at most kApplyBatch changes at a
// time and builds compacted copies outside it, so a reader never waits long.
//
// TokenFeed is the thread: its own PostgreSQL connection, LISTEN paygate_tokens (fired by a
// trigger on every api_tokens change, sql/0006_token_feed.sql), then the changes above its
// version in pages; again on each notification and at least every check interval (the safety
// net: a lost connection, a missed notification, a database restored to an older state).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "paygate/token_sync.hpp"

namespace paygate::daemon {

class TokenLog {
public:
    using Clock = std::chrono::steady_clock;

    struct Change {
        std::uint64_t version = 0;
        token_sync::Hash hash{};
        std::uint64_t client_id = 0;   // 0: revoked
    };

    struct Stats {
        std::size_t entries = 0;      // held in the log
        std::size_t live = 0;
        std::size_t revoked = 0;      // revoked and not superseded
        std::size_t superseded = 0;
        std::uint64_t version = 0;
        std::uint64_t floor = 0;
        bool loaded = false;
    };

    // Changes applied per hold of the mutex.
    static constexpr std::size_t kApplyBatch = 1024;

    // Revoked entries kept: at least `min_revoked_kept`, or as many as there are live tokens.
    // Superseded entries are dropped once there are `min_garbage` more than half the live ones.
    explicit TokenLog(std::size_t min_revoked_kept = 100000, std::size_t min_garbage = 65536);

    // --- the writer (feed thread) ---

    // Appends changes in increasing version order, each above version(). Compacts when due.
    void apply(const std::vector<Change>& changes);
    // Forgets everything (the database went back in time): unavailable until mark_current.
    void clear();
    // The database said at `as_of` that there is nothing above version(): chunks may be served.
    void mark_current(Clock::time_point as_of);
    std::uint64_t version() const;

    // --- any thread ---

    // Appends to `body` the chunk of changes after `since` (token_sync.hpp): at most `limit`
    // entries (1..kMaxChunkEntries), looking at no more than 4 x limit log entries. False (and
    // nothing appended) until the log was first marked current.
    bool read(std::uint64_t since, std::size_t limit, Clock::time_point now, std::string& body) const;

    Stats stats() const;

private:
    struct Entry {
        std::uint64_t version;
        std::uint64_t client_id;   // 0: revoked
        token_sync::Hash hash;
        bool superseded;
    };

    // Writer only (no lock needed to read what only it writes).
    std::size_t find_slot(const unsigned char* hash) const;
    void rebuild_index();
    void compact_if_due();

    const std::size_t min_revoked_kept_;
    const std::size_t min_garbage_;

    mutable std::mutex mutex_;
    // Guarded by mutex_ (written by the writer only).
    std::deque<Entry> log_;
    std::uint64_t version_ = 0;
    std::uint64_t floor_ = 0;
    bool loaded_ = false;
    Clock::time_point current_as_of_{};

    // The writer's own: hash -> position in log_ + 1 (0: free), open addressing, power-of-two size.
    std::vector<std::uint32_t> index_;
    std::size_t live_ = 0;
    std::size_t revoked_ = 0;
    std::size_t superseded_ = 0;
};

struct TokenFeedSettings {
    std::string database;                            // libpq conninfo
    std::chrono::milliseconds check_interval{250};   // the safety net's period
    std::chrono::milliseconds db_retry_max{2000};    // cap of the reconnect backoff
    int page_rows = 50000;                           // rows read per statement
};

class TokenFeed {
public:
    explicit TokenFeed(TokenFeedSettings settings);
    ~TokenFeed();   // stop()
    TokenFeed(const TokenFeed&) = delete;
    TokenFeed& operator=(const TokenFeed&) = delete;

    void start();   // starts the thread (once)
    void stop();    // wakes the thread, joins it; idempotent

    const TokenLog& log() const { return log_; }

    // One round over `conn`: reads every change above the log's version, page by page, and marks
    // the log current. False when a statement failed (the connection is then to be replaced).
    bool catch_up(PGconn* conn);

private:
    void run();
    // Sleeps until `conn`'s socket is readable (a notification), stop() or `timeout`.
    void wait(PGconn* conn, std::chrono::milliseconds timeout);
    bool stopping();

    TokenFeedSettings settings_;
    TokenLog log_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    int stop_fd_ = -1;   // an eventfd that ends a wait at once
    std::thread thread_;
};

}  // namespace paygate::daemon
