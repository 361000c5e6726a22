// Provider callbacks (docs/callbacks.md): the module verified the capability URL and the
// partner's signature; here the raw callback is stored in the inbox before it is answered 2xx,
// and a status check is queued in the same transaction. A callback is a hint: only the
// provider's answer to that status check ever moves a payment. Duplicates change nothing.
#include "paygate/json.hpp"
#include "paygated/handlers.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/store.hpp"
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
