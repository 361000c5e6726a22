// Handlers of the ZooTicket merchant API (seed 002, docs/partners/zooticket.md) over the payment
// core. The module has verified the merchant's Bearer JWT: request.principal is
// "merchant:<name>". Every answer is in the seed's envelope ({"success", "message", ...}); the
// SQL is here, beside the only handlers that use it.
#include <string>
#include <utility>
#include <vector>

#include "paygate/json.hpp"
#include "paygate/merchant_envelope.hpp"
#include "paygated/handlers.hpp"
#include "paygated/money.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

std::optional<std::string> merchant_principal(std::string_view principal) {
    constexpr std::string_view kPrefix = "merchant:";
    if (principal.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
    std::string_view name = principal.substr(kPrefix.size());
    if (name.empty() || name.size() > kMaxMerchantName) return std::nullopt;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok) return std::nullopt;
    }
    return std::string(name);
}

bool is_merchant_payment_id(std::string_view id) {
    if (id.size() != 13 || id.substr(0, 3) != "ZT_") return false;
    for (char c : id.substr(3)) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

std::string_view merchant_status(std::string_view core_status, std::string_view cancel_reason) {
    if (core_status == "created") return "pending";
    if (core_status == "bank_processing") return "processing";
    if (core_status == "completed") return "succeeded";
    if (core_status == "declined") return "failed";
    if (core_status == "cancelled") return cancel_reason == "expired" ? "expired" : "cancelled";
    if (core_status == "reversed") return "cancelled";
    return "failed";
}

namespace {

using json::Value;

// A refusal of this surface, answered in its envelope.
struct MerchantRefusal {
    std::uint16_t status;
    std::string code;
    std::string message;
};

// guarded()'s own answers (503 without a database, 500) come as {"code","message"}: rewritten
// into this surface's envelope, same status and words.
ipc::Reply in_envelope(ipc::Reply reply) {
    if (reply.status < 400) return reply;
    json::Value doc;
    json::ParseError error;
    if (!json::parse(reply.body, doc, error) || doc.find("success") != nullptr) return reply;
    const Value* code = doc.find("code");
    const Value* message = doc.find("message");
    if (code == nullptr || message == nullptr || !code->is(json::Type::String) || !message->is(json::Type::String)) {
        return reply;
    }
    reply.body = merchant_envelope::error_body(code->text(), message->text());
    return reply;
}

ipc::Reply merchant_guarded(const ipc::Request& request, WorkerContext& ctx, const std::function<ipc::Reply()>& fn) {
    return in_envelope(guarded(request, ctx, [&]() -> ipc::Reply {
        try {
            return fn();
        } catch (const MerchantRefusal& refusal) {
            return merchant_envelope::error_reply(request.id, refusal.status, refusal.code, refusal.message);
        }
    }));
}

std::string require_merchant(const ipc::Request& request) {
    std::optional<std::string> merchant = merchant_principal(request.principal);
    // The module lets no request of these routes through without a verified token: this is a
    // second line, for a daemon reached some other way.
    if (!merchant) throw MerchantRefusal{401, "unauthorized", "Merchant authentication required"};
    return *merchant;
}

std::string require_payment_id(const ipc::Request& request) {
    const std::string* id = request.param("payment_id");
    if (id == nullptr || !is_merchant_payment_id(*id)) {
        throw MerchantRefusal{422, "validation_error", "payment_id must be ZT_ followed by 10 digits"};
    }
    return *id;
}

Value money(const std::string& minor, const Currency& currency) {
    return Value::object({{"value", Value::string(format_amount(minor, currency))},
                          {"currency", Value::string(std::string(currency.code))}});
}

#define ZT_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

struct MerchantPayment {
    std::string payment_id;
    std::string core_payment_id;
    std::string order_id;
    std::string metadata_json;
    std::optional<std::string> paid_method;
    std::string created_at;
    std::optional<std::string> captured_at;
    std::optional<std::string> cancel_reason;
};

std::optional<MerchantPayment> find_merchant_payment(Session& s, const std::string& merchant, const std::string& id) {
    static const char* const kSelect =
        "SELECT z.payment_id, z.core_payment_id, z.order_id, z.metadata::text, z.paid_method, " ZT_UTC("p.created_at")
        ", (SELECT " ZT_UTC("min(e.created_at)") " FROM payment_events e WHERE e.payment_id = p.id"
        " AND e.to_status = 'completed'), p.cancel_reason"
        " FROM zooticket_payments z JOIN payments p ON p.id = z.core_payment_id"
        " WHERE z.payment_id = $1 AND z.merchant = $2 AND z.deleted_at IS NULL";
    PgResult r = s.exec(kSelect, {id, merchant});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    return MerchantPayment{value(p, 0, 0),    value(p, 0, 1),    value(p, 0, 2),    value(p, 0, 3),
                           nullable(p, 0, 4), value(p, 0, 5), nullable(p, 0, 6), nullable(p, 0, 7)};
}

}  // namespace

ipc::Reply handle_zooticket_payment_get(const ipc::Request& request, WorkerContext& ctx) {
    return merchant_guarded(request, ctx, [&] {
        std::string merchant = require_merchant(request);
        std::string id = require_payment_id(request);
        Session s(ctx.db);
        std::optional<MerchantPayment> found = find_merchant_payment(s, merchant, id);
        // Another merchant's payment is not found either: ids are not a way to learn about others.
        if (!found) throw MerchantRefusal{404, "not_found", "Payment not found"};
        std::optional<PaymentRow> core = find_payment(s, found->core_payment_id, false);
        if (!core) throw std::runtime_error("zooticket payment without its core payment");
        const Currency* currency = find_currency(core->currency);
        if (currency == nullptr) throw std::runtime_error("payment with unknown currency in the database");
        Value metadata;
        json::ParseError error;
        if (!json::parse(found->metadata_json, metadata, error)) throw std::runtime_error("bad metadata in the database");
        Value data = Value::object({
            {"payment_id", Value::string(found->payment_id)},
            {"order_id", Value::string(found->order_id)},
            {"status", Value::string(std::string(merchant_status(core->status, found->cancel_reason.value_or(""))))},
            {"amount", money(core->amount_minor, *currency)},
            {"refunded_amount", money(core->refunded_minor, *currency)},
            {"payment_method", found->paid_method ? Value::string(*found->paid_method) : Value::null()},
            {"created_at", Value::string(found->created_at)},
            {"captured_at", found->captured_at ? Value::string(*found->captured_at) : Value::null()},
            {"metadata", std::move(metadata)},
        });
        return value_reply(200, Value::object({{"success", Value::from_bool(true)},
                                               {"message", Value::string("Payment retrieved successfully")},
                                               {"data", std::move(data)}}));
    });
}

}  // namespace paygate::daemon
