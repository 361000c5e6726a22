// Handlers of the ZooTicket merchant API (seed 002, docs/partners/zooticket.md) over the payment
// core. The module has verified the merchant's Bearer JWT: request.principal is
// "merchant:<name>". Every answer is in the seed's envelope ({"success", "message", ...}); the
// SQL is here, beside the only handlers that use it.
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include <openssl/rand.h>

#include "paygate/crypto.hpp"
#include "paygate/digest.hpp"
#include "paygated/payment_rules.hpp"
#include "paygated/tokens.hpp"
#include "paygated/zooticket.hpp"

#include "paygate/json.hpp"
#include "paygate/merchant_envelope.hpp"
#include "paygated/handlers.hpp"
#include "paygated/money.hpp"
#include "paygated/store.hpp"
#include "paygated/tasks.hpp"

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
    bool past_expiry = false;
};

std::optional<MerchantPayment> find_merchant_payment(Session& s, const std::string& merchant, const std::string& id) {
    static const char* const kSelect =
        "SELECT z.payment_id, z.core_payment_id, z.order_id, z.metadata::text, z.paid_method, " ZT_UTC("p.created_at")
        ", (SELECT " ZT_UTC("min(e.created_at)") " FROM payment_events e WHERE e.payment_id = p.id"
        " AND e.to_status = 'completed'), p.cancel_reason, z.expires_at <= now()"
        " FROM zooticket_payments z JOIN payments p ON p.id = z.core_payment_id"
        " WHERE z.payment_id = $1 AND z.merchant = $2 AND z.deleted_at IS NULL";
    PgResult r = s.exec(kSelect, {id, merchant});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    return MerchantPayment{value(p, 0, 0),    value(p, 0, 1),    value(p, 0, 2),    value(p, 0, 3),
                           nullable(p, 0, 4), value(p, 0, 5), nullable(p, 0, 6), nullable(p, 0, 7),
                           value(p, 0, 8) == "t"};
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
        throw std::runtime_error("no random bytes");
    }
    return out;
}

std::string random_uuid() {
    std::string b = random_bytes(16);
    b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        out.push_back(kHex[(static_cast<unsigned char>(b[i]) >> 4) & 15]);
        out.push_back(kHex[static_cast<unsigned char>(b[i]) & 15]);
    }
    return out;
}

std::string new_payment_id() {
    std::string b = random_bytes(10);
    std::string id = "ZT_";
    for (char c : b) id.push_back(static_cast<char>('0' + static_cast<unsigned char>(c) % 10));
    return id;
}

std::string today_utc() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
    return buf;
}

const zooticket::Settings& require_settings(const WorkerContext& ctx) {
    if (!ctx.zooticket || ctx.zooticket->keyring.empty() || ctx.zooticket->page_url.empty()) {
        // Personal data is never stored unsealed, and a session without a page cannot be paid.
        throw MerchantRefusal{503, "service_unavailable", "Payment sessions are not configured on this gateway"};
    }
    return *ctx.zooticket;
}

bool is_json(const ipc::Request& request) {
    for (const auto& [name, value] : request.headers) {
        if (name != "content-type") continue;
        std::string_view v = value;
        v = v.substr(0, v.find(';'));
        while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
        std::string lower(v);
        for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        return lower == "application/json";
    }
    return false;
}

ipc::Reply validation_failed(const std::vector<zooticket::FieldError>& errors) {
    std::vector<Value> details;
    for (const zooticket::FieldError& e : errors) {
        details.push_back(Value::object({{"field", Value::string(e.field)}, {"message", Value::string(e.message)}}));
    }
    return value_reply(422, Value::object({
        {"success", Value::from_bool(false)},
        {"message", Value::string("Validation failed")},
        {"error", Value::object({{"code", Value::string("validation_error")}, {"details", Value::array(std::move(details))}})},
    }));
}

// The merchant's clients row ("zt.<merchant>"), made on its first session.
std::string merchant_client(Session& s, const std::string& merchant) {
    PgResult known = s.exec("SELECT client_id FROM zooticket_merchants WHERE name = $1", {merchant});
    if (PQntuples(known.get()) == 1) return value(known.get(), 0, 0);
    const std::string name = std::string(kMerchantClientPrefix) + merchant;
    PgResult made = s.exec("INSERT INTO clients (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id", {name});
    // paygatectl refuses this name to client tokens; a client made so before that rule is never
    // taken over (an operator must rename it).
    if (PQntuples(made.get()) != 1) throw std::runtime_error("clients name " + name + " is taken");
    std::string client_id = value(made.get(), 0, 0);
    s.exec("INSERT INTO zooticket_merchants (name, client_id) VALUES ($1, $2::bigint)", {merchant, client_id});
    return client_id;
}

ipc::Reply session_created(const std::string& payment_id, const std::string& session_id, const std::string& status,
                           const std::string& confirmation_url, const std::string& expires_at) {
    return value_reply(201, Value::object({
        {"success", Value::from_bool(true)},
        {"message", Value::string("Payment session created successfully")},
        {"data", Value::object({{"payment_id", Value::string(payment_id)},
                                {"session_id", Value::string(session_id)},
                                {"status", Value::string(status)},
                                {"confirmation_url", Value::string(confirmation_url)},
                                {"expires_at", Value::string(expires_at)}})},
    }));
}

std::string unhex_bytea(const std::string& text) {   // PostgreSQL's "\x…" text form of bytea
    std::string out;
    auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    for (std::size_t i = 2; i + 1 < text.size(); i += 2) out.push_back(static_cast<char>(nibble(text[i]) * 16 + nibble(text[i + 1])));
    return out;
}

std::string hex_bytea(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    for (char c : bytes) {
        out.push_back(kHex[(static_cast<unsigned char>(c) >> 4) & 15]);
        out.push_back(kHex[static_cast<unsigned char>(c) & 15]);
    }
    return out;
}

// The payment's rows locked for a change (zooticket_payments and payments, FOR UPDATE).
struct Locked {
    std::string core_id;
    std::string core_status;
    std::string cancel_reason;
    std::string currency;
    std::string amount_minor;
    std::string method_id;
    bool past_expiry = false;
};

std::optional<Locked> lock_payment(Session& s, const std::string& merchant, const std::string& id) {
    PgResult r = s.exec(
        "SELECT p.id, p.status, coalesce(p.cancel_reason, ''), p.currency, p.amount_minor, p.method_id,"
        " z.expires_at <= now()"
        " FROM zooticket_payments z JOIN payments p ON p.id = z.core_payment_id"
        " WHERE z.payment_id = $1 AND z.merchant = $2 AND z.deleted_at IS NULL FOR UPDATE",
        {id, merchant});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    return Locked{value(p, 0, 0), value(p, 0, 1), value(p, 0, 2), value(p, 0, 3),
                  value(p, 0, 4), value(p, 0, 5), value(p, 0, 6) == "t"};
}

// The status this surface shows: a pending session past its expires_at is expired even before
// the expiry task has run.
std::string shown_status(const Locked& row) {
    if (row.core_status == "created" && row.past_expiry) return "expired";
    return std::string(merchant_status(row.core_status, row.cancel_reason));
}

// The seed's full payment (the PATCH answer): every field, the customer opened.
Value full_payment(Session& s, const zooticket::Settings& settings, const std::string& merchant, const std::string& id,
                   const std::vector<std::string>& updated_fields) {
    PgResult r = s.exec(
        "SELECT z.order_id, p.status, coalesce(p.cancel_reason, ''), p.currency, p.amount_minor, p.refunded_minor,"
        " z.paid_method, " ZT_UTC("p.created_at") ", " ZT_UTC("greatest(p.updated_at, z.updated_at)") ","
        " (SELECT " ZT_UTC("min(e.created_at)") " FROM payment_events e WHERE e.payment_id = p.id"
        " AND e.to_status = 'completed'), z.confirmation::text, z.customer_key_id, z.customer_sealed,"
        " z.metadata::text, z.description, z.expires_at <= now()"
        " FROM zooticket_payments z JOIN payments p ON p.id = z.core_payment_id"
        " WHERE z.payment_id = $1 AND z.merchant = $2",
        {id, merchant});
    if (PQntuples(r.get()) != 1) throw std::runtime_error("payment vanished inside its transaction");
    const PGresult* p = r.get();
    const Currency* currency = find_currency(value(p, 0, 3));
    if (currency == nullptr) throw std::runtime_error("payment with unknown currency in the database");
    Value confirmation, metadata, customer = Value::object({});
    json::ParseError error;
    if (!json::parse(value(p, 0, 10), confirmation, error) || !json::parse(value(p, 0, 13), metadata, error)) {
        throw std::runtime_error("bad jsonb in zooticket_payments");
    }
    if (std::optional<std::string> key_id = nullable(p, 0, 11)) {
        std::optional<std::string> opened = settings.keyring.open(*key_id, unhex_bytea(value(p, 0, 12)), "customer:" + id);
        if (!opened || !json::parse(*opened, customer, error)) {
            throw std::runtime_error("customer data of " + id + " cannot be opened (key " + *key_id + " removed?)");
        }
    }
    std::vector<std::pair<std::string, Value>> meta(metadata.members().begin(), metadata.members().end());
    std::vector<Value> fields;
    for (const std::string& f : updated_fields) fields.push_back(Value::string(f));
    meta.emplace_back("updated_fields", Value::array(std::move(fields)));
    std::string status = value(p, 0, 1) == "created" && value(p, 0, 15) == "t"
                             ? "expired"
                             : std::string(merchant_status(value(p, 0, 1), value(p, 0, 2)));
    std::optional<std::string> paid = nullable(p, 0, 6);
    std::optional<std::string> captured = nullable(p, 0, 9);
    return Value::object({
        {"payment_id", Value::string(id)},
        {"order_id", Value::string(value(p, 0, 0))},
        {"status", Value::string(status)},
        {"amount", money(value(p, 0, 4), *currency)},
        {"refunded_amount", money(value(p, 0, 5), *currency)},
        {"payment_method", paid ? Value::string(*paid) : Value::null()},
        {"created_at", Value::string(value(p, 0, 7))},
        {"updated_at", Value::string(value(p, 0, 8))},
        {"captured_at", captured ? Value::string(*captured) : Value::null()},
        {"confirmation", std::move(confirmation)},
        {"customer", std::move(customer)},
        {"metadata", Value::object(std::move(meta))},
        {"description", Value::string(value(p, 0, 14))},
    });
}

// PUT and PATCH: amount and customer only while the payment is pending (the core allows an
// amount change only in `created`, and PostgreSQL enforces it too); metadata and description in
// any status. Anything else: 400.
ipc::Reply change_payment(const ipc::Request& request, WorkerContext& ctx, bool partial) {
    std::string merchant = require_merchant(request);
    std::string id = require_payment_id(request);
    const zooticket::Settings& settings = require_settings(ctx);
    if (!is_json(request)) throw MerchantRefusal{415, "unsupported_media_type", "Content-Type must be application/json"};
    zooticket::UpdateValidation checked = zooticket::validate_update(request.body, partial);
    if (!checked.request) return validation_failed(checked.errors);
    const zooticket::UpdateRequest& req = *checked.request;

    Session s(ctx.db);
    s.begin();
    std::optional<Locked> row = lock_payment(s, merchant, id);
    if (!row) throw MerchantRefusal{404, "not_found", "Payment not found"};
    const std::string status = shown_status(*row);
    const bool amount_changes = req.amount && req.amount->minor_units != row->amount_minor;
    if (req.amount && req.amount->currency->code != row->currency) {
        return validation_failed({{"amount.currency", "must be the payment's currency (" + row->currency + ")"}});
    }
    if ((amount_changes || req.customer_json) && status != "pending") {
        throw MerchantRefusal{400, "invalid_state",
                              "Payment cannot be updated in its current status (" + status + ")"};
    }
    if (amount_changes) {
        MoneyInfo money_info;
        money_info.method_id = row->method_id;
        money_info.amount = *req.amount;
        update_money(s, row->core_id, money_info);
        insert_event(s, PaymentEvent{row->core_id, "edit", row->core_status, row->core_status, "merchant:" + merchant,
                                     std::nullopt, std::nullopt});
    }
    std::optional<std::string> sealed;
    if (req.customer_json) sealed = hex_bytea(settings.keyring.seal(*req.customer_json, "customer:" + id));
    s.exec("UPDATE zooticket_payments SET description = coalesce($3, description),"
           " metadata = coalesce($4::jsonb, metadata),"
           " customer_sealed = coalesce($5::bytea, customer_sealed),"
           " customer_key_id = CASE WHEN $5 IS NULL THEN customer_key_id ELSE $6 END"
           " WHERE payment_id = $1 AND merchant = $2",
           {id, merchant, req.description, req.metadata_json, sealed, settings.keyring.sealing_key_id()});
    Value data = full_payment(s, settings, merchant, id, req.updated_fields);
    s.commit();
    // The seed answers PUT with "Payment retrieved successfully": its words are the contract.
    return value_reply(200, Value::object({
        {"success", Value::from_bool(true)},
        {"message", Value::string(partial ? "Payment updated successfully" : "Payment retrieved successfully")},
        {"data", std::move(data)},
    }));
}

}  // namespace

ipc::Reply handle_zooticket_payment_put(const ipc::Request& request, WorkerContext& ctx) {
    return merchant_guarded(request, ctx, [&] { return change_payment(request, ctx, false); });
}

ipc::Reply handle_zooticket_payment_patch(const ipc::Request& request, WorkerContext& ctx) {
    return merchant_guarded(request, ctx, [&] { return change_payment(request, ctx, true); });
}

// Only cancelled (also expired) or failed payments. The personal data is erased and the payment
// hidden from this API; the payments row, its history (payment_events) and provider operations
// stay: they are the ledger accounting and reconciliation need, and hold no personal data.
ipc::Reply handle_zooticket_payment_delete(const ipc::Request& request, WorkerContext& ctx) {
    return merchant_guarded(request, ctx, [&] {
        std::string merchant = require_merchant(request);
        std::string id = require_payment_id(request);
        Session s(ctx.db);
        s.begin();
        std::optional<Locked> row = lock_payment(s, merchant, id);
        if (!row) throw MerchantRefusal{404, "not_found", "Payment not found"};
        const std::string status = shown_status(*row);
        // A pending session past its expiry is not deletable until the expiry has cancelled it in
        // the core: the payment could still be mid-payment at the provider.
        if (row->core_status != "cancelled" && row->core_status != "declined" && row->core_status != "reversed") {
            throw MerchantRefusal{400, "invalid_state",
                                  "Payment cannot be deleted in its current status (" + status +
                                      "): only cancelled or failed payments can"};
        }
        PgResult r = s.exec("UPDATE zooticket_payments SET deleted_at = now(), customer_sealed = NULL,"
                            " customer_key_id = NULL WHERE payment_id = $1 AND merchant = $2"
                            " RETURNING " ZT_UTC("deleted_at"),
                            {id, merchant});
        std::string deleted_at = value(r.get(), 0, 0);
        s.commit();
        return value_reply(200, Value::object({
            {"success", Value::from_bool(true)},
            {"message", Value::string("Payment deleted successfully")},
            {"data", Value::object({{"payment_id", Value::string(id)}, {"deleted_at", Value::string(deleted_at)}})},
        }));
    });
}

ipc::Reply handle_zooticket_session_create(const ipc::Request& request, WorkerContext& ctx) {
    return merchant_guarded(request, ctx, [&] {
        std::string merchant = require_merchant(request);
        const zooticket::Settings& settings = require_settings(ctx);
        if (!is_json(request)) {
            throw MerchantRefusal{415, "unsupported_media_type", "Content-Type must be application/json"};
        }
        zooticket::Validation checked =
            zooticket::validate_session(request.body, zooticket::Rules{today_utc(), settings.allow_http_loopback});
        if (!checked.request) return validation_failed(checked.errors);
        const zooticket::SessionRequest& req = *checked.request;

        Session s(ctx.db);
        s.begin();
        // Concurrent POSTs of one session_id queue here; the unique constraint is the last word.
        s.exec("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", {"zooticket\n" + merchant + "\n" + req.session_id});
        PgResult existing = s.exec(
            "SELECT payment_id, request_sha256, customer_key_id, page_token_sealed, " ZT_UTC("expires_at")
            ", deleted_at IS NOT NULL FROM zooticket_payments WHERE merchant = $1 AND session_id = $2",
            {merchant, req.session_id});
        if (PQntuples(existing.get()) == 1) {
            const PGresult* e = existing.get();
            if (value(e, 0, 1) != req.fingerprint || value(e, 0, 5) == "t") {
                throw MerchantRefusal{422, "session_id_reused",
                                      "session_id " + req.session_id + " was used for another payment session"};
            }
            // The same session again: the same answer as the first, byte for byte (its status
            // is the creation's "pending"; GET tells the status now). The page token is kept
            // sealed for this.
            std::string payment_id = value(e, 0, 0);
            std::optional<std::string> token =
                settings.keyring.open(value(e, 0, 2), unhex_bytea(value(e, 0, 3)), "page:" + payment_id);
            if (!token) throw std::runtime_error("page token of " + payment_id + " cannot be opened (key removed?)");
            s.commit();
            return session_created(payment_id, req.session_id, "pending", settings.page_url + "/" + *token,
                                   value(e, 0, 4));
        }

        std::string client_id = merchant_client(s, merchant);
        CreateRequest core;
        core.idempotency_token = random_uuid();
        core.money.method_id = "zooticket-session";
        core.money.amount = req.total;
        core.recipient_id = std::string(kMerchantClientPrefix) + merchant;
        core.sender_id = "zt-customer";
        std::string core_id = create_payment(s, client_id, "merchant:" + merchant, core);

        std::string payment_id;
        for (int attempt = 0; attempt < 5 && payment_id.empty(); ++attempt) {
            std::string candidate = new_payment_id();
            PgResult taken = s.exec("SELECT 1 FROM zooticket_payments WHERE payment_id = $1", {candidate});
            if (PQntuples(taken.get()) == 0) payment_id = candidate;
        }
        if (payment_id.empty()) throw std::runtime_error("no free payment id after 5 draws");
        const std::string token = crypto::base64url_encode(random_bytes(32));
        const std::string sealed_token = settings.keyring.seal(token, "page:" + payment_id);
        const std::string sealed_customer = settings.keyring.seal(req.customer_json, "customer:" + payment_id);
        std::string methods = "[";
        for (const std::string& m : req.payment_methods) {
            if (methods.size() > 1) methods += ",";
            json::append_string(methods, m);
        }
        methods += "]";
        Value confirmation = Value::object({{"type", Value::string("redirect")},
                                            {"return_url", Value::string(req.return_url)},
                                            {"cancel_url", Value::string(req.cancel_url)}});
        PgResult inserted = s.exec(
            "INSERT INTO zooticket_payments (payment_id, core_payment_id, merchant, session_id, request_sha256,"
            " order_id, description, items, payment_methods, confirmation, customer_sealed, customer_key_id,"
            " page_token_sha256, page_token_sealed, expires_at)"
            " VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11::bytea, $12, $13,"
            " $14::bytea, now() + make_interval(secs => $15::int))"
            " RETURNING " ZT_UTC("expires_at"),
            {payment_id, core_id, merchant, req.session_id, req.fingerprint, req.order_id, req.description,
             json::serialize(req.items_value), methods, json::serialize(confirmation), hex_bytea(sealed_customer),
             settings.keyring.sealing_key_id(), sha256_hex(token), hex_bytea(sealed_token),
             std::to_string(settings.session_lifetime_s)});
        std::string expires_at = value(inserted.get(), 0, 0);
        // The expiry, durable: committed with the session, run by any daemon's task runner.
        enqueue_task(s, kTaskZooticketSessionExpiry, core_id, std::string(kTaskZooticketSessionExpiry) + ":" + core_id,
                     "{}", settings.session_lifetime_s * 1000U);
        s.commit();
        return session_created(payment_id, req.session_id, "pending", settings.page_url + "/" + token, expires_at);
    });
}

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
            {"status", Value::string(core->status == "created" && found->past_expiry
                                         ? std::string("expired")
                                         : std::string(merchant_status(core->status, found->cancel_reason.value_or(""))))},
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
