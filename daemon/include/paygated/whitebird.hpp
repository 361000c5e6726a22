// WhiteBird (seed 004): paygate as WhiteBird's fiat PaymentProvider. The order and timeout bodies,
// their validation and the mapping of a payment's status to WhiteBird's PaymentStatus: plain C++
// (no database), so it is unit-tested and fuzzed on its own. The handlers are in handlers_whitebird.cpp;
// the contract in docs/partners/whitebird.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "paygate/json.hpp"
#include "paygated/money.hpp"
#include "paygated/payment_rules.hpp"

namespace paygate::daemon::whitebird {

inline constexpr std::string_view kPartner = "whitebird";
inline constexpr std::string_view kPrincipal = "partner:whitebird";   // what the module sends
inline constexpr std::string_view kClientName = "partner.whitebird";  // the clients row owning its payments
// The seed's timeout status: its first letter is the Cyrillic Es (U+0421), not a Latin C.
inline constexpr std::string_view kCancelledSeed = "\xD0\xA1"
                                                   "ANCELLED";
inline constexpr std::string_view kCancelledLatin = "CANCELLED";   // accepted as an alias

enum class OrderType { Payment, Disbursement };   // PAYMENT credits the user, DISBURSEMENT debits
std::string_view type_name(OrderType t);          // "PAYMENT", "DISBURSEMENT"

struct Order {
    std::string external_user_id;
    std::string external_operation_id;
    std::optional<std::string> payment_method_token;
    Amount amount;          // amount.currency is set (found by its numeric code)
    OrderType type = OrderType::Payment;
    // SHA-256 (hex) of the order's fields in a fixed form: a repeat of the same order has the same
    // fingerprint whatever its key order, whitespace or number spelling (100 = 100.0 = 1e2).
    std::string fingerprint;
};

// Checks an order body (already parsed: an object). Fails with `invalid` naming the field:
// missing or mistyped fields, ids outside 1-128 of [A-Za-z0-9._:-], `currency` not a JSON number
// whose value is an ISO 4217 numeric code paygate knows (933, 933.0 and 9.33e2 are BYN), `amount` not a positive number with at most the
// currency's fraction digits, `type` not PAYMENT/DISBURSEMENT, `status` not EXCHANGED.
std::optional<Order> validate_order(const json::Value& body, Invalid& invalid);

// Checks a timeout body: `externalOperationId` and `status` "СANCELLED" (Cyrillic С) or
// "CANCELLED". Returns the operation id.
std::optional<std::string> validate_timeout(const json::Value& body, Invalid& invalid);

// WhiteBird's PaymentStatus.
enum class Status { Processing, Success, Failed };
std::string_view status_name(Status s);   // "PROCESSING", "SUCCESS", "FAILED"

// created and bank_processing are PROCESSING, completed is SUCCESS, everything else (declined,
// cancelled, reversed) is FAILED.
Status order_status(PaymentStatus s);

// The errorMessage of a FAILED operation: human-readable, from what paygate knows (the
// provider's decline reason is mapped, never copied), never an internal detail.
std::string failure_message(PaymentStatus s, const std::optional<std::string>& decline_reason, bool timed_out);

}  // namespace paygate::daemon::whitebird
