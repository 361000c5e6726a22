// WhiteBird's order and timeout bodies and its status mapping (see whitebird.hpp).
#include "paygated/whitebird.hpp"

#include <algorithm>

#include "paygate/digest.hpp"

namespace paygate::daemon::whitebird {

namespace {

using json::Type;
using json::Value;

bool fail(Invalid& invalid, std::string message) {
    invalid.status = 400;
    invalid.code = "validation_error";
    invalid.message = std::move(message);
    return false;
}

bool is_id(std::string_view s) {
    if (s.empty() || s.size() > 128) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == ':' || c == '-';
    });
}

// A required string member that is an id; `optional` also takes an absent or null member.
bool read_id(const Value& body, std::string_view name, bool optional, std::optional<std::string>& out, Invalid& invalid) {
    const Value* v = body.find(name);
    if (v == nullptr || v->is(Type::Null)) {
        if (optional) return true;
        return fail(invalid, std::string(name) + ": missing");
    }
    if (!v->is(Type::String)) {
        return fail(invalid, std::string(name) + ": must be a string, not " + std::string(json::type_name(v->type())));
    }
    if (!is_id(v->text())) {
        return fail(invalid, std::string(name) + ": must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    }
    out = v->text();
    return true;
}

bool read_enum(const Value& body, std::string_view name, std::initializer_list<std::string_view> allowed,
               std::string& out, Invalid& invalid) {
    const Value* v = body.find(name);
    if (v == nullptr || v->is(Type::Null)) return fail(invalid, std::string(name) + ": missing");
    if (!v->is(Type::String)) {
        return fail(invalid, std::string(name) + ": must be a string, not " + std::string(json::type_name(v->type())));
    }
    for (std::string_view a : allowed) {
        if (v->text() == a) {
            out = v->text();
            return true;
        }
    }
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return fail(invalid, std::string(name) + ": must be one of " + list);
}

const Currency* read_currency(const Value& body, Invalid& invalid) {
    const Value* v = body.find("currency");
    if (v == nullptr || v->is(Type::Null)) {
        fail(invalid, "currency: missing");
        return nullptr;
    }
    if (!v->is(Type::Number)) {
        fail(invalid, "currency: must be an ISO 4217 numeric code as a JSON number (933), not " +
                          std::string(json::type_name(v->type())));
        return nullptr;
    }
    // By value, as JSON numbers are: 933, 933.0 and 9.33e2 are one code; 933.5 and -933 are none.
    const std::string value = json::canonical_number(v->text());
    bool digits = !value.empty() && value.size() <= 3 &&
                  std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    const Currency* currency = digits ? find_currency_by_numeric(std::stoi(value)) : nullptr;
    if (currency == nullptr) {
        fail(invalid, "currency: " + v->text() + " is not an ISO 4217 numeric currency code paygate accepts");
    }
    return currency;
}

}  // namespace

std::string_view type_name(OrderType t) { return t == OrderType::Payment ? "PAYMENT" : "DISBURSEMENT"; }

std::optional<Order> validate_order(const Value& body, Invalid& invalid) {
    if (!body.is(Type::Object)) {
        fail(invalid, "body: must be a JSON object");
        return std::nullopt;
    }
    std::optional<std::string> user, operation, method;
    if (!read_id(body, "externalUserId", false, user, invalid) ||
        !read_id(body, "externalOperationId", false, operation, invalid) ||
        !read_id(body, "paymentMethodToken", true, method, invalid)) {
        return std::nullopt;
    }
    const Currency* currency = read_currency(body, invalid);
    if (currency == nullptr) return std::nullopt;
    const Value* amount_value = body.find("amount");
    if (amount_value == nullptr || amount_value->is(Type::Null)) {
        fail(invalid, "amount: missing");
        return std::nullopt;
    }
    if (!amount_value->is(Type::Number)) {
        fail(invalid, "amount: must be a JSON number, not " + std::string(json::type_name(amount_value->type())));
        return std::nullopt;
    }
    std::string error;
    std::optional<Amount> amount = parse_amount(amount_value->text(), true, *currency, error);
    if (!amount) {
        fail(invalid, "amount: " + error);
        return std::nullopt;
    }
    std::string type, status;
    if (!read_enum(body, "type", {"PAYMENT", "DISBURSEMENT"}, type, invalid) ||
        !read_enum(body, "status", {"EXCHANGED"}, status, invalid)) {
        return std::nullopt;
    }
    Order order;
    order.external_user_id = std::move(*user);
    order.external_operation_id = std::move(*operation);
    order.payment_method_token = std::move(method);
    order.amount = std::move(*amount);
    order.type = type == "PAYMENT" ? OrderType::Payment : OrderType::Disbursement;
    // Fields cannot contain '\n' (ids are checked above), so this form is unambiguous.
    order.fingerprint = sha256_hex("whitebird-order-1\n" + order.external_user_id + "\n" + order.external_operation_id +
                                   "\n" + order.payment_method_token.value_or("") + "\n" +
                                   std::string(currency->code) + "\n" + order.amount.minor_units + "\n" + type);
    return order;
}

std::optional<std::string> validate_timeout(const Value& body, Invalid& invalid) {
    if (!body.is(Type::Object)) {
        fail(invalid, "body: must be a JSON object");
        return std::nullopt;
    }
    std::optional<std::string> operation;
    if (!read_id(body, "externalOperationId", false, operation, invalid)) return std::nullopt;
    std::string status;
    if (!read_enum(body, "status", {kCancelledSeed, kCancelledLatin}, status, invalid)) return std::nullopt;
    return operation;
}

std::string_view status_name(Status s) {
    switch (s) {
        case Status::Processing: return "PROCESSING";
        case Status::Success: return "SUCCESS";
        case Status::Failed: return "FAILED";
    }
    return "PROCESSING";
}

Status order_status(PaymentStatus s) {
    switch (s) {
        case PaymentStatus::Created:
        case PaymentStatus::BankProcessing: return Status::Processing;
        case PaymentStatus::Completed: return Status::Success;
        case PaymentStatus::Declined:
        case PaymentStatus::Cancelled:
        case PaymentStatus::Reversed: return Status::Failed;
    }
    return Status::Processing;
}

std::string failure_message(PaymentStatus s, const std::optional<std::string>& decline_reason, bool timed_out) {
    if (s == PaymentStatus::Declined) {
        if (decline_reason == "insufficient_funds") return "Insufficient funds on the user's balance";
        if (decline_reason == "card_expired" || decline_reason == "expired_card") return "The user's payment method has expired";
        if (decline_reason == "do_not_honor" || decline_reason == "suspected_fraud") return "The user's bank refused the operation";
        return "The payment provider declined the operation";
    }
    if (s == PaymentStatus::Cancelled || timed_out) return "The operation was cancelled (WhiteBird timeout)";
    if (s == PaymentStatus::Reversed) return "The operation was reversed";
    return "The operation failed";
}

}  // namespace paygate::daemon::whitebird
