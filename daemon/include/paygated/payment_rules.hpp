// The payment core's rules as plain functions: request validation and the state machine.
// No database, no ZeroMQ: CMocka tests exercise every rule directly.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "paygate/ipc.hpp"
#include "paygate/json.hpp"
#include "paygated/money.hpp"

namespace paygate::daemon {

enum class PaymentStatus { Created, BankProcessing, Completed, Declined, Cancelled, Reversed };

std::string_view status_name(PaymentStatus s);                        // "bank_processing"
std::optional<PaymentStatus> parse_status(std::string_view name);

enum class CancelReason { UserRequest, MerchantRequest, Expired, FraudSuspected, Other };
std::string_view reason_name(CancelReason r);                         // "user_request"
std::optional<CancelReason> parse_reason(std::string_view name);

// What a client (or later the provider engine) asks of a payment.
enum class Action { Edit, Cancel, Accept, ProviderCompleted, ProviderDeclined, ReversalCompleted, ExtraCharge, Refund };
std::string_view action_name(Action a);                               // "edit", "provider_completed", "extra_charge"

// The state machine. `reversal_requested` says whether a cancel of a completed payment was
// already asked for. Returns the outcome, or nothing when the action is not allowed in `from`
// (the caller answers 400 invalid_state). Extra charges and refunds keep a completed payment
// completed (the provider engine moves it to reversed once everything captured went back).
struct Transition {
    PaymentStatus to;
    bool requests_charge = false;     // accept: queue the provider charge with the change
    bool requests_reversal = false;   // cancel of a completed payment: queue the reversal
};
std::optional<Transition> transition(PaymentStatus from, Action action, bool reversal_requested);

// A validation failure: always 400 validation_error, except a body that is not JSON at all by
// content type (415 unsupported_media_type).
struct Invalid {
    int status = 400;
    std::string code = "validation_error";
    std::string message;              // names the field: "money_info.amount: must be greater than zero"
};

struct MoneyInfo {
    std::string method_id;
    Amount amount;                    // amount.currency is set
};

struct CreateRequest {
    std::string idempotency_token;    // lower-case canonical UUID
    MoneyInfo money;
    std::string recipient_id;         // "recipcient.recipcient_id"
    std::string sender_id;
    std::optional<std::string> sender_method_id;
};

struct EditRequest {
    std::string idempotency_token;
    MoneyInfo money;
};

struct CancelRequest {
    std::string idempotency_token;
    CancelReason reason;
};

struct AcceptRequest {
    std::string idempotency_token;
    std::string accept_info_json;     // the object as received, re-serialized compactly ("{}" if absent)
};

// An amount as the body gave it, before it is read in a currency: extra_charge and refund take
// the payment's currency, which only the stored payment knows.
struct AmountText {
    std::string text;                 // the JSON number lexeme, or the string's content
    bool is_number = false;
};

// The body of extra_charge and of refund: {"idempotency_token", "amount"}.
struct MoneyOperationRequest {
    std::string idempotency_token;
    AmountText amount;                // present, a number or a string; read with amount_in()
};
using ExtraChargeRequest = MoneyOperationRequest;
using RefundRequest = MoneyOperationRequest;

// Each parses and validates one endpoint's body (content type from request.header("content-type")).
// On failure returns nothing and fills `invalid`.
// The checks every JSON body gets: a JSON content type (else 415), well-formed JSON within the
// depth and string limits, an object at the top.
bool parse_json_body(const ipc::Request& request, json::Value& body, Invalid& invalid);

std::optional<CreateRequest> validate_create(const ipc::Request& request, Invalid& invalid);
std::optional<EditRequest> validate_edit(const ipc::Request& request, Invalid& invalid);
std::optional<CancelRequest> validate_cancel(const ipc::Request& request, Invalid& invalid);
std::optional<AcceptRequest> validate_accept(const ipc::Request& request, Invalid& invalid);
std::optional<ExtraChargeRequest> validate_extra_charge(const ipc::Request& request, Invalid& invalid);
std::optional<RefundRequest> validate_refund(const ipc::Request& request, Invalid& invalid);

// The `amount` of an extra_charge or refund read in the payment's `currency`, by the rules of
// money_info.amount (parse_amount): > 0, no more fraction digits than the currency allows, at
// most 15 integer digits. On failure nothing, and `invalid` names "amount: ...".
std::optional<Amount> amount_in(const AmountText& amount, const Currency& currency, Invalid& invalid);

// The refusal of a refund larger than what is left of the captured total (minor units):
// "amount: only 12.50 USD of the captured 40.00 USD can still be refunded".
std::string refund_too_large(const std::string& captured_minor, const std::string& refunded_minor,
                             const Currency& currency);

// Helpers the validators use, exposed for tests and the handlers.
bool is_json_content_type(std::string_view value);            // "application/json; charset=utf-8" -> true
std::optional<std::string> canonical_uuid(std::string_view text);   // any case, 8-4-4-4-12 hex -> lower-case
bool is_opaque_id(std::string_view id);                       // 1..128 of [A-Za-z0-9._:-]

}  // namespace paygate::daemon
