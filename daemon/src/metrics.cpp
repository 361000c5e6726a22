// paygated's metrics: the counters, the metered provider, the PostgreSQL state sampler.
#include "paygated/metrics.hpp"

#include <cstdlib>
#include <iterator>

#include "paygated/db.hpp"
#include "paygated/log.hpp"
#include "paygated/tasks.hpp"

namespace paygate::daemon {

void DaemonMetrics::provider_call(const std::string& provider, const std::string& call, const std::string& outcome,
                                  double seconds) {
    std::size_t i = 0;
    while (i < std::size(kProviderCallBounds) && seconds > kProviderCallBounds[i]) ++i;
    std::lock_guard<std::mutex> lock(mu_);
    Calls& c = calls_[{provider, call, outcome}];
    c.buckets[i] += 1;
    c.sum += seconds;
}

void DaemonMetrics::callback(const std::string& partner, const std::string& result) {
    std::lock_guard<std::mutex> lock(mu_);
    callbacks_[{partner, result}] += 1;
}

void DaemonMetrics::db_connection(int worker, bool connected) {
    std::lock_guard<std::mutex> lock(mu_);
    db_connected_[worker] = connected;
}

void DaemonMetrics::set_pool_size(unsigned workers) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_size_ = workers;
}

void DaemonMetrics::set_providers(std::vector<std::string> providers) {
    std::lock_guard<std::mutex> lock(mu_);
    providers_ = std::move(providers);
}

void DaemonMetrics::state_sampled(StateSnapshot snapshot, Clock::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(snapshot);
    sampled_at_ = at;
    sampled_ = true;
}

void DaemonMetrics::state_sample_failed() {
    std::lock_guard<std::mutex> lock(mu_);
    ++sample_failures_;
}

void DaemonMetrics::format(metrics::TextWriter& w, Clock::time_point now) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> bounds(std::begin(kProviderCallBounds), std::end(kProviderCallBounds));
    w.family("paygate_daemon_provider_call_seconds", "histogram",
             "Calls to payment providers by provider, call (charge, reverse, status) and outcome, with their latency.");
    for (const auto& [key, c] : calls_) {
        const auto& [provider, call, outcome] = key;
        w.histogram("paygate_daemon_provider_call_seconds", {{"provider", provider}, {"call", call}, {"outcome", outcome}},
                    bounds, c.buckets, c.sum);
    }

    w.family("paygate_daemon_callbacks_total", "counter",
             "Provider callbacks the daemon handled, by partner and result (accepted, duplicate, rejected, failed).");
    for (const auto& [key, n] : callbacks_) {
        w.sample("paygate_daemon_callbacks_total", {{"partner", key.first}, {"result", key.second}}, static_cast<double>(n));
    }

    unsigned connected = 0;
    for (const auto& [worker, up] : db_connected_) connected += up ? 1 : 0;
    w.family("paygate_daemon_db_pool_connections", "gauge",
             "PostgreSQL connections of the worker pool (one per worker), by state (open, closed).");
    w.sample("paygate_daemon_db_pool_connections", {{"state", "open"}}, connected);
    w.sample("paygate_daemon_db_pool_connections", {{"state", "closed"}}, pool_size_ > connected ? pool_size_ - connected : 0);

    w.family("paygate_daemon_tasks", "gauge",
             "Durable tasks by kind and state (pending, running, dead), as of the last state sample.");
    // Every known kind in every state the sample counts, 0 when it has none (absent is not 0 to
    // an alert rule); kinds the sample found beyond these (a newer daemon's) as they come.
    std::map<std::pair<std::string, std::string>, std::uint64_t> tasks;
    for (const char* kind : {kTaskProcessPayment, kTaskProcessExtraPayment, kTaskProcessReversal, kTaskPaymentStatus,
                             kTaskHandleCompleted, kTaskMserverProcessPayment, kTaskMserverProcessReversal,
                             kTaskMserverNotification}) {
        for (const char* state : {"pending", "running", "dead"}) tasks[{kind, state}] = 0;
    }
    for (const auto& [kind, state, n] : snapshot_.tasks) tasks[{kind, state}] = n;
    for (const auto& [key, n] : tasks) {
        w.sample("paygate_daemon_tasks", {{"kind", key.first}, {"state", key.second}}, static_cast<double>(n));
    }
    w.family("paygate_daemon_provider_operations_open", "gauge",
             "Provider operations not final, by provider and state (sending, unknown, processing), as of the last "
             "state sample.");
    std::map<std::string, std::uint64_t> unknown;
    std::map<std::pair<std::string, std::string>, std::uint64_t> open;
    for (const std::string& provider : providers_) {
        unknown[provider] = 0;
        for (const char* state : {"sending", "unknown", "processing"}) open[{provider, state}] = 0;
    }
    for (const auto& [provider, state, n] : snapshot_.operations) {
        open[{provider, state}] = n;
        if (state == "unknown") unknown[provider] += n;
    }
    for (const auto& [key, n] : open) {
        w.sample("paygate_daemon_provider_operations_open", {{"provider", key.first}, {"state", key.second}},
                 static_cast<double>(n));
    }
    w.family("paygate_daemon_unknown_outcomes_open", "gauge",
             "Provider operations whose outcome is unknown (timeout, broken connection) until a status check "
             "resolves them, by provider.");
    for (const auto& [provider, n] : unknown) {
        w.sample("paygate_daemon_unknown_outcomes_open", {{"provider", provider}}, static_cast<double>(n));
    }
    w.family("paygate_daemon_state_sample_age_seconds", "gauge",
             "Age of the last successful state sample (tasks, operations); -1 before the first.");
    w.sample("paygate_daemon_state_sample_age_seconds", {},
             sampled_ ? std::chrono::duration<double>(now - sampled_at_).count() : -1.0);
    w.family("paygate_daemon_state_sample_failures_total", "counter", "State samples that failed (database unavailable).");
    w.sample("paygate_daemon_state_sample_failures_total", {}, static_cast<double>(sample_failures_));
}

std::string daemon_exposition(const BrokerState& broker, const DaemonMetrics& metrics, DaemonMetrics::Clock::time_point now) {
    metrics::TextWriter w;
    w.family("paygate_daemon_queue_depth", "gauge", "Requests waiting in the broker's queue for a worker.");
    w.sample("paygate_daemon_queue_depth", {}, static_cast<double>(broker.queue_depth));
    w.family("paygate_daemon_queue_max_depth", "gauge", "The queue's depth bound (queue_max_depth).");
    w.sample("paygate_daemon_queue_max_depth", {}, broker.queue_max_depth);
    w.family("paygate_daemon_queue_oldest_age_seconds", "gauge", "How long the oldest queued request has waited.");
    w.sample("paygate_daemon_queue_oldest_age_seconds", {}, broker.queue_oldest_age_s);
    w.family("paygate_daemon_not_executed_total", "counter",
             "Requests answered 503 not executed by the broker, by reason (queue_full, queue_age, draining).");
    for (const char* reason : {"queue_full", "queue_age", "draining"}) {
        auto it = broker.not_executed.find(reason);
        w.sample("paygate_daemon_not_executed_total", {{"reason", reason}},
                 static_cast<double>(it == broker.not_executed.end() ? 0 : it->second));
    }
    w.family("paygate_daemon_workers", "gauge", "Worker threads by state (busy: holding a job).");
    w.sample("paygate_daemon_workers", {{"state", "busy"}}, static_cast<double>(broker.busy_workers));
    w.sample("paygate_daemon_workers", {{"state", "idle"}},
             static_cast<double>(broker.workers > broker.busy_workers ? broker.workers - broker.busy_workers : 0));
    w.family("paygate_daemon_worker_busy_seconds_total", "counter",
             "Time worker threads spent on jobs, summed over workers: its rate over the worker count is the "
             "utilisation.");
    w.sample("paygate_daemon_worker_busy_seconds_total", {}, broker.busy_seconds);
    metrics.format(w, now);
    return w.take();
}

template <class Call>
ProviderAnswer MeteredProvider::timed(const char* call, Call&& fn) {
    auto start = std::chrono::steady_clock::now();
    ProviderAnswer a = fn();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_->provider_call(inner_->name(), call, answer_name(a.kind), seconds);
    return a;
}

ProviderAnswer MeteredProvider::charge(const Operation& op) {
    return timed("charge", [&] { return inner_->charge(op); });
}
ProviderAnswer MeteredProvider::reverse(const Operation& op) {
    return timed("reverse", [&] { return inner_->reverse(op); });
}
ProviderAnswer MeteredProvider::status(const Operation& op) {
    return timed("status", [&] { return inner_->status(op); });
}

StateSampler::StateSampler(std::string database, std::chrono::milliseconds interval, std::chrono::milliseconds retry_max,
                           std::shared_ptr<DaemonMetrics> metrics)
    : database_(std::move(database)), interval_(interval), retry_max_(retry_max), metrics_(std::move(metrics)) {}

StateSampler::~StateSampler() { stop(); }

void StateSampler::start() {
    db_ = std::make_unique<Db>(database_, std::make_shared<RetryGate>(retry_max_), "metrics");
    thread_ = std::thread([this] { run(); });
}

void StateSampler::request_stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
}

void StateSampler::stop() {
    request_stop();
    if (thread_.joinable()) thread_.join();
}

namespace {

bool read_counts(Db& db, const char* sql, std::vector<std::tuple<std::string, std::string, std::uint64_t>>& out) {
    PgResult result = db.exec(sql);
    if (!result || PQresultStatus(result.get()) != PGRES_TUPLES_OK) return false;
    for (int row = 0; row < PQntuples(result.get()); ++row) {
        out.emplace_back(PQgetvalue(result.get(), row, 0), PQgetvalue(result.get(), row, 1),
                         std::strtoull(PQgetvalue(result.get(), row, 2), nullptr, 10));
    }
    return true;
}

}  // namespace

bool StateSampler::sample_once() {
    if (!db_) db_ = std::make_unique<Db>(database_, std::make_shared<RetryGate>(retry_max_), "metrics");
    StateSnapshot snapshot;
    if (!read_counts(*db_, kOpenTasksQuery, snapshot.tasks) || !read_counts(*db_, kOpenOperationsQuery, snapshot.operations)) {
        metrics_->state_sample_failed();
        return false;
    }
    metrics_->state_sampled(std::move(snapshot), DaemonMetrics::Clock::now());
    return true;
}

void StateSampler::run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        lock.unlock();
        try {
            sample_once();
        } catch (const std::exception& e) {
            metrics_->state_sample_failed();
            log::warn("metrics_sample_failed").kv("what", e.what());
        }
        lock.lock();
        cv_.wait_for(lock, interval_, [this] { return stop_; });
    }
}

}  // namespace paygate::daemon
