// The payment core's rules: names of statuses, reasons and actions, the state machine, and the
// validation of every payment POST body (docs/api.md). Plain functions, no I/O.
//
// Validation order, so "the first problem" is well defined: content type (415), then the body as
// JSON, then that it is an object, then unknown fields of that object, then its fields in the
// documented order; a nested object is checked the same way (type, unknown fields, fields) when
// its turn comes. Optional fields (sender.method_id, accept_info) given as null count as absent.
// The amount of extra_charge and refund is in the payment's currency: the validator checks its
// type, amount_in() its value once the handler has read the payment.
#include "paygated/payment_rules.hpp"

#include "paygate/idempotency.hpp"

#include <initializer_list>
#include <utility>

namespace paygate::daemon {

namespace {

namespace json = paygate::json;

// Objects and arrays may nest at most this deep inside the body object (accept_info is "any JSON
// object at most 32 levels deep"); the parser counts the body itself as one more level.
constexpr std::size_t kMaxDepthInBody = 32;
constexpr std::size_t kMaxStringBytes = 64 * 1024;

// Client text quoted in a message: at most 64 bytes, cut on a UTF-8 boundary (json_error makes
// whatever remains valid JSON).
std::string quoted(std::string_view text) {
    constexpr std::size_t kMax = 64;
    std::string out = "\"";
    if (text.size() <= kMax) {
        out.append(text);
    } else {
        std::size_t cut = kMax;
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
        out.append(text.substr(0, cut));
        out += "...";
    }
    out += '"';
    return out;
}

std::string join(std::string_view prefix, std::string_view key) {
    std::string out(prefix);
    if (!out.empty()) out += '.';
    out += key;
    return out;
}

std::string article(json::Type t) {
    return (t == json::Type::Array || t == json::Type::Object ? "an " : "a ") + std::string(json::type_name(t));
}

bool fail(Invalid& invalid, std::string message) {
    invalid.status = 400;
    invalid.code = "validation_error";
    invalid.message = std::move(message);
    return false;
}

bool fail_type(Invalid& invalid, const std::string& path, const char* wanted, const json::Value& got) {
    return fail(invalid, path + ": must be " + wanted + ", not " + article(got.type()));
}

// Every member of `object` must be one of `allowed`.
bool only_known(const json::Value& object, std::string_view path, std::initializer_list<std::string_view> allowed,
                Invalid& invalid) {
    for (const auto& member : object.members()) {
        bool known = false;
        for (std::string_view name : allowed) {
            if (member.first == name) {
                known = true;
                break;
            }
        }
        if (!known) {
            std::string message = "unknown field " + quoted(member.first);
            return fail(invalid, path.empty() ? message : std::string(path) + ": " + message);
        }
    }
    return true;
}

// The member `key` of `object`, or nullptr when it is absent or null.
const json::Value* present(const json::Value& object, std::string_view key) {
    const json::Value* v = object.find(key);
    return v == nullptr || v->is(json::Type::Null) ? nullptr : v;
}

// A required member that must be of type `type`. Absent or null: "required".
const json::Value* required(const json::Value& object, std::string_view prefix, std::string_view key,
                            json::Type type, Invalid& invalid) {
    const std::string path = join(prefix, key);
    const json::Value* v = present(object, key);
    if (v == nullptr) {
        fail(invalid, path + ": required");
        return nullptr;
    }
    if (!v->is(type)) {
        fail_type(invalid, path, type == json::Type::Object ? "an object" : "a string", *v);
        return nullptr;
    }
    return v;
}

bool opaque_id(const json::Value& object, std::string_view prefix, std::string_view key, std::string& out,
               Invalid& invalid) {
    const json::Value* v = required(object, prefix, key, json::Type::String, invalid);
    if (v == nullptr) return false;
    if (!is_opaque_id(v->text())) {
        return fail(invalid, join(prefix, key) + ": must be 1-128 characters of A-Z a-z 0-9 . _ : -");
    }
    out = v->text();
    return true;
}

bool idempotency_token(const json::Value& body, std::string& out, Invalid& invalid) {
    const json::Value* v = required(body, "", "idempotency_token", json::Type::String, invalid);
    if (v == nullptr) return false;
    std::optional<std::string> uuid = canonical_uuid(v->text());
    if (!uuid) {
        return fail(invalid, "idempotency_token: must be a UUID such as \"0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f\"");
    }
    out = std::move(*uuid);
    return true;
}

// The member "amount" of `object` (at `prefix`): present, a JSON number or a string.
bool amount_text(const json::Value& object, std::string_view prefix, AmountText& out, Invalid& invalid) {
    const std::string path = join(prefix, "amount");
    const json::Value* amount = present(object, "amount");
    if (amount == nullptr) return fail(invalid, path + ": required");
    if (!amount->is(json::Type::Number) && !amount->is(json::Type::String)) {
        return fail_type(invalid, path, "a number or a decimal string", *amount);
    }
    out.text = amount->text();
    out.is_number = amount->is(json::Type::Number);
    return true;
}

// `amount` in `currency` (the rules of parse_amount); failures name `path`.
bool read_amount(const AmountText& amount, const std::string& path, const Currency& currency, Amount& out,
                 Invalid& invalid) {
    std::string error;
    std::optional<Amount> parsed = parse_amount(amount.text, amount.is_number, currency, error);
    if (!parsed) return fail(invalid, path + ": " + error);
    out = std::move(*parsed);
    return true;
}

bool money_info(const json::Value& body, MoneyInfo& out, Invalid& invalid) {
    const json::Value* info = required(body, "", "money_info", json::Type::Object, invalid);
    if (info == nullptr) return false;
    if (!only_known(*info, "money_info", {"method_id", "currency", "amount"}, invalid)) return false;
    if (!opaque_id(*info, "money_info", "method_id", out.method_id, invalid)) return false;

    const json::Value* code = required(*info, "money_info", "currency", json::Type::String, invalid);
    if (code == nullptr) return false;
    const Currency* currency = find_currency(code->text());
    if (currency == nullptr) {
        return fail(invalid, "money_info.currency: unknown currency " + quoted(code->text()) +
                                 " (an upper-case ISO 4217 code such as \"USD\", or BTC, ETH, USDT)");
    }

    AmountText amount;
    return amount_text(*info, "money_info", amount, invalid) &&
           read_amount(amount, "money_info.amount", *currency, out.amount, invalid);
}

// Content type, JSON, and an object at the top.
bool parse_body(const ipc::Request& request, json::Value& body, Invalid& invalid) {
    const std::string* content_type = request.header("content-type");
    if (content_type == nullptr || !is_json_content_type(*content_type)) {
        invalid.status = 415;
        invalid.code = "unsupported_media_type";
        invalid.message = "the body must be JSON, sent with Content-Type: application/json";
        return false;
    }
    if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
        return fail(invalid, "body: must be a JSON object (the body is empty)");
    }
    json::ParseLimits limits;
    limits.max_depth = kMaxDepthInBody + 1;
    limits.max_string_bytes = kMaxStringBytes;
    json::ParseError error;
    if (!json::parse(request.body, body, error, limits)) {
        if (error.message.rfind("nesting deeper than", 0) == 0) {
            return fail(invalid, "body: nested too deeply at byte " + std::to_string(error.offset) + " (at most " +
                                     std::to_string(kMaxDepthInBody) + " levels inside the body)");
        }
        return fail(invalid, "body: malformed JSON at byte " + std::to_string(error.offset) + ": " + error.message);
    }
    if (!body.is(json::Type::Object)) return fail_type(invalid, "body", "a JSON object", body);
    return true;
}

}  // namespace

bool parse_json_body(const ipc::Request& request, json::Value& body, Invalid& invalid) {
    return parse_body(request, body, invalid);
}

std::string_view status_name(PaymentStatus s) {
    switch (s) {
        case PaymentStatus::Created: return "created";
        case PaymentStatus::BankProcessing: return "bank_processing";
        case PaymentStatus::Completed: return "completed";
        case PaymentStatus::Declined: return "declined";
        case PaymentStatus::Cancelled: return "cancelled";
        case PaymentStatus::Reversed: return "reversed";
    }
    return "unknown";
}

std::optional<PaymentStatus> parse_status(std::string_view name) {
    for (PaymentStatus s : {PaymentStatus::Created, PaymentStatus::BankProcessing, PaymentStatus::Completed,
                            PaymentStatus::Declined, PaymentStatus::Cancelled, PaymentStatus::Reversed}) {
        if (status_name(s) == name) return s;
    }
    return std::nullopt;
}

std::string_view reason_name(CancelReason r) {
    switch (r) {
        case CancelReason::UserRequest: return "user_request";
        case CancelReason::MerchantRequest: return "merchant_request";
        case CancelReason::Expired: return "expired";
        case CancelReason::FraudSuspected: return "fraud_suspected";
        case CancelReason::Other: return "other";
    }
    return "unknown";
}

std::optional<CancelReason> parse_reason(std::string_view name) {
    for (CancelReason r : {CancelReason::UserRequest, CancelReason::MerchantRequest, CancelReason::Expired,
                           CancelReason::FraudSuspected, CancelReason::Other}) {
        if (reason_name(r) == name) return r;
    }
    return std::nullopt;
}

std::string_view action_name(Action a) {
    switch (a) {
        case Action::Edit: return "edit";
        case Action::Cancel: return "cancel";
        case Action::Accept: return "accept";
        case Action::ProviderCompleted: return "provider_completed";
        case Action::ProviderDeclined: return "provider_declined";
        case Action::ReversalCompleted: return "reversal_completed";
        case Action::ExtraCharge: return "extra_charge";
        case Action::Refund: return "refund";
    }
    return "unknown";
}

std::optional<Transition> transition(PaymentStatus from, Action action, bool reversal_requested) {
    using S = PaymentStatus;
    switch (action) {
        case Action::Edit:
            if (from == S::Created) return Transition{S::Created};
            break;
        case Action::Cancel:
            if (from == S::Created) return Transition{S::Cancelled};
            if (from == S::Completed && !reversal_requested) {
                Transition t{S::Completed};
                t.requests_reversal = true;
                return t;
            }
            break;
        case Action::Accept:
            if (from == S::Created) {
                Transition t{S::BankProcessing};
                t.requests_charge = true;
                return t;
            }
            break;
        case Action::ProviderCompleted:
            if (from == S::BankProcessing) return Transition{S::Completed};
            break;
        case Action::ProviderDeclined:
            if (from == S::BankProcessing) return Transition{S::Declined};
            break;
        case Action::ReversalCompleted:
            if (from == S::Completed && reversal_requested) return Transition{S::Reversed};
            break;
        case Action::ExtraCharge:
        case Action::Refund:
            // Not once the full reversal (cancel) was asked: what is left is on its way back.
            if (from == S::Completed && !reversal_requested) return Transition{S::Completed};
            break;
    }
    return std::nullopt;
}

bool is_json_content_type(std::string_view value) {
    auto is_ows = [](char c) { return c == ' ' || c == '\t'; };
    std::size_t semi = value.find(';');
    std::string_view media = value.substr(0, semi);
    while (!media.empty() && is_ows(media.front())) media.remove_prefix(1);
    while (!media.empty() && is_ows(media.back())) media.remove_suffix(1);
    constexpr std::string_view kJson = "application/json";
    if (media.size() != kJson.size()) return false;
    for (std::size_t i = 0; i < kJson.size(); ++i) {
        char c = media[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != kJson[i]) return false;
    }
    return true;
}

std::optional<std::string> canonical_uuid(std::string_view text) { return idempotency::canonical_uuid(text); }

bool is_opaque_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    for (char c : id) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<CreateRequest> validate_create(const ipc::Request& request, Invalid& invalid) {
    json::Value body;
    if (!parse_body(request, body, invalid)) return std::nullopt;
    if (!only_known(body, "", {"idempotency_token", "money_info", "recipcient", "sender"}, invalid)) return std::nullopt;
    CreateRequest out;
    if (!idempotency_token(body, out.idempotency_token, invalid)) return std::nullopt;
    if (!money_info(body, out.money, invalid)) return std::nullopt;

    const json::Value* recipient = required(body, "", "recipcient", json::Type::Object, invalid);
    if (recipient == nullptr) return std::nullopt;
    if (!only_known(*recipient, "recipcient", {"recipcient_id"}, invalid)) return std::nullopt;
    if (!opaque_id(*recipient, "recipcient", "recipcient_id", out.recipient_id, invalid)) return std::nullopt;

    const json::Value* sender = required(body, "", "sender", json::Type::Object, invalid);
    if (sender == nullptr) return std::nullopt;
    if (!only_known(*sender, "sender", {"sender_id", "method_id"}, invalid)) return std::nullopt;
    if (!opaque_id(*sender, "sender", "sender_id", out.sender_id, invalid)) return std::nullopt;
    if (present(*sender, "method_id") != nullptr) {
        std::string method_id;
        if (!opaque_id(*sender, "sender", "method_id", method_id, invalid)) return std::nullopt;
        out.sender_method_id = std::move(method_id);
    }
    return out;
}

std::optional<EditRequest> validate_edit(const ipc::Request& request, Invalid& invalid) {
    json::Value body;
    if (!parse_body(request, body, invalid)) return std::nullopt;
    if (!only_known(body, "", {"idempotency_token", "money_info"}, invalid)) return std::nullopt;
    EditRequest out;
    if (!idempotency_token(body, out.idempotency_token, invalid)) return std::nullopt;
    if (!money_info(body, out.money, invalid)) return std::nullopt;
    return out;
}

std::optional<CancelRequest> validate_cancel(const ipc::Request& request, Invalid& invalid) {
    json::Value body;
    if (!parse_body(request, body, invalid)) return std::nullopt;
    if (!only_known(body, "", {"idempotency_token", "reason"}, invalid)) return std::nullopt;
    std::string token;
    if (!idempotency_token(body, token, invalid)) return std::nullopt;
    const json::Value* reason = required(body, "", "reason", json::Type::String, invalid);
    if (reason == nullptr) return std::nullopt;
    std::optional<CancelReason> parsed = parse_reason(reason->text());
    if (!parsed) {
        fail(invalid, "reason: must be one of user_request, merchant_request, expired, fraud_suspected, other");
        return std::nullopt;
    }
    return CancelRequest{std::move(token), *parsed};
}

namespace {

// numeric reads a number as written (jsonb keeps its text's scale), so the canonical form cannot
// tell: "0e-20000" is 0 and "1.000...0" (20000 zeros) is 1, yet numeric refuses both. It takes
// an exponent below INT_MAX / 2 in magnitude and a display scale -- the digits after the point as
// written, less the exponent -- of at most 16383. We allow 16000 of each.
constexpr long kMaxWrittenScale = 16000;

const char* numeric_refuses_as_written(std::string_view lexeme) {
    const std::size_t e_at = lexeme.find_first_of("eE");
    const std::string_view mantissa = lexeme.substr(0, e_at);
    const std::size_t dot = mantissa.find('.');
    const long fraction_digits = dot == std::string_view::npos ? 0 : static_cast<long>(mantissa.size() - dot - 1);
    long exponent = 0;
    if (e_at != std::string_view::npos) {
        std::string_view digits = lexeme.substr(e_at + 1);
        const bool negative = digits.front() == '-';
        if (negative || digits.front() == '+') digits.remove_prefix(1);
        while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
        exponent = digits.size() > 6 ? kMaxWrittenScale + 1 : std::stol(std::string(digits));
        if (exponent > kMaxWrittenScale) return "accept_info: number exponents may be at most 16000 in magnitude";
        if (negative) exponent = -exponent;
    }
    if (fraction_digits - exponent > kMaxWrittenScale) {
        return "accept_info: numbers may have at most 16000 fraction digits (as written, counting the exponent)";
    }
    return nullptr;
}

// What PostgreSQL's jsonb, which stores accept_info, cannot hold: U+0000 in text, and numbers
// beyond its numeric range. Refused here as a validation error rather than failing the insert.
bool storable_in_jsonb(const json::Value& v, Invalid& invalid) {
    switch (v.type()) {
        case json::Type::String:
            if (v.text().find('\0') != std::string::npos) return fail(invalid, "accept_info: text must not contain U+0000");
            return true;
        case json::Type::Number: {
            std::string n = json::canonical_number(v.text());
            std::size_t e = n.find('e');
            // Plain decimals are printed only up to |exponent| 20; beyond, "<digits>e<exponent>".
            if (e != std::string::npos) {
                std::string_view digits(n.c_str(), e);
                if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
                std::string_view exponent(n.c_str() + e + 1);
                bool negative = !exponent.empty() && exponent.front() == '-';
                if (negative) exponent.remove_prefix(1);
                long magnitude = exponent.size() > 6 ? 1000000 : std::stol(std::string(exponent));
                magnitude = (negative ? -magnitude : magnitude) + static_cast<long>(digits.size()) - 1;
                if (magnitude > 300 || magnitude < -300) {
                    return fail(invalid, "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude");
                }
            }
            if (const char* problem = numeric_refuses_as_written(v.text())) return fail(invalid, problem);
            return true;
        }
        case json::Type::Array:
            for (const json::Value& item : v.items()) {
                if (!storable_in_jsonb(item, invalid)) return false;
            }
            return true;
        case json::Type::Object:
            for (const auto& [key, value] : v.members()) {
                if (key.find('\0') != std::string::npos) return fail(invalid, "accept_info: keys must not contain U+0000");
                if (!storable_in_jsonb(value, invalid)) return false;
            }
            return true;
        default:
            return true;
    }
}

}  // namespace

std::optional<AcceptRequest> validate_accept(const ipc::Request& request, Invalid& invalid) {
    json::Value body;
    if (!parse_body(request, body, invalid)) return std::nullopt;
    if (!only_known(body, "", {"idempotency_token", "accept_info"}, invalid)) return std::nullopt;
    AcceptRequest out;
    if (!idempotency_token(body, out.idempotency_token, invalid)) return std::nullopt;
    out.accept_info_json = "{}";
    if (const json::Value* info = present(body, "accept_info")) {
        if (!info->is(json::Type::Object)) {
            fail_type(invalid, "accept_info", "an object", *info);
            return std::nullopt;
        }
        if (!storable_in_jsonb(*info, invalid)) return std::nullopt;
        out.accept_info_json = json::serialize(*info);
    }
    return out;
}

namespace {

std::optional<MoneyOperationRequest> validate_money_operation(const ipc::Request& request, Invalid& invalid) {
    json::Value body;
    if (!parse_body(request, body, invalid)) return std::nullopt;
    if (!only_known(body, "", {"idempotency_token", "amount"}, invalid)) return std::nullopt;
    MoneyOperationRequest out;
    if (!idempotency_token(body, out.idempotency_token, invalid)) return std::nullopt;
    if (!amount_text(body, "", out.amount, invalid)) return std::nullopt;
    return out;
}

}  // namespace

std::optional<ExtraChargeRequest> validate_extra_charge(const ipc::Request& request, Invalid& invalid) {
    return validate_money_operation(request, invalid);
}

std::optional<RefundRequest> validate_refund(const ipc::Request& request, Invalid& invalid) {
    return validate_money_operation(request, invalid);
}

std::optional<Amount> amount_in(const AmountText& amount, const Currency& currency, Invalid& invalid) {
    Amount out;
    if (!read_amount(amount, "amount", currency, out, invalid)) return std::nullopt;
    return out;
}

std::string refund_too_large(const std::string& captured_minor, const std::string& refunded_minor,
                             const Currency& currency) {
    const std::string code(currency.code);
    return "amount: only " + format_amount(subtract_minor(captured_minor, refunded_minor), currency) + " " + code +
           " of the captured " + format_amount(captured_minor, currency) + " " + code + " can still be refunded";
}

}  // namespace paygate::daemon
