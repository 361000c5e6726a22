// Provider callbacks (docs/callbacks.md): the module verified the capability URL and the
// partner's signature; here the raw callback is stored in the inbox before it is answered 2xx,
// and a status check is queued in the same transaction. A callback is a hint: only the
// provider's answer to that status check ever moves a payment. Duplicates change nothing.
#include "paygate/json.hpp"
#include "paygated/handlers.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/store.hpp"
#include "paygated/log.hpp"
#include "paygated/tasks.hpp"

namespace paygate::daemon {

ipc::Reply handle_callback_sky_technologies(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        const std::string provider = "sky-technologies";
        if (request.principal != "partner:" + provider) throw Refusal{403, "acces_error", "access denied"};
        const std::string* ref = request.param("operation_id");
        const std::string* webhook_id = request.header("webhook-id");
        if (!ref || !webhook_id || webhook_id->empty()) throw Refusal{400, "validation_error", "not a verified callback"};
        std::optional<std::string> operation_id = canonical_uuid(*ref);
        if (!operation_id) throw Refusal{400, "validation_error", "callback URL reference is not an operation id"};

        json::Value doc;
        json::ParseError error;
        if (!json::parse(request.body, doc, error) || !doc.is(json::Type::Object)) {
            throw Refusal{400, "validation_error", "body: not a JSON object"};
        }
        const json::Value* rid = doc.find("request_id");
        std::optional<std::string> request_id =
            rid && rid->is(json::Type::String) ? canonical_uuid(rid->text()) : std::nullopt;
        if (!request_id) throw Refusal{400, "validation_error", "request_id: must be a UUID"};
        // The URL was minted for one operation: a callback about another is not this URL's to give.
        if (*request_id != *operation_id) {
            throw Refusal{400, "validation_error", "request_id does not match the callback URL's operation"};
        }

        Session s(ctx.db);
        s.begin();
        std::optional<Operation> op = find_operation(s, *operation_id, false);
        if (!op || op->provider != provider) throw Refusal{404, "not_found", "operation " + *operation_id + " not found"};
        PgResult stored = s.exec(
            "INSERT INTO callback_inbox (provider, webhook_id, request_id, operation_id, body)"
            " VALUES ($1::text, $2::text, $3::uuid, $4::uuid, $5::text) ON CONFLICT DO NOTHING RETURNING id",
            {provider, *webhook_id, *request_id, op->id, request.body});
        bool fresh = PQntuples(stored.get()) == 1;
        if (fresh) {
            enqueue_task(s, kTaskPaymentStatus, op->payment_id,
                         std::string(kTaskPaymentStatus) + ":callback:" + value(stored.get(), 0, 0),
                         "{\"operation_id\":\"" + op->id + "\"}");
        }
        s.commit();
        return value_reply(200, json::Value::object({{"status", json::Value::string(fresh ? "accepted" : "duplicate")}}));
    });
}

}  // namespace paygate::daemon

namespace paygate::daemon {

// mserver notifications (seed 003; docs/providers/mserver.md). The module checked app_id and
// access_token. The notification is stored (unique on payment id + type + created_at) and a task
// queued to re-read the payment from mserver, in one transaction, before the 2xx: nothing in the
// body itself ever moves a payment.
ipc::Reply handle_callback_mserver(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        const std::string provider = "mserver";
        if (request.principal != "partner:" + provider) throw Refusal{403, "acces_error", "access denied"};
        json::Value doc;
        json::ParseError error;
        if (!json::parse(request.body, doc, error) || !doc.is(json::Type::Object)) {
            throw Refusal{400, "validation_error", "body: not a JSON object"};
        }
        auto text = [](const json::Value* v) -> std::string {
            if (!v) return {};
            return v->is(json::Type::String) || v->is(json::Type::Number) ? v->text() : std::string();
        };
        const json::Value* payment = doc.find("payment");
        if (!payment || !payment->is(json::Type::Object)) throw Refusal{400, "validation_error", "payment: must be an object"};
        std::string wallet_id = text(payment->find("id"));
        std::string type = text(doc.find("type"));
        std::string created_at = text(doc.find("created_at"));
        if (wallet_id.empty() || wallet_id.size() > 64 ||
            wallet_id.find_first_not_of("0123456789abcdefABCDEF-") != std::string::npos) {
            throw Refusal{400, "validation_error", "payment.id: must be mserver's payment id"};
        }
        // Bounded so the inbox key (id|type|created_at) stays within webhook_id's 128 characters.
        if (type.empty() || type.size() > 16) throw Refusal{400, "validation_error", "type: must be a notification type"};
        if (created_at.empty() || created_at.size() > 40) throw Refusal{400, "validation_error", "created_at: must be a time"};
        std::optional<std::string> client_id = canonical_uuid(text(payment->find("client_payment_id")));

        Session s(ctx.db);
        s.begin();
        // Our operation, when the notification names one of ours (by client_payment_id or mserver's id).
        PgResult found = s.exec(
            "SELECT id, payment_id FROM provider_operations WHERE provider = 'mserver'"
            " AND (id = $1::uuid OR provider_ref = $2::text) LIMIT 1",
            {client_id, wallet_id});
        std::optional<std::string> op_id, payment_id;
        if (PQntuples(found.get()) == 1) {
            op_id = value(found.get(), 0, 0);
            payment_id = value(found.get(), 0, 1);
        }
        std::string key = wallet_id + "|" + type + "|" + created_at;
        PgResult stored = s.exec(
            "INSERT INTO callback_inbox (provider, webhook_id, request_id, operation_id, body, provider_payment_id,"
            " notification_type, event_created_at)"
            " VALUES ($1::text, $2::text, $3::uuid, $4::uuid, $5::text, $6::text, $7::text, $8::text)"
            " ON CONFLICT DO NOTHING RETURNING id",
            {provider, key, client_id, op_id, request.body, wallet_id, type, created_at});
        bool fresh = PQntuples(stored.get()) == 1;
        if (fresh) {
            std::string inbox_id = value(stored.get(), 0, 0);
            s.exec("INSERT INTO tasks (kind, payment_id, operation_key, payload)"
                   " VALUES ($1::text, $2::uuid, $3::text, jsonb_build_object('inbox_id', $4::text))"
                   " ON CONFLICT (operation_key) DO NOTHING",
                   {std::string(kTaskMserverNotification), payment_id,
                    std::string(kTaskMserverNotification) + ":" + inbox_id, inbox_id});
        }
        s.commit();
        if (!op_id) {
            log::warn("mserver_notification_unknown_payment").kv("mserver_payment_id", wallet_id).kv("type", type);
        }
        return value_reply(200, json::Value::object({{"status", json::Value::string(fresh ? "accepted" : "duplicate")}}));
    });
}

}  // namespace paygate::daemon
