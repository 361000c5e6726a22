// Handlers of the operational routes: health (checks PostgreSQL) and ping (no work at all).
#include <chrono>

#include "paygated/handlers.hpp"
#include "paygated/log.hpp"

namespace paygate::daemon {

ipc::Reply handle_health(const ipc::Request&, WorkerContext& ctx) {
    PgResult result = ctx.db.exec("SELECT 1");
    bool healthy = result && PQresultStatus(result.get()) == PGRES_TUPLES_OK;
    if (result && !healthy) {
        log::warn("health_check_failed").kv("worker", std::to_string(ctx.worker)).kv("error", pg_error_line(result.get()));
    }

    Json body(json_object());
    if (!body) throw std::bad_alloc();
    json_object_set_new(body.get(), "status", json_string(healthy ? "healthy" : "unhealthy"));
    std::string now = utc_timestamp(std::chrono::system_clock::now(), false);
    json_object_set_new(body.get(), "timestamp", json_string(now.c_str()));
    if (!healthy) json_object_set_new(body.get(), "reason", json_string("database unavailable"));
    return json_reply(healthy ? 200 : 503, body);
}

ipc::Reply handle_ping(const ipc::Request&, WorkerContext&) {
    // The forwarding benchmark's target: a fixed body, no JSON building, no database.
    ipc::Reply reply;
    reply.status = 200;
    reply.headers.emplace_back("content-type", "application/json");
    reply.body = "{\"status\":\"ok\"}";
    return reply;
}

}  // namespace paygate::daemon
