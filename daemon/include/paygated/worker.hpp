// A worker thread: takes one request at a time from the broker, runs its handler, sends the reply.
//
// Broker <-> worker protocol over inproc (worker DEALER, broker ROUTER; the broker sees the
// worker's routing id "w<N>" in front of every message):
//   worker -> broker  [""]                               ready, nothing to deliver
//                     [client, reply, request_id]        deliver `reply` to `client`; ready again
//   broker -> worker  [client, request, received_at]     a job; received_at = steady clock, ns, 8 bytes
//                     [""]                               stop: close the socket and return
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "paygate/ipc.hpp"
#include "paygated/backoff.hpp"
#include "paygated/config.hpp"
#include "paygated/zooticket.hpp"

namespace paygate::daemon {

class DaemonMetrics;   // metrics.hpp

struct WorkerSettings {
    int id = 0;                                  // 1..workers, appears as "worker":"<id>" in logs
    std::string endpoint;                        // inproc endpoint of the broker's back end
    std::string database;                        // libpq conninfo
    std::shared_ptr<RetryGate> db_retry;         // shared by the daemon's workers
    unsigned idempotency_lease_ms = 0;           // Db lease (idle_in_transaction_session_timeout); 0: server's
    unsigned idempotency_retention_s = 86400;
    TestFault test_fault = TestFault::None;
    std::vector<std::pair<std::string, std::string>> provider_routes;
    std::shared_ptr<const zooticket::Settings> zooticket;   // the merchant API's keys and settings
    std::shared_ptr<DaemonMetrics> metrics;      // the daemon's counters; null in tests
};

struct WorkerContext;

// Serves one decoded request wherever it runs (worker thread or, for inline routes, the broker):
// answers 503 "not executed" when it waited longer than its timeout (`queued_ms`, the daemon's
// own measure), else runs its handler. Logs the outcome and returns the encoded reply.
std::string serve(const ipc::Request& request, double queued_ms, WorkerContext& ctx);

// Encodes/decodes the received_at frame.
std::string encode_received_at(std::chrono::steady_clock::time_point t);
bool decode_received_at(const zmq::message_t& frame, std::chrono::steady_clock::time_point& out);

// Runs one worker until the broker sends stop (or the context is shut down). Never throws.
void run_worker(zmq::context_t& ctx, const WorkerSettings& settings) noexcept;

}  // namespace paygate::daemon
