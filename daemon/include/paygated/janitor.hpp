// The janitor: a thread of its own that deletes expired idempotency keys (docs/idempotency.md).
//
// Every `interval` (and once at start) it deletes the rows of idempotency_keys past expires_at,
// in batches of `batch` rows (one autocommit DELETE each, repeated until a batch comes back
// short), over its own PostgreSQL connection (a Db with its own backoff: it never touches the
// workers' connections or the broker thread). Logs event=idempotency_purged count=N when it
// deleted something. stop() is prompt: it wakes the thread and cancels a statement in progress.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <libpq-fe.h>

#include "paygated/db.hpp"

namespace paygate::daemon {

struct JanitorSettings {
    std::string database;                         // libpq conninfo
    std::chrono::milliseconds interval{60000};    // config idempotency_purge_interval_s
    std::chrono::milliseconds db_retry_max{2000}; // config db_retry_max_ms
    unsigned lease_ms = 0;                        // config idempotency_lease_ms (as for workers)
    int batch = 1000;                             // rows per DELETE
    std::chrono::milliseconds test_stall{0};      // TestFault::JanitorStall (test builds only)
};

class Janitor {
public:
    explicit Janitor(JanitorSettings settings);
    ~Janitor();  // stop()
    Janitor(const Janitor&) = delete;
    Janitor& operator=(const Janitor&) = delete;

    void start();  // starts the thread (once)
    void stop();   // wakes the thread, cancels its statement if one runs, joins; idempotent

    // One purge over `db`: batches until one comes back short (or stop() was called). Returns
    // the rows deleted, or -1 when the database was unavailable or a statement failed (logged).
    long purge_once(Db& db);

private:
    void run();
    bool stopping();

    JanitorSettings settings_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    PGcancel* cancel_ = nullptr;  // of the statement in progress; guarded by mutex_
    std::thread thread_;
};

}  // namespace paygate::daemon
