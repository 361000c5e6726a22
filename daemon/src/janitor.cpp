// The janitor thread: batched purges of expired idempotency keys (see janitor.hpp).
#include "paygated/janitor.hpp"

#include <exception>

#include "paygated/log.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

Janitor::Janitor(JanitorSettings settings) : settings_(std::move(settings)) {}

Janitor::~Janitor() { stop(); }

void Janitor::start() {
    if (thread_.joinable()) return;
    thread_ = std::thread([this] { run(); });
}

void Janitor::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
        if (cancel_) {
            char why[256];
            PQcancel(cancel_, why, sizeof why);  // best effort: the statement ends with an error
        }
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool Janitor::stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
}

long Janitor::purge_once(Db& db) {
    auto started = std::chrono::steady_clock::now();
    long total = 0;
    try {
        for (;;) {
            Session s(db);
            if (settings_.test_stall.count() > 0) {
                log::warn("test_fault_janitor_stall").kv("ms", static_cast<long long>(settings_.test_stall.count()));
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait_for(lock, settings_.test_stall, [this] { return stop_; });
                settings_.test_stall = std::chrono::milliseconds(0);  // once per process
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stop_) break;
                // The session's own connection: asking Db again could replace (and free) the one
                // the session holds when the server has dropped it meanwhile.
                cancel_ = PQgetCancel(s.connection());
            }
            long n = 0;
            try {
                n = purge_expired_keys(s, settings_.batch);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                PQfreeCancel(cancel_);
                cancel_ = nullptr;
                throw;
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                PQfreeCancel(cancel_);
                cancel_ = nullptr;
            }
            total += n;
            if (n < settings_.batch) break;
        }
    } catch (const DbUnavailable&) {
        return -1;  // Db has logged why (db_unavailable / db_connection_lost)
    } catch (const DbError& e) {
        if (!stopping()) log::warn("idempotency_purge_failed").kv("sqlstate", e.sqlstate).kv("error", e.what());
        return -1;
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (total > 0) {
        log::info("idempotency_purged").kv("count", total).kv("ms", ms);
    } else {
        log::debug("idempotency_purged").kv("count", total).kv("ms", ms);
    }
    return total;
}

void Janitor::run() {
    try {
        Db db(settings_.database, std::make_shared<RetryGate>(settings_.db_retry_max), "janitor", settings_.lease_ms);
        for (;;) {
            purge_once(db);
            std::unique_lock<std::mutex> lock(mutex_);
            if (wake_.wait_for(lock, settings_.interval, [this] { return stop_; })) return;
        }
    } catch (const std::exception& e) {
        log::error("janitor_failed").kv("what", e.what());
    }
}

}  // namespace paygate::daemon
