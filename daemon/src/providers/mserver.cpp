// The mserver wallet adapter (seed 003; contract as used in docs/providers/mserver.md): HTTP Basic
// auth, the {meta, data} envelope, the two-phase protocol (prepare: POST /v1/payments, then
// POST /v1/payments/{id}/pay), client_payment_id = our operation id (a lower-case UUID committed
// before the first call), status reads with GET /v1/payments/{id}.
#include "paygated/mserver.hpp"

#include <cctype>
#include <map>
#include <set>

#include "paygate/crypto.hpp"
#include "paygated/log.hpp"

namespace paygate::daemon {

namespace mserver {

namespace {

using K = ProviderAnswer::Kind;

std::string text_of(const json::Value* v) {
    if (!v) return {};
    if (v->is(json::Type::String) || v->is(json::Type::Number)) return v->text();
    return {};
}

// Codes are echoed into logs and last_error: bounded and plain.
std::string clean(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) {
        out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ? c : '_');
    }
    return out;
}

}  // namespace

bool parse_envelope(std::string_view body, Envelope& out, std::string& why) {
    json::Value doc;
    json::ParseError error;
    if (!json::parse(body, doc, error) || !doc.is(json::Type::Object)) {
        why = "answer is not a JSON object";
        return false;
    }
    const json::Value* meta = doc.find("meta");
    if (!meta || !meta->is(json::Type::Object)) {
        why = "answer has no meta object";
        return false;
    }
    const json::Value* code = meta->find("code");
    if (!code || !code->is(json::Type::Number) || code->text().size() > 3 ||
        code->text().find_first_not_of("0123456789") != std::string::npos) {
        why = "meta.code is not an HTTP status";
        return false;
    }
    out.code = std::stol(code->text());
    const json::Value* next = meta->find("next_action");
    out.next_action = next && next->is(json::Type::String) ? next->text() : "";
    out.error_type = clean(text_of(meta->find("error_type")), 64);
    const json::Value* message = meta->find("error_message");
    out.error_message = message && message->is(json::Type::String) ? message->text().substr(0, 200) : "";
    const json::Value* data = doc.find("data");
    out.data = data ? *data : json::Value::null();
    return true;
}

bool read_payment(const json::Value& data, WalletPayment& out, std::string& why) {
    if (!data.is(json::Type::Object)) {
        why = "data is not a payment object";
        return false;
    }
    out.id = text_of(data.find("id"));
    if (out.id.empty() || out.id.size() > 64 || out.id.find_first_not_of("0123456789abcdefABCDEF-") != std::string::npos) {
        why = "payment without a usable id";
        return false;
    }
    out.client_payment_id = text_of(data.find("client_payment_id"));
    out.type = text_of(data.find("type"));
    out.status = text_of(data.find("status"));
    out.decline_reason = text_of(data.find("decline_reason"));
    out.created_at = text_of(data.find("created_at"));
    const json::Value* amount = data.find("amount");
    std::optional<std::string> minor =
        amount && amount->is(json::Type::Number) ? to_minor(amount->text()) : std::nullopt;
    if (!minor) {
        why = "payment amount is not an amount of rubles and kopecks";
        return false;
    }
    out.amount_minor = *minor;
    out.total_minor.clear();
    const json::Value* total = data.find("total");
    if (total && total->is(json::Type::Number)) {
        std::optional<std::string> t = to_minor(total->text());
        if (!t) {
            why = "payment total is not an amount of rubles and kopecks";
            return false;
        }
        out.total_minor = *t;
    }
    if (out.status.empty()) {
        why = "payment without a status";
        return false;
    }
    return true;
}

std::optional<std::string> to_minor(std::string_view s) {
    std::size_t dot = s.find('.');
    std::string_view whole = s.substr(0, dot);
    std::string_view frac = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
    auto digits = [](std::string_view d) { return !d.empty() && d.find_first_not_of("0123456789") == std::string_view::npos; };
    if (!digits(whole) || (dot != std::string_view::npos && !digits(frac)) || whole.size() > 18) return std::nullopt;
    // "100.000" is still a whole number of kopecks; "8.035" is not, and is never rounded.
    while (frac.size() > 2 && frac.back() == '0') frac.remove_suffix(1);
    if (frac.size() > 2) return std::nullopt;
    std::string out(whole);
    out.append(frac);
    out.append(2 - frac.size(), '0');
    std::size_t first = out.find_first_not_of('0');
    return first == std::string::npos ? "0" : out.substr(first);
}

std::string to_rubles(std::string_view minor) {
    std::string m(minor);
    if (m.size() < 3) m.insert(0, 3 - m.size(), '0');
    return m.substr(0, m.size() - 2) + "." + m.substr(m.size() - 2);
}

std::string decline_reason(std::string_view reason) {
    if (reason == "invalid_data" || reason == "insufficient_funds" || reason == "internal_error") {
        return std::string(reason);
    }
    std::string c = clean(reason, 100);
    return c.empty() ? "unspecified" : "mserver_" + c;
}

ProviderAnswer payment_answer(const WalletPayment& p, const std::string& what) {
    if (p.status == "completed") return provider_answer(K::Completed, what + ": completed");
    if (p.status == "declined") return provider_answer(K::Declined, what + ": declined", decline_reason(p.decline_reason));
    if (p.status == "processing") return provider_answer(K::Processing, what + ": processing");
    if (p.status == "created") return provider_answer(K::NotFound, what + ": created (prepared, not paid)");
    return provider_answer(K::Unknown, what + ": unexpected status " + clean(p.status, 32));
}

ProviderAnswer error_answer(long http_status, std::string_view error_type, Phase phase, const std::string& what) {
    std::string code(error_type);
    std::string detail = what + ": HTTP " + std::to_string(http_status) + (code.empty() ? "" : " " + code);
    // The seed's refusals of the payment itself: final, the payment is declined with the code as
    // its reason (nothing was created, or nothing was paid).
    static const char* const kRefusals[] = {
        "missing_type",     "missing_client_payment_id", "missing_amount",        "invalid_amount",
        "missing_service",  "service_not_found",         "missing_parameters",    "missing_destination",
        "destination_not_found", "invalid_destination",  "insufficient_funds",    "empty_request",
    };
    for (const char* r : kRefusals) {
        if (code == r) return provider_answer(K::Declined, detail, code);
    }
    if (phase == Phase::Prepare) {
        // Prepare moves no money and mserver makes at most one payment per client_payment_id:
        // whatever went wrong (auth, 5xx, an unknown code), sending it again is safe.
        return provider_answer(K::NotSent, detail);
    }
    // Pay: refused before anything ran (auth) is safe to send again; otherwise only a status read decides.
    if (http_status == 401 || http_status == 403) return provider_answer(K::NotSent, detail);
    return provider_answer(K::Unknown, detail);
}

std::optional<std::string> prepare_body(const std::string& accept_info_json, const std::string& client_payment_id,
                                        const std::string& amount_minor, std::string& why) {
    json::Value info;
    json::ParseError error;
    if (!json::parse(accept_info_json, info, error) || !info.is(json::Type::Object)) {
        why = "accept_info is not an object";
        return std::nullopt;
    }
    const json::Value* m = info.find("mserver");
    if (!m || !m->is(json::Type::Object)) {
        why = "accept_info has no mserver object (type and its fields)";
        return std::nullopt;
    }
    const json::Value* type = m->find("type");
    if (!type || !type->is(json::Type::String)) {
        why = "accept_info.mserver.type is missing";
        return std::nullopt;
    }
    std::string body = "{\"type\":";
    json::append_string(body, type->text());
    body += ",\"client_payment_id\":";
    json::append_string(body, client_payment_id);
    // The amount is always ours (the accepted payment's), never accept_info's.
    body += ",\"amount\":" + to_rubles(amount_minor);
    for (const char* field : {"service", "parameters", "destination", "message", "card", "store_card"}) {
        if (const json::Value* v = m->find(field)) {
            body += ",\"";
            body += field;
            body += "\":" + json::serialize(*v);
        }
    }
    body += "}";
    return body;
}

std::string pay_body(const std::string& accept_info_json) {
    json::Value info;
    json::ParseError error;
    if (!json::parse(accept_info_json, info, error) || !info.is(json::Type::Object)) return {};
    const json::Value* m = info.find("mserver");
    const json::Value* pay = m && m->is(json::Type::Object) ? m->find("pay") : nullptr;
    if (!pay || !pay->is(json::Type::Object)) return {};
    // The deferred choice: {"type": "inout", "card": ..., "store_card": ...}.
    std::string body = "{";
    bool first = true;
    for (const char* field : {"type", "card", "store_card"}) {
        if (const json::Value* v = pay->find(field)) {
            body += first ? "\"" : ",\"";
            body += field;
            body += "\":" + json::serialize(*v);
            first = false;
        }
    }
    return body + "}";
}

std::string expected_status(const OurOperation& op) {
    if (op.state == "completed") return op.payment_status == "reversed" ? "declined" : "completed";
    if (op.state == "declined") return "declined";
    if (op.state == "processing") return "processing";
    return {};   // new / sending / unknown: created, processing or absent are all possible
}

std::vector<Difference> compare(const std::vector<OurOperation>& ours, const std::vector<WalletPayment>& theirs) {
    std::vector<Difference> out;
    std::map<std::string, const WalletPayment*> by_client_id;
    for (const WalletPayment& w : theirs) by_client_id[w.client_payment_id] = &w;
    std::set<std::string> seen;
    for (const OurOperation& op : ours) {
        seen.insert(op.id);
        auto it = by_client_id.find(op.id);
        std::string ours_text = op.state == "completed" || op.state == "declined"
                                    ? (op.payment_status == "reversed" ? "reversed" : op.state)
                                    : "open:" + op.state;
        std::string want = expected_status(op);
        if (it == by_client_id.end()) {
            // A decline by an error code leaves nothing at mserver; anything else we sent should be there.
            if (!op.provider_ref.empty()) out.push_back({op.payment_id, op.id, op.provider_ref, ours_text, "-"});
            continue;
        }
        const WalletPayment& w = *it->second;
        bool differs = want.empty() ? (w.status == "completed" || w.status == "declined") : w.status != want;
        if (differs) out.push_back({op.payment_id, op.id, w.id, ours_text, w.status});
    }
    for (const WalletPayment& w : theirs) {
        if (!seen.count(w.client_payment_id)) out.push_back({"", w.client_payment_id, w.id, "-", w.status});
    }
    return out;
}

}  // namespace mserver

namespace {

using K = ProviderAnswer::Kind;

std::string first_line(const std::string& text) {
    std::string line = text.substr(0, text.find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

// How many times one task step repeats a prepare that got no answer (the seed: "repeat with the
// same client_payment_id until an answer arrives"); the task's own retries continue after that.
constexpr int kPrepareAttempts = 3;

}  // namespace

Mserver::Mserver(const Config& config, std::shared_ptr<HttpClient> http)
    : name_("mserver"),
      url_(config.mserver_url),
      connect_timeout_ms_(config.provider_connect_timeout_ms),
      timeout_ms_(config.provider_timeout_ms),
      http_(std::move(http)) {
    std::string text, error;
    if (!read_text_file(config.mserver_password_file, text, error)) {
        throw std::runtime_error("mserver_password_file: " + error);
    }
    std::string password = first_line(text);
    if (password.empty()) throw std::runtime_error("mserver_password_file: the first line is empty");
    authorization_ = "Authorization: Basic " + crypto::base64_encode(config.mserver_login + ":" + password);
}

Mserver::Call Mserver::call(const std::string& method, const std::string& path, const std::string& body) {
    HttpRequest request;
    request.method = method;
    request.url = url_ + path;
    request.headers = {"Accept: application/json", authorization_};
    if (method == "POST") {
        request.headers.push_back("Content-Type: application/json");
        // Sent exactly once per attempt of ours: never re-sent behind our back by libcurl.
        request.fresh_connection = true;
    }
    request.body = body;
    request.connect_timeout_ms = connect_timeout_ms_;
    request.timeout_ms = timeout_ms_;
    Call c;
    c.response = http_->post(std::move(request)).get();
    if (c.response.outcome == HttpResponse::Outcome::Answered) {
        c.parsed = mserver::parse_envelope(c.response.body, c.envelope, c.why);
    }
    log::debug("provider_call")
        .kv("provider", name_)
        .kv("method", method)
        .kv("path", path.substr(0, path.find('?')))
        .kv("http_status", c.response.status)
        .kv("ms", c.response.seconds * 1000.0);
    return c;
}

Mserver::Call Mserver::get(const std::string& path_and_query) { return call("GET", path_and_query, ""); }

ProviderAnswer Mserver::charge(const Operation& op) {
    using mserver::Phase;
    // mserver keeps rubles; another currency routed here is a configuration mistake, never converted.
    if (op.currency != "RUB") return provider_answer(K::Declined, "mserver serves RUB only", "currency_not_supported");
    std::string why;
    std::optional<std::string> body = mserver::prepare_body(op.accept_info_json, op.id, op.amount_minor, why);
    if (!body) return provider_answer(K::Declined, "prepare: " + why, "invalid_data");

    // Phase 1, prepare. The same client_payment_id every time: mserver makes at most one payment
    // for it, so repeating after an I/O error cannot make two.
    Call prepared;
    for (int attempt = 1; attempt <= kPrepareAttempts; ++attempt) {
        prepared = call("POST", "/v1/payments", *body);
        if (prepared.response.outcome == HttpResponse::Outcome::Answered) break;
        log::warn("mserver_prepare_retry")
            .kv("operation_id", op.id)
            .kv("attempt", attempt)
            .kv("error", prepared.response.error);
    }
    if (prepared.response.outcome != HttpResponse::Outcome::Answered) {
        return provider_answer(K::NotSent, "prepare: no answer (" + prepared.response.error +
                                    "); sent again later with the same client_payment_id");
    }
    if (!prepared.parsed) {
        return provider_answer(K::NotSent, "prepare: HTTP " + std::to_string(prepared.response.status) + " " + prepared.why);
    }
    const mserver::Envelope& env = prepared.envelope;
    if (prepared.response.status != 200 || env.code != 200) {
        long st = env.code ? env.code : prepared.response.status;
        return mserver::error_answer(st, env.error_type, Phase::Prepare, "prepare");
    }
    mserver::WalletPayment p;
    if (!mserver::read_payment(env.data, p, why)) return provider_answer(K::NotSent, "prepare: " + why);
    if (p.client_payment_id != op.id || p.amount_minor != op.amount_minor) {
        // Not evidence about our payment: never act on it.
        return provider_answer(K::NotSent, "prepare: the answer is about another payment or amount");
    }
    ProviderAnswer result;
    if (p.status != "created") {
        // Prepared and paid before (an earlier attempt's pay whose answer was lost): adopt its status.
        result = mserver::payment_answer(p, "prepare (paid before)");
    } else if (env.next_action != "pay") {
        // "update": mserver wants other payment data first; we cannot change the payer's data.
        result = provider_answer(K::Declined, "prepare: next_action " + env.next_action, "invalid_data");
    } else {
        // Phase 2, pay (with the deferred type choice when accept_info asks for it).
        Call paid = call("POST", "/v1/payments/" + p.id + "/pay", mserver::pay_body(op.accept_info_json));
        if (paid.response.outcome == HttpResponse::Outcome::NotSent) {
            result = provider_answer(K::NotSent, "pay: " + paid.response.error);
        } else if (paid.response.outcome == HttpResponse::Outcome::Unknown) {
            result = provider_answer(K::Unknown, "pay: " + paid.response.error);
        } else if (!paid.parsed) {
            result = provider_answer(K::Unknown, "pay: HTTP " + std::to_string(paid.response.status) + " " + paid.why);
        } else if (paid.response.status != 200 || paid.envelope.code != 200) {
            long st = paid.envelope.code ? paid.envelope.code : paid.response.status;
            result = mserver::error_answer(st, paid.envelope.error_type, Phase::Pay, "pay");
        } else {
            mserver::WalletPayment after;
            if (!mserver::read_payment(paid.envelope.data, after, why)) {
                result = provider_answer(K::Unknown, "pay: " + why);
            } else {
                result = mserver::payment_answer(after, "pay");
                // next_action "get": the result comes later, read with GET (the task re-checks).
                if (result.kind == K::NotFound) result = provider_answer(K::Unknown, "pay: still created after pay");
                if (!after.total_minor.empty()) p.total_minor = after.total_minor;
            }
        }
    }
    result.provider_ref = p.id;
    result.total_minor = p.total_minor;
    return result;
}

ProviderAnswer Mserver::reverse(const Operation&) {
    // Seed 003 has no refund call: money comes back only by mserver's own undo (a notification).
    return provider_answer(K::Declined, "mserver has no refund API", "not_supported");
}

ProviderAnswer Mserver::status(const Operation& op) {
    // Without mserver's id we never got a prepare answer: preparing again with the same
    // client_payment_id is safe, and that is what NotFound lets the sending task do.
    if (op.provider_ref.empty()) return provider_answer(K::NotFound, "status: never prepared (no mserver id)");
    Call c = get("/v1/payments/" + op.provider_ref);
    if (c.response.outcome != HttpResponse::Outcome::Answered) return provider_answer(K::Unknown, "status: " + c.response.error);
    if (!c.parsed) return provider_answer(K::Unknown, "status: HTTP " + std::to_string(c.response.status) + " " + c.why);
    if (c.response.status == 404 || c.envelope.code == 404) {
        return provider_answer(K::Unknown, "status: mserver does not know payment " + op.provider_ref);
    }
    if (c.response.status != 200 || c.envelope.code != 200) {
        return provider_answer(K::Unknown, "status: HTTP " + std::to_string(c.response.status) + " " + c.envelope.error_type);
    }
    mserver::WalletPayment p;
    std::string why;
    if (!mserver::read_payment(c.envelope.data, p, why)) return provider_answer(K::Unknown, "status: " + why);
    if (p.client_payment_id != op.id || p.amount_minor != op.amount_minor) {
        return provider_answer(K::Unknown, "status: the answer does not match the operation");
    }
    ProviderAnswer a = mserver::payment_answer(p, "status");
    a.provider_ref = p.id;
    a.total_minor = p.total_minor;
    return a;
}

}  // namespace paygate::daemon
