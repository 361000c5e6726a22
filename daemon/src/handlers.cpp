// The route → handler table and the dispatcher every request goes through.
#include "paygated/handlers.hpp"

#include <cstdlib>
#include <exception>
#include <memory>

#include "paygate/json_error.hpp"
#include "paygate/routes.hpp"
#include "paygated/log.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

const std::vector<HandlerEntry>& handler_table() {
    static const std::vector<HandlerEntry> table = {
        {"health", handle_health},
        {"ping", handle_ping, Runs::Inline},
        {"payment.create", handle_payment_create},
        {"payment.retrieve", handle_payment_retrieve},
        {"payment.status", handle_payment_status},
        {"payment.cancel", handle_payment_cancel},
        {"payment.edit", handle_payment_edit},
        {"payment.accept", handle_payment_accept},
        {"payment.extra_charge", handle_payment_extra_charge},
        {"payment.refund", handle_payment_refund},
        {"zooticket.payment.get", handle_zooticket_payment_get},
        {"zooticket.session.create", handle_zooticket_session_create},
        {"zooticket.payment.put", handle_zooticket_payment_put},
        {"zooticket.payment.patch", handle_zooticket_payment_patch},
        {"zooticket.payment.delete", handle_zooticket_payment_delete},
        {"zooticket.page.show", handle_zooticket_page_show},
        {"zooticket.page.pay", handle_zooticket_page_pay},
        {"zooticket.page.cancel", handle_zooticket_page_cancel},
        {"callback.sky_technologies", handle_callback_sky_technologies},
        {"callback.mserver", handle_callback_mserver},
        {"whitebird.order", handle_whitebird_order},
        {"whitebird.timeout", handle_whitebird_timeout},
        {routes::kAuthTokensRoute, handle_auth_tokens, Runs::Inline},  // internal: the module's token poll, from memory
    };
    return table;
}

const HandlerEntry* find_handler(std::string_view route) {
    for (const HandlerEntry& e : handler_table()) {
        if (e.route == route) return &e;
    }
    return nullptr;
}

namespace {

bool has_header(const ipc::Reply& reply, std::string_view name) {
    for (const auto& [key, value] : reply.headers) {
        if (key == name) return true;
    }
    return false;
}

}  // namespace

ipc::Reply dispatch(const std::vector<HandlerEntry>& table, const ipc::Request& request, WorkerContext& ctx) {
    const HandlerEntry* entry = nullptr;
    for (const HandlerEntry& e : table) {
        if (e.route == request.route) {
            entry = &e;
            break;
        }
    }
    ipc::Reply reply;
    if (!entry) {
        reply = ipc::error_reply(request.id, 404, "not_found", "no such route");
    } else {
        try {
            reply = entry->handler(request, ctx);
        } catch (const std::exception& e) {
            log::error("handler_exception")
                .kv("request_id", request.request_id)
                .kv("route", request.route)
                .kv("worker", std::to_string(ctx.worker))
                .kv("what", e.what());
            reply = ipc::error_reply(request.id, 500, "internal_error", "internal error");
        } catch (...) {
            log::error("handler_exception")
                .kv("request_id", request.request_id)
                .kv("route", request.route)
                .kv("worker", std::to_string(ctx.worker));
            reply = ipc::error_reply(request.id, 500, "internal_error", "internal error");
        }
    }
    reply.id = request.id;
    if (!has_header(reply, "content-type")) reply.headers.emplace_back("content-type", "application/json");
    return reply;
}

ipc::Reply json_reply(std::uint16_t status, const Json& body) {
    ipc::Reply reply;
    reply.status = status;
    reply.headers.emplace_back("content-type", "application/json");
    char* text = body ? json_dumps(body.get(), JSON_COMPACT) : nullptr;
    if (!text) throw std::bad_alloc();
    std::unique_ptr<char, decltype(&std::free)> owned(text, &std::free);
    reply.body = text;
    return reply;
}

ipc::Reply value_reply(std::uint16_t status, const json::Value& body) {
    ipc::Reply reply;
    reply.status = status;
    reply.headers.emplace_back("content-type", "application/json");
    reply.body = json::serialize(body);
    return reply;
}

ipc::Reply guarded(const ipc::Request& request, WorkerContext& ctx, const std::function<ipc::Reply()>& fn) {
    try {
        return fn();
    } catch (const Refusal& r) {
        return ipc::error_reply(request.id, r.status, r.code, r.message);
    } catch (const DbUnavailable&) {
        // Db has logged why (db_unavailable / db_connection_lost).
        return ipc::error_reply(request.id, 503, "service_unavailable", "the payment database is unavailable; retry later");
    } catch (const DbError& e) {
        if (e.deadline_exceeded()) {
            // A lock wait or a statement outlived the request's deadline: the transaction rolled
            // back, and the module answers (or has answered) 504 itself.
            log::warn("db_deadline_exceeded")
                .kv("request_id", request.request_id)
                .kv("route", request.route)
                .kv("worker", std::to_string(ctx.worker))
                .kv("sqlstate", e.sqlstate);
            return ipc::error_reply(request.id, 504, "gateway_timeout",
                                    "the payment core did not finish in time; nothing was changed");
        }
        log::error("db_error")
            .kv("request_id", request.request_id)
            .kv("route", request.route)
            .kv("worker", std::to_string(ctx.worker))
            .kv("sqlstate", e.sqlstate)
            .kv("error", e.what());
        return ipc::error_reply(request.id, 500, "internal_error", "internal error");
    }
}

}  // namespace paygate::daemon
