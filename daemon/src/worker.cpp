// Worker threads: decode, refuse expired work, dispatch to a handler, encode and send the reply.
#include "paygated/worker.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <iterator>
#include <vector>

#include <zmq_addon.hpp>

#include "paygate/idempotency.hpp"
#include "paygate/ipc.hpp"
#include "paygate/json_error.hpp"
#include "paygate/routes.hpp"
#include "paygated/db.hpp"
#include "paygated/handlers.hpp"
#include "paygated/log.hpp"
#include "paygated/metrics.hpp"
#include "paygate/routes.hpp"

namespace paygate::daemon {

namespace {

// A partner's callback: accepted or duplicate (the handlers' 200 body says which), rejected (4xx)
// or failed (5xx), by partner.
void count_callback(const ipc::Request& request, const ipc::Reply& reply, DaemonMetrics& metrics) {
    for (const routes::Route& route : routes::table()) {
        if (route.name != request.route || route.partner.empty()) continue;
        std::string result = reply.status == 200 ? (reply.body.find("\"duplicate\"") != std::string::npos ? "duplicate" : "accepted")
                             : reply.status < 500 ? "rejected"
                                                  : "failed";
        metrics.callback(std::string(route.partner), result);
        return;
    }
}

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

void send_ready(zmq::socket_t& sock) { sock.send(zmq::message_t(), zmq::send_flags::none); }

// Handles a job of one or more requests ([client, frame, received] each, several only for a
// batchable route); always ends by telling the broker this worker is free again: with the
// replies ([client, reply, request_id] each), or with an empty ready frame if none.
void handle(zmq::socket_t& sock, std::vector<zmq::message_t>& job, WorkerContext& ctx) {
    std::size_t n = job.size() / 3;
    std::vector<ipc::Request> requests(n);
    std::vector<double> queued(n, 0.0);
    std::vector<bool> ok(n, false);
    for (std::size_t i = 0; i < n; ++i) {
        Clock::time_point received;
        if (!decode_received_at(job[3 * i + 2], received)) received = Clock::now();
        queued[i] = ms_between(received, Clock::now());
        std::string error;
        ok[i] = ipc::decode(job[3 * i + 1].to_string_view(), requests[i], error);
        if (!ok[i]) log::warn("bad_frame").kv("worker", std::to_string(ctx.worker)).kv("bytes", job[3 * i + 1].size()).kv("reason", error);
    }
    if (n > 1) prefetch_for_batch(requests, ctx);
    ctx.batch = n;
    std::vector<zmq::message_t> out;
    for (std::size_t i = 0; i < n; ++i) {
        if (!ok[i]) continue;
        std::string frame = serve(requests[i], queued[i], ctx);
        out.push_back(std::move(job[3 * i]));
        out.emplace_back(frame.data(), frame.size());
        out.emplace_back(requests[i].request_id.data(), requests[i].request_id.size());
    }
    ctx.prefetched_status.clear();
    ctx.batch = 1;
    if (out.empty()) {
        send_ready(sock);
        return;
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
        sock.send(out[i], i + 1 < out.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
}

}  // namespace

std::string serve(const ipc::Request& request, double queued_ms, WorkerContext& ctx) {
    Clock::time_point start = Clock::now();
    // Age by the daemon's own clock only: a peer's clock may be off by any amount.
    double age_ms = queued_ms;
    if (request.timeout_ms != 0 && age_ms > request.timeout_ms) {
        // The module has given up on it (504): run nothing, but still answer, so that whoever
        // still waits learns at once that nothing happened.
        log::warn("request_not_executed")
            .kv("request_id", request.request_id)
            .kv("route", request.route)
            .kv("reason", "expired")
            .kv("waited_ms", age_ms)
            .kv("timeout_ms", request.timeout_ms)
            .kv("worker", std::to_string(ctx.worker));
        return ipc::encode(ipc::not_executed_reply(request.id, ipc::NotExecuted::Overloaded));
    }

    std::uint16_t status = 500;
    std::string frame;
    std::string idempotency;  // the reply's x-paygate-idempotency, if any
    // Transactions of this request stop waiting when the module stops waiting (Db::set_deadline).
    struct DeadlineScope {
        Db& db;
        ~DeadlineScope() { db.set_deadline(std::nullopt); }
    } deadline_scope{ctx.db};
    if (request.timeout_ms != 0) {
        auto left = std::chrono::duration<double, std::milli>(request.timeout_ms - age_ms);
        ctx.db.set_deadline(start + std::chrono::duration_cast<Clock::duration>(left));
    }
    try {
        ipc::Reply reply = dispatch(request, ctx);
        status = reply.status;
        for (const auto& [name, value] : reply.headers) {
            if (name == idempotency::kOutcomeHeader) idempotency = value;
        }
        frame = ipc::encode(reply);
        if (ctx.metrics) count_callback(request, reply, *ctx.metrics);
    } catch (const std::exception& e) {
        log::error("reply_failed").kv("request_id", request.request_id).kv("worker", std::to_string(ctx.worker)).kv("what", e.what());
        status = 500;
        frame = ipc::encode(ipc::error_reply(request.id, 500, "internal_error", "internal error"));
    }
    // The module's token poll comes about four times a second from every nginx: routine, so
    // debug unless it fails (quiet by default; docs/daemon.md#logs).
    bool routine = request.route == routes::kAuthTokensRoute && status < 400;
    log::Line line(routine ? LogLevel::Debug : LogLevel::Info, "request");
    line.kv("request_id", request.request_id)
        .kv("route", request.route)
        .kv("status", status)
        .kv("ms", queued_ms + ms_between(start, Clock::now()))
        .kv("worker", std::to_string(ctx.worker));
    if (!idempotency.empty()) line.kv("idempotency", idempotency);
    if (ctx.batch > 1) line.kv("batch", ctx.batch);
    return frame;
}

std::string encode_received_at(Clock::time_point t) {
    std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return std::string(reinterpret_cast<const char*>(&ns), sizeof ns);
}

bool decode_received_at(const zmq::message_t& frame, Clock::time_point& out) {
    std::int64_t ns = 0;
    if (frame.size() != sizeof ns) return false;
    std::memcpy(&ns, frame.data(), sizeof ns);
    out = Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
    return true;
}

void run_worker(zmq::context_t& zctx, const WorkerSettings& settings) noexcept {
    try {
        zmq::socket_t sock(zctx, zmq::socket_type::dealer);
        sock.set(zmq::sockopt::routing_id, "w" + std::to_string(settings.id));
        sock.set(zmq::sockopt::linger, 0);
        sock.connect(settings.endpoint);

        auto retry = settings.db_retry ? settings.db_retry : std::make_shared<RetryGate>(std::chrono::milliseconds(2000));
        Db db(settings.database, retry, settings.id, settings.idempotency_lease_ms);
        WorkerContext ctx{settings.id, db, settings.idempotency_retention_s, settings.test_fault, settings.provider_routes};
        ctx.zooticket = settings.zooticket;
        ctx.metrics = settings.metrics.get();
        send_ready(sock);

        std::vector<zmq::message_t> job;
        for (;;) {
            job.clear();
            if (!zmq::recv_multipart(sock, std::back_inserter(job))) continue;
            if (job.size() == 1) break;  // stop
            if (job.size() % 3 != 0) {
                log::error("worker_protocol_error").kv("worker", std::to_string(settings.id)).kv("frames", job.size());
                send_ready(sock);
                continue;
            }
            try {
                handle(sock, job, ctx);
                if (ctx.metrics) ctx.metrics->db_connection(settings.id, db.connected());
            } catch (const zmq::error_t&) {
                throw;
            } catch (const std::exception& e) {
                // Out of memory or the like: the request is lost, the worker is not.
                log::error("worker_request_failed").kv("worker", std::to_string(settings.id)).kv("what", e.what());
                send_ready(sock);
            }
        }
    } catch (const zmq::error_t& e) {
        if (e.num() != ETERM) log::error("worker_failed").kv("worker", std::to_string(settings.id)).kv("what", e.what());
    } catch (const std::exception& e) {
        log::error("worker_failed").kv("worker", std::to_string(settings.id)).kv("what", e.what());
    }
}

}  // namespace paygate::daemon
