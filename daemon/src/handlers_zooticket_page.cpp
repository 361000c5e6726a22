// The hosted payment page of the ZooTicket API (confirmation_url, docs/partners/zooticket.md):
// GET /pay/{token} shows the order and the methods; POST /pay/{token}/pay accepts the payment in
// the core (the charge goes to the routed provider, by a durable task); POST /pay/{token}/cancel
// cancels it. The token (43 base64url characters of 32 random bytes) is the only credential: it is
// looked up by its SHA-256 and stops working when the session expires, is paid, or is deleted.
#include <string>
#include <vector>

#include "paygate/digest.hpp"
#include "paygate/json.hpp"
#include "paygated/handlers.hpp"
#include "paygated/money.hpp"
#include "paygated/store.hpp"
#include "paygated/zooticket.hpp"

namespace paygate::daemon {
namespace {

using json::Value;
using zooticket::PageView;

struct PageRow {
    std::string payment_id;
    std::string core_id;
    std::string core_status;
    std::string cancel_reason;
    std::string description;
    std::string items_json;
    std::string methods_json;
    std::string return_url;
    std::string cancel_url;
    std::string currency;
    std::string amount_minor;
    long seconds_left = 0;
};

bool plausible_token(const std::string* token) {
    if (token == nullptr || token->size() != 43) return false;
    for (char c : *token) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) return false;
    }
    return true;
}

std::optional<PageRow> find_page(Session& s, const std::string& token, bool for_update) {
    static const char* const kSelect =
        "SELECT z.payment_id, z.core_payment_id, p.status, coalesce(p.cancel_reason, ''), z.description,"
        " z.items::text, z.payment_methods::text, z.confirmation->>'return_url', z.confirmation->>'cancel_url',"
        " p.currency, p.amount_minor, floor(extract(epoch FROM z.expires_at - now()))::bigint"
        " FROM zooticket_payments z JOIN payments p ON p.id = z.core_payment_id"
        " WHERE z.page_token_sha256 = $1 AND z.deleted_at IS NULL";
    static const std::string kSelectForUpdate = std::string(kSelect) + " FOR UPDATE OF z, p";
    PgResult r = s.exec(for_update ? kSelectForUpdate.c_str() : kSelect, {sha256_hex(token)});
    if (PQntuples(r.get()) == 0) return std::nullopt;
    const PGresult* p = r.get();
    PageRow row{value(p, 0, 0), value(p, 0, 1), value(p, 0, 2), value(p, 0, 3), value(p, 0, 4), value(p, 0, 5),
                value(p, 0, 6), value(p, 0, 7), value(p, 0, 8), value(p, 0, 9), value(p, 0, 10), 0};
    row.seconds_left = std::stol(value(p, 0, 11));
    return row;
}

ipc::Reply html_reply(std::uint16_t status, const std::string& body) {
    ipc::Reply reply;
    reply.status = status;
    reply.headers = {
        {"content-type", "text/html; charset=utf-8"},
        {"Cache-Control", "no-store"},
        // The token is in the URL: never sent on as a Referer, never framed, nothing loaded.
        {"Referrer-Policy", "no-referrer"},
        {"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
    };
    reply.body = body;
    return reply;
}

ipc::Reply redirect(const std::string& location) {
    ipc::Reply reply = html_reply(303, "");
    reply.headers.emplace_back("Location", location);
    return reply;
}

ipc::Reply invalid_link() {
    PageView view;
    view.kind = PageView::Kind::Invalid;
    view.error = "Check the link from the shop, or start the purchase again there.";
    return html_reply(404, zooticket::render_page(view));
}

bool expired(const PageRow& row) {
    return (row.core_status == "created" && row.seconds_left <= 0) ||
           (row.core_status == "cancelled" && row.cancel_reason == "expired");
}

PageView view_of(const PageRow& row, const std::string& token) {
    PageView view;
    view.token = token;
    view.description = row.description;
    const Currency* currency = find_currency(row.currency);
    if (currency == nullptr) throw std::runtime_error("payment with unknown currency in the database");
    view.total = format_amount(row.amount_minor, *currency) + " " + row.currency;
    view.seconds_left = row.seconds_left > 0 ? row.seconds_left : 0;
    view.back_url = row.cancel_url;
    Value items, methods;
    json::ParseError error;
    if (!json::parse(row.items_json, items, error) || !json::parse(row.methods_json, methods, error)) {
        throw std::runtime_error("bad jsonb in zooticket_payments");
    }
    auto text = [](const Value* v) { return v != nullptr && (v->is(json::Type::String) || v->is(json::Type::Number)) ? v->text() : std::string(); };
    for (const Value& item : items.items()) {
        const Value* price = item.find("unit_price");
        std::string visit = text(item.find("visit_date"));
        if (!text(item.find("visit_time")).empty()) visit += " " + text(item.find("visit_time"));
        view.items.push_back({text(item.find("ticket_type")), text(item.find("quantity")),
                              price ? text(price->find("value")) + " " + text(price->find("currency")) : "", visit});
    }
    for (const Value& m : methods.items()) view.methods.push_back(m.text());
    return view;
}

// What the page shows for the session's state: a redirect once it is decided.
ipc::Reply show(const PageRow& row, const std::string& token, const std::string& error = {}) {
    if (expired(row)) {
        PageView view = view_of(row, token);
        view.kind = PageView::Kind::Expired;
        return html_reply(410, zooticket::render_page(view));
    }
    if (row.core_status == "completed") return redirect(row.return_url);
    if (row.core_status != "created" && row.core_status != "bank_processing") return redirect(row.cancel_url);
    PageView view = view_of(row, token);
    view.kind = row.core_status == "created" ? PageView::Kind::Pay : PageView::Kind::Processing;
    view.error = error;
    return html_reply(error.empty() ? 200 : 422, zooticket::render_page(view));
}

}  // namespace

ipc::Reply handle_zooticket_page_show(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        const std::string* token = request.param("token");
        if (!plausible_token(token)) return invalid_link();
        Session s(ctx.db);
        std::optional<PageRow> row = find_page(s, *token, false);
        if (!row) return invalid_link();
        return show(*row, *token);
    });
}

ipc::Reply handle_zooticket_page_pay(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        const std::string* token = request.param("token");
        if (!plausible_token(token) || !ctx.zooticket) return invalid_link();
        const std::string page = ctx.zooticket->page_url + "/" + *token;
        Session s(ctx.db);
        s.begin();
        std::optional<PageRow> row = find_page(s, *token, true);
        if (!row) return invalid_link();
        if (row->core_status != "created" || expired(*row)) return redirect(page);   // shows where it stands
        std::optional<std::string> method = zooticket::form_value(request.body, "method");
        bool offered = false;
        for (const std::string& m : view_of(*row, *token).methods) offered = offered || (method && m == *method);
        if (!offered) return show(*row, *token, "Choose one of the listed payment methods.");
        Value accept_info = Value::object({{"zooticket", Value::object({{"payment_method", Value::string(*method)}})}});
        if (apply_core_action(s, ctx, row->core_id, Action::Accept, "customer:" + row->payment_id, std::nullopt,
                              json::serialize(accept_info))) {
            s.exec("UPDATE zooticket_payments SET paid_method = $2 WHERE payment_id = $1", {row->payment_id, *method});
        }
        s.commit();
        return redirect(page);
    });
}

ipc::Reply handle_zooticket_page_cancel(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        const std::string* token = request.param("token");
        if (!plausible_token(token) || !ctx.zooticket) return invalid_link();
        Session s(ctx.db);
        s.begin();
        std::optional<PageRow> row = find_page(s, *token, true);
        if (!row) return invalid_link();
        if (row->core_status == "created" && !expired(*row)) {
            apply_core_action(s, ctx, row->core_id, Action::Cancel, "customer:" + row->payment_id,
                              CancelReason::UserRequest, "");
            s.commit();
            return redirect(row->cancel_url);
        }
        s.commit();
        return redirect(ctx.zooticket->page_url + "/" + *token);
    });
}

}  // namespace paygate::daemon
