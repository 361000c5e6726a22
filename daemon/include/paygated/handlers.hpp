// Request handlers and the one table that maps a route name to its handler.
//
// Adding a feature: write its handlers in a handlers_<area>.cpp, declare them below, and add one
// line per route to the table in handlers.cpp (the route itself lives in ipc's routes.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <jansson.h>

#include "paygate/ipc.hpp"
#include "paygated/db.hpp"

namespace paygate::daemon {

// What a handler gets besides the request: state owned by the worker thread running it.
struct WorkerContext {
    int worker = 0;
    Db& db;
};

using Handler = ipc::Reply (*)(const ipc::Request& request, WorkerContext& ctx);

// Where a handler runs. Inline handlers run on the broker thread the moment their request
// arrives, skipping the hand-off to a worker: only for handlers that never block (no database,
// no I/O, no locks), because while one runs no other request is read or answered.
enum class Runs { OnWorker, Inline };

struct HandlerEntry {
    std::string_view route;  // a route name from routes.hpp
    Handler handler;
    Runs runs = Runs::OnWorker;
};

// Every route paygated serves.
const std::vector<HandlerEntry>& handler_table();

// The entry of `route` in handler_table(), or nullptr.
const HandlerEntry* find_handler(std::string_view route);

// Runs the handler of request.route from `table`: 404 not_found for a route it does not know,
// 500 internal_error (no details) when the handler throws. The reply always carries request.id
// and a content-type header.
ipc::Reply dispatch(const std::vector<HandlerEntry>& table, const ipc::Request& request, WorkerContext& ctx);
inline ipc::Reply dispatch(const ipc::Request& request, WorkerContext& ctx) {
    return dispatch(handler_table(), request, ctx);
}

// Helpers for handlers.
struct JsonDeleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDeleter>;

// A reply whose body is `body` serialized compactly, with content-type application/json.
ipc::Reply json_reply(std::uint16_t status, const Json& body);

// --- handlers_system.cpp ---
ipc::Reply handle_health(const ipc::Request& request, WorkerContext& ctx);  // GET /health
ipc::Reply handle_ping(const ipc::Request& request, WorkerContext& ctx);    // GET /ping

}  // namespace paygate::daemon
