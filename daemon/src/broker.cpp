// The main thread: binds the front end, runs the load-balancing broker, handles shutdown.
//
// The front ROUTER is always read: each request goes to an idle worker, or waits in the broker's
// own queue, whose depth and age are bounded (queue_max_depth, queue_max_age_ms). What passes a
// bound is answered at once with 503 "not executed" instead of waiting out the module's timeout,
// and so is everything that arrives or waits while a SIGTERM drains the daemon: the module sends
// such a request to another daemon. Time in the queue is the daemon's own clock, never the peer's.
#include "paygated/broker.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "paygate/ipc.hpp"
#include "paygate/json_error.hpp"
#include "paygate/metrics_text.hpp"
#include "paygated/db.hpp"
#include "paygated/endpoints.hpp"
#include "paygated/front_guard.hpp"
#include "paygated/handlers.hpp"
#include "paygated/http_client.hpp"
#include "paygated/janitor.hpp"
#include "paygated/link_auth.hpp"
#include "paygated/tasks.hpp"
#include "paygated/token_feed.hpp"
#include "paygated/log.hpp"
#include "paygated/metrics.hpp"
#include "paygated/worker.hpp"

#ifndef PAYGATE_VERSION
#define PAYGATE_VERSION "dev"
#endif

namespace paygate::daemon {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kFrontHwm = 10000;        // messages queued per peer, each direction
constexpr int kFrontLingerMs = 1000;    // how long close() may spend flushing replies
// How long the endpoints stay up after the last reply before a shutdown closes them. nginx's
// DEALER runs with ZMQ_IMMEDIATE, and libzmq (socket_base_t::hiccuped) discards the replies a
// peer has received but not read yet as soon as it sees the connection drop: closing right after
// a reply would lose it (the client gets 504 for work that was committed).
constexpr auto kReplyGrace = std::chrono::milliseconds(250);
// A draining daemon closes its endpoints only once no request has arrived for this long: the
// modules have seen its "draining" replies and send elsewhere, so nothing is in flight to it.
constexpr auto kDrainQuiet = std::chrono::milliseconds(300);
// Front-end messages read per pass, so that replies from the workers are never starved.
constexpr int kFrontBatch = 256;
// Most requests of a batchable route one worker takes at once (see dispatch()).
constexpr std::size_t kMaxBatch = 16;

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& s : items) {
        if (!out.empty()) out.push_back(',');
        out += s;
    }
    return out;
}

// Reads what woke us on the stop fd; names the signal when it is a signalfd.
std::string drain_stop_fd(int fd) {
    signalfd_siginfo info{};
    ssize_t n = ::read(fd, &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) {
        switch (info.ssi_signo) {
            case SIGTERM: return "SIGTERM";
            case SIGINT: return "SIGINT";
            default: return "signal " + std::to_string(info.ssi_signo);
        }
    }
    return "stop";
}

// A request read from the front end, waiting for a worker.
struct Job {
    zmq::message_t client;        // the peer's routing id
    zmq::message_t frame;         // the encoded request, as received
    Clock::time_point received;
    std::uint64_t id = 0;         // of the decoded request: the reply's
    std::string request_id;
    std::string route;
    std::uint32_t timeout_ms = 0;
};

class Broker {
public:
    Broker(const Config& config, std::unique_ptr<LinkAuth> auth)
        : config_(config), ctx_(1), front_(ctx_, zmq::socket_type::router), back_(ctx_, zmq::socket_type::router),
          guard_(ctx_, std::move(auth)),
          inline_db_(config.database, std::make_shared<RetryGate>(std::chrono::milliseconds(config.db_retry_max_ms)), 0),
          inline_ctx_{0, inline_db_},
          token_feed_(TokenFeedSettings{config.database, std::chrono::milliseconds(250),
                                        std::chrono::milliseconds(config.db_retry_max_ms), 50000}),
          janitor_(JanitorSettings{config.database, std::chrono::seconds(config.idempotency_purge_interval_s),
                                   std::chrono::milliseconds(config.db_retry_max_ms), config.idempotency_lease_ms,
                                   1000,
                                   std::chrono::milliseconds(config.test_fault == TestFault::JanitorStall ? 2000 : 0)}),
          metrics_(std::make_shared<DaemonMetrics>()),
          sampler_(config.database, std::chrono::milliseconds(kStateSampleMs), std::chrono::milliseconds(config.db_retry_max_ms),
                   metrics_) {
        inline_ctx_.tokens = &token_feed_.log();
        metrics_->set_pool_size(config.workers);
        std::vector<std::string> providers;
        for (const auto& route : config.provider_routes) {
            if (std::find(providers.begin(), providers.end(), route.second) == providers.end()) {
                providers.push_back(route.second);
            }
        }
        metrics_->set_providers(std::move(providers));
    }

    ~Broker() {
        sampler_.stop();
        janitor_.stop();
        token_feed_.stop();
        if (tasks_) tasks_->stop();
        // Only reached with threads still running on an error path: unblock and join them.
        if (!threads_.empty()) {
            ctx_.shutdown();
            for (std::thread& t : threads_) t.join();
        }
        for (const SocketFile& f : socket_files_) remove_socket_file(f);
    }

    bool bind_front() {
        front_.set(zmq::sockopt::linger, kFrontLingerMs);
        front_.set(zmq::sockopt::sndhwm, kFrontHwm);
        front_.set(zmq::sockopt::rcvhwm, kFrontHwm);
        front_.set(zmq::sockopt::router_mandatory, 1);  // an undeliverable reply is an error we log
        front_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(ipc::kMaxFrameBytes) + 1024);
        front_.set(zmq::sockopt::tcp_keepalive, 1);
        if (!secure_front()) return false;
        for (const std::string& endpoint : config_.listen) {
            std::string path = ipc_socket_path(endpoint);
            std::string error;
            if (!path.empty() && !check_socket_file_free(path, error)) return bind_failed(endpoint, error);
            try {
                front_.bind(endpoint);
            } catch (const zmq::error_t& e) {
                return bind_failed(endpoint, e.what());
            }
            if (!path.empty()) {
                SocketFile file;
                if (!adopt_socket_file(path, config_.socket_mode, file, error)) return bind_failed(endpoint, error);
                socket_files_.push_back(file);
            }
            bound_.push_back(front_.get(zmq::sockopt::last_endpoint));
        }
        return true;
    }

    void start_workers() {
        token_feed_.start();   // first: the modules' token list depends on it, not on the workers
        back_.set(zmq::sockopt::linger, 0);
        back_.set(zmq::sockopt::router_mandatory, 1);
        back_.bind(kBackEndpoint);
        auto retry = std::make_shared<RetryGate>(std::chrono::milliseconds(config_.db_retry_max_ms));
        auto zooticket_settings = std::make_shared<zooticket::Settings>();
        std::string zooticket_error;
        if (!zooticket::load_settings(config_, *zooticket_settings, zooticket_error)) throw std::runtime_error(zooticket_error);
        for (unsigned i = 1; i <= config_.workers; ++i) {
            WorkerSettings settings;
            settings.id = static_cast<int>(i);
            settings.endpoint = kBackEndpoint;
            settings.database = config_.database;
            settings.db_retry = retry;
            settings.idempotency_lease_ms = config_.idempotency_lease_ms;
            settings.idempotency_retention_s = config_.idempotency_retention_s;
            settings.test_fault = config_.test_fault;
            settings.provider_routes = config_.provider_routes;
            settings.zooticket = zooticket_settings;
            settings.metrics = metrics_;
            threads_.emplace_back([this, settings] { run_worker(ctx_, settings); });
        }
        janitor_.start();
        sampler_.start();
        if (tasks_) tasks_->start();
    }

    int loop(int stop_fd) {
        bool stopping = false;
        for (;;) {
            // The ZAP handler and the monitor are always served: a connecting peer's handshake
            // waits for the ZAP answer, whether or not a worker is idle.
            zmq::pollitem_t items[5] = {
                {nullptr, stop_fd, static_cast<short>(stopping ? 0 : ZMQ_POLLIN), 0},  // later signals: ignored
                {back_.handle(), 0, ZMQ_POLLIN, 0},
                {guard_.monitor_handle(), 0, ZMQ_POLLIN, 0},
                {guard_.zap_handle(), 0, guard_.zap_events(), 0},
                {front_.handle(), 0, ZMQ_POLLIN, 0},
            };
            zmq::poll(items, 5, next_wakeup(stopping));

            if (items[0].revents & ZMQ_POLLIN) {
                std::string why = drain_stop_fd(stop_fd);
                stopping = true;
                deadline_ = Clock::now() + std::chrono::milliseconds(config_.shutdown_timeout_ms);
                sampler_.request_stop();   // joined in finish()
                log::info("shutdown_begin").kv("signal", why).kv("in_flight", busy_.size()).kv("queued", queue_.size());
                while (!queue_.empty()) refuse_front(ipc::NotExecuted::Draining, "draining");
            }
            if (items[1].revents & ZMQ_POLLIN) from_workers();
            if (items[2].revents & ZMQ_POLLIN) guard_.on_monitor();
            if (items[3].revents & ZMQ_POLLIN) guard_.on_zap();
            if (items[4].revents & ZMQ_POLLIN) from_front(stopping);
            shed_old(Clock::now());
            dispatch();

            if (stopping) {
                Clock::time_point now = Clock::now();
                bool quiet = now - last_front_ >= kDrainQuiet && now - last_reply_ >= kReplyGrace;
                if (busy_.empty() && (quiet || now >= deadline_)) return finish();
                if (now >= deadline_) give_up();
            }
        }
    }

private:
    // How long poll may sleep: until the oldest queued request passes its bound, or the drain's
    // next check.
    std::chrono::milliseconds next_wakeup(bool stopping) const {
        Clock::time_point now = Clock::now();
        std::optional<Clock::time_point> at;
        for (const Job& job : queue_) {
            Clock::time_point due = job.received + max_wait(job);
            if (!at || due < *at) at = due;
        }
        if (stopping) {
            Clock::time_point check = std::max(last_front_ + kDrainQuiet, last_reply_ + kReplyGrace);
            check = std::min(check, deadline_);
            if (!at || check < *at) at = check;
        }
        if (!at) return std::chrono::milliseconds(-1);
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*at - now) + std::chrono::milliseconds(1);
        return std::max(left, std::chrono::milliseconds(0));
    }

    // The longest a job may wait for a worker: the queue's bound, or less when the module gives
    // up on it sooner (then nobody waits for the reply any more).
    std::chrono::milliseconds max_wait(const Job& job) const {
        unsigned ms = config_.queue_max_age_ms;
        if (job.timeout_ms != 0) ms = std::min<unsigned>(ms, job.timeout_ms);
        return std::chrono::milliseconds(ms);
    }

    static constexpr const char* kBackEndpoint = "inproc://paygated-workers";

    bool secure_front() {
        std::string endpoint, error;
        return guard_.attach(front_, endpoint, error) || bind_failed(endpoint, error);
    }

    bool bind_failed(const std::string& endpoint, const std::string& error) {
        log::error("bind_failed").kv("endpoint", endpoint).kv("error", error);
        return false;
    }

    void from_workers() {
        std::vector<zmq::message_t> msg;
        for (;;) {
            msg.clear();
            if (!zmq::recv_multipart(back_, std::back_inserter(msg), zmq::recv_flags::dontwait)) return;
            if (msg.empty()) continue;
            std::string worker = msg[0].to_string();
            // [worker, (client, reply, request_id)...], or [worker, ""]: free, nothing to send
            if (msg.size() >= 4 && (msg.size() - 1) % 3 == 0) {
                for (std::size_t i = 1; i + 2 < msg.size(); i += 3) {
                    deliver(msg[i], msg[i + 1], msg[i + 2].to_string_view(), worker);
                }
            }
            busy_.erase(worker);
            if (auto since = busy_since_.find(worker); since != busy_since_.end()) {
                busy_seconds_ += std::chrono::duration<double>(Clock::now() - since->second).count();
                busy_since_.erase(since);
            }
            idle_.push_back(worker);
            if (!ready_ && known_.insert(worker).second && known_.size() == config_.workers) {
                ready_ = true;
                log::info("ready").kv("listen", join(bound_)).kv("workers", config_.workers);
            }
        }
    }

    void deliver(zmq::message_t& client, zmq::message_t& reply, std::string_view request_id,
                 const std::string& worker) {
        const char* problem = nullptr;
        try {
            if (!front_.send(client, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
                problem = "peer_queue_full";
            } else {
                front_.send(reply, zmq::send_flags::dontwait);
            }
        } catch (const zmq::error_t& e) {
            if (e.num() != EHOSTUNREACH) throw;
            problem = "peer_gone";
        }
        if (problem) {
            log::warn("reply_dropped").kv("request_id", request_id).kv("reason", problem).kv("worker", worker);
        } else {
            last_reply_ = Clock::now();
        }
    }

    void from_front(bool stopping) {
        std::vector<zmq::message_t> msg;
        for (int n = 0; n < kFrontBatch; ++n) {
            msg.clear();
            if (!zmq::recv_multipart(front_, std::back_inserter(msg), zmq::recv_flags::dontwait)) return;
            last_front_ = Clock::now();
            if (msg.size() != 2) {
                log::warn("bad_frame").kv("reason", "expected one frame per message").kv("frames", msg.size() - 1);
                continue;
            }
            ipc::Request request;
            std::string error;
            if (!ipc::decode(msg[1].to_string_view(), request, error)) {
                log::warn("bad_frame").kv("bytes", msg[1].size()).kv("reason", error);
                continue;
            }
            if (!stopping && request.route == metrics::kMetricsRoute) {
                serve_metrics(msg[0], request);
                continue;
            }
            const HandlerEntry* entry = find_handler(request.route);
            // While draining even the inline routes (ping, the token sync) are refused: the
            // modules then pass this daemon over, and its front end falls quiet so it can close.
            if (!stopping && entry != nullptr && entry->runs == Runs::Inline) {
                serve_inline(msg[0], request);
                continue;
            }
            Job job{std::move(msg[0]), std::move(msg[1]), last_front_, request.id, std::move(request.request_id),
                    std::move(request.route), request.timeout_ms};
            if (stopping) {
                refuse(job, ipc::NotExecuted::Draining, "draining");
            } else if (queue_.size() >= config_.queue_max_depth) {
                refuse(job, ipc::NotExecuted::Overloaded, "queue_full");
            } else {
                queue_.push_back(std::move(job));
            }
        }
    }

    // Hands queued requests, oldest first, to idle workers. Consecutive requests of a batchable
    // route (reads) go to one worker together, which reads their rows in one round trip: under
    // load that multiplies what a worker serves per database round trip. A batch takes at most
    // its share of the queue, so the other idle workers get work too.
    void dispatch() {
        while (!idle_.empty() && !queue_.empty()) {
            std::size_t take = 1;
            if (batchable(queue_.front().route)) {
                std::size_t share = (queue_.size() + idle_.size() - 1) / idle_.size();
                std::size_t limit = std::min(kMaxBatch, share);
                while (take < limit && take < queue_.size() && queue_[take].route == queue_.front().route) ++take;
            }
            std::string worker = std::move(idle_.front());
            idle_.pop_front();
            back_.send(zmq::buffer(worker), zmq::send_flags::sndmore);
            for (std::size_t i = 0; i < take; ++i) {
                Job& job = queue_[i];
                std::string received = encode_received_at(job.received);
                back_.send(job.client, zmq::send_flags::sndmore);
                back_.send(job.frame, zmq::send_flags::sndmore);
                back_.send(zmq::buffer(received), i + 1 < take ? zmq::send_flags::sndmore : zmq::send_flags::none);
            }
            busy_since_[worker] = Clock::now();
            busy_.insert(std::move(worker));
            queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
        }
    }

    // Answers the requests that have waited too long for a worker: 503, not executed. Each has
    // its own bound (max_wait), so any of them may be due, not only the oldest.
    void shed_old(Clock::time_point now) {
        for (auto it = queue_.begin(); it != queue_.end();) {
            if (now - it->received >= max_wait(*it)) {
                refuse(*it, ipc::NotExecuted::Overloaded, "queue_age");
                it = queue_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void refuse_front(ipc::NotExecuted why, const char* reason) {
        refuse(queue_.front(), why, reason);
        queue_.pop_front();
    }

    void refuse(Job& job, ipc::NotExecuted why, const char* reason) {
        not_executed_[reason] += 1;
        double waited = std::chrono::duration<double, std::milli>(Clock::now() - job.received).count();
        (why == ipc::NotExecuted::Draining ? log::info("request_not_executed") : log::warn("request_not_executed"))
            .kv("request_id", job.request_id)
            .kv("route", job.route)
            .kv("reason", reason)
            .kv("queued", queue_.size())
            .kv("waited_ms", waited);
        std::string reply = ipc::encode(ipc::not_executed_reply(job.id, why));
        zmq::message_t reply_msg(reply.data(), reply.size());
        deliver(job.client, reply_msg, job.request_id, "broker");
    }

    // system.metrics, from the broker's own state and the counters (never a query: StateSampler
    // reads PostgreSQL on its own thread).
    void serve_metrics(zmq::message_t& client, const ipc::Request& request) {
        Clock::time_point now = Clock::now();
        BrokerState state;
        state.queue_depth = queue_.size();
        state.queue_max_depth = config_.queue_max_depth;
        state.queue_oldest_age_s = queue_.empty() ? 0.0 : std::chrono::duration<double>(now - queue_.front().received).count();
        state.not_executed = not_executed_;
        state.busy_workers = busy_.size();
        state.workers = config_.workers;
        state.busy_seconds = busy_seconds_;
        for (const auto& [worker, since] : busy_since_) state.busy_seconds += std::chrono::duration<double>(now - since).count();
        ipc::Reply reply;
        reply.id = request.id;
        reply.status = 200;
        reply.headers.emplace_back("content-type", std::string(metrics::kContentType));
        reply.body = daemon_exposition(state, *metrics_, now);
        std::string frame = ipc::encode(reply);
        zmq::message_t reply_msg(frame.data(), frame.size());
        deliver(client, reply_msg, request.request_id, "inline");
    }

    // Runs an inline handler's request here, at once (see Runs::Inline).
    void serve_inline(zmq::message_t& client, const ipc::Request& request) {
        std::string reply = serve(request, 0.0, inline_ctx_);
        if (!reply.empty()) {
            zmq::message_t reply_msg(reply.data(), reply.size());
            deliver(client, reply_msg, request.request_id, "inline");
        }
    }

    int finish() {
        sampler_.stop();
        // The loop waited until the peers had read the last replies (kReplyGrace) and stopped
        // sending (kDrainQuiet). Replies still queued on the front end are flushed by close()
        // (bounded by the linger). Unbinding earlier would drop the accepted connections and
        // those replies with them (libzmq ties a connection's session to its listener).
        front_.close();
        janitor_.stop();  // prompt: cancels a purge in progress
        token_feed_.stop();
        if (tasks_) tasks_->stop();  // the task in hand finishes (its provider call is bounded)
        guard_.close();
        for (const std::string& worker : known_) {
            back_.send(zmq::buffer(worker), zmq::send_flags::sndmore);
            back_.send(zmq::message_t(), zmq::send_flags::none);
        }
        // A worker that never reported in (still starting) gets its stop once it does.
        while (known_.size() < threads_.size()) {
            zmq::pollitem_t item{back_.handle(), 0, ZMQ_POLLIN, 0};
            if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) {
                if (Clock::now() >= deadline_) give_up();
                continue;
            }
            std::vector<zmq::message_t> msg;
            if (!zmq::recv_multipart(back_, std::back_inserter(msg))) continue;
            if (!msg.empty() && known_.insert(msg[0].to_string()).second) {
                back_.send(msg[0], zmq::send_flags::sndmore);
                back_.send(zmq::message_t(), zmq::send_flags::none);
            }
        }
        for (std::thread& t : threads_) t.join();
        threads_.clear();
        back_.close();
        ctx_.close();
        for (const SocketFile& f : socket_files_) remove_socket_file(f);
        socket_files_.clear();
        log::info("shutdown_done");
        return 0;
    }

    [[noreturn]] void give_up() {
        log::error("shutdown_timeout").kv("in_flight", busy_.size()).kv("timeout_ms", config_.shutdown_timeout_ms);
        for (const SocketFile& f : socket_files_) remove_socket_file(f);
        std::_Exit(1);
    }

    const Config& config_;
    zmq::context_t ctx_;
    zmq::socket_t front_;
    zmq::socket_t back_;
    FrontGuard guard_;                 // the ZAP handler and the handshake monitor
    std::vector<std::thread> threads_;
    std::vector<SocketFile> socket_files_;
    std::vector<std::string> bound_;
    std::deque<std::string> idle_;      // workers waiting for a job, oldest first
    std::set<std::string> busy_;        // workers holding a job
    std::set<std::string> known_;       // workers that have reported in at least once
    bool ready_ = false;
    Clock::time_point deadline_{};      // when a shutdown gives up
    Clock::time_point last_reply_{};    // when the last reply was handed to the front end
    Clock::time_point last_front_{};    // when the last message was read from the front end
    std::deque<Job> queue_;             // requests waiting for a worker, oldest first
    // Inline handlers never touch the database (see Runs::Inline): this Db is never connected.
    Db inline_db_;
    WorkerContext inline_ctx_;
    // Keeps the token list in memory for auth.tokens, served inline (handlers_auth.cpp).
    TokenFeed token_feed_;
    Janitor janitor_;  // purges expired idempotency keys on a thread of its own
    // How often StateSampler reads tasks and provider operations: a scrape never queries.
    static constexpr int kStateSampleMs = 5000;
    std::shared_ptr<DaemonMetrics> metrics_;
    StateSampler sampler_;
    std::map<std::string, std::uint64_t> not_executed_;   // by reason
    std::map<std::string, Clock::time_point> busy_since_;   // worker -> when its job was handed over
    double busy_seconds_ = 0;                               // of the jobs finished
public:
    // Providers' keys are loaded before anything is bound, so a bad key file stops the start.
    void build_task_runner() {
        if (config_.task_workers == 0) return;
        auto http = std::make_shared<HttpClient>();
        auto providers = std::make_shared<Providers>(config_, http, metrics_);
        tasks_ = std::make_unique<TaskRunner>(task_settings(config_), providers);
        http_ = http;
    }

private:
    std::shared_ptr<HttpClient> http_;
    std::unique_ptr<TaskRunner> tasks_;   // durable tasks (tasks.hpp) on threads of their own
};

}  // namespace

int run_daemon(const Config& config, int stop_fd) {
    std::unique_ptr<LinkAuth> auth;
    if (config.curve) {
        std::string error;
        auth = LinkAuth::load(config, error);
        if (!auth) {
            log::error("curve_config_failed").kv("what", error);
            return 2;
        }
    }
    log::info("start")
        .kv("version", PAYGATE_VERSION)
        .kv("pid", static_cast<long long>(::getpid()))
        .kv("listen", join(config.listen))
        .kv("workers", config.workers)
        .kv("db", describe_conninfo(config.database))
        .kv("idempotency_retention_s", config.idempotency_retention_s)
        .kv("idempotency_lease_ms", config.idempotency_lease_ms)
        .kv("curve", config.curve ? "on" : "off");
    if (auth) {
        log::info("curve_enabled").kv("public_key", auth->keys().public_key).kv("allowed_keys", auth->allowed_count());
    } else {
        log::warn("curve_off").kv("note", "the link to nginx is not authenticated (curve = off): development only");
    }
#ifdef PAYGATED_TEST_HOOKS
    if (config.test_fault == TestFault::KillAfterCommit) {
        log::warn("test_fault_armed")
            .kv("fault", "kill-after-commit")
            .kv("note", "test only: the daemon SIGKILLs itself after its first idempotent COMMIT");
    } else if (config.test_fault == TestFault::StopBeforeCommit) {
        log::warn("test_fault_armed")
            .kv("fault", "stop-before-commit")
            .kv("note", "test only: the daemon SIGSTOPs itself before its first idempotent COMMIT");
    }
#endif
    Broker broker(config, std::move(auth));
    try {
        broker.build_task_runner();
    } catch (const std::exception& e) {
        log::error("provider_config_failed").kv("what", e.what());
        return 2;
    }
    if (config.task_workers > 0) {
        std::string routes;
        for (const auto& [currency, provider] : config.provider_routes) {
            routes += (routes.empty() ? "" : ",") + currency + ":" + provider;
        }
        log::info("tasks_enabled").kv("task_workers", config.task_workers).kv("routes", routes.empty() ? "none" : routes);
    }
    if (!broker.bind_front()) return 1;
    broker.start_workers();
    return broker.loop(stop_fd);
}

}  // namespace paygate::daemon
