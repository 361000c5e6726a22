// The ZooTicket merchant API's plain rules (seed 002, docs/partners/zooticket.md): the session
// body's validation with field-level errors, and the sealing of the customer's personal data.
// No database and no I/O beyond reading key files: CMocka-tested (tests/unit/test_zooticket.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paygate/json.hpp"
#include "paygated/money.hpp"

namespace paygate::daemon::zooticket {

// One field-level validation error: "order.total_amount.value", "items[1].quantity".
struct FieldError {
    std::string field;
    std::string message;
};

struct Item {
    std::string ticket_type;
    std::string quantity;          // decimal, 1..1000
    Amount unit_price;
    std::string visit_date;        // YYYY-MM-DD
    std::string visit_time;        // HH:MM, or empty
};

struct SessionRequest {
    std::string session_id;
    std::string order_id;
    Amount total;                  // total.currency set
    std::string description;
    std::vector<Item> items;
    std::string customer_json;     // {"email":…,"phone":…}: sealed before it is stored
    std::vector<std::string> payment_methods;
    std::string return_url;
    std::string cancel_url;
    json::Value items_value;       // the items as given (stored as jsonb, for the hosted page)
    std::string fingerprint;       // SHA-256 (hex) of the body's canonical JSON: repeat vs reuse
};

struct Validation {
    std::optional<SessionRequest> request;   // set when valid
    std::vector<FieldError> errors;          // set when not
    bool not_json = false;                   // the body is not JSON (errors says where)
};

struct Rules {
    std::string today;                        // YYYY-MM-DD (UTC): visit dates before it are refused
    bool allow_http_loopback = false;         // dev: http:// to 127.0.0.1, ::1 or localhost
};

// The known payment methods, in the order docs/partners/zooticket.md lists them.
// 1-`max` characters of A-Z a-z 0-9 . _ : - (ids: session, order, ticket type, key id).
bool id_chars(std::string_view s, std::size_t max);
// A hex digit's value, or -1.
int hex_digit(char c);

const std::vector<std::string_view>& known_payment_methods();

Validation validate_session(std::string_view body, const Rules& rules);

// PUT (full: amount, metadata and description all required) or PATCH (partial: amount, customer,
// metadata, description; at least one) of a payment.
struct UpdateRequest {
    std::optional<Amount> amount;
    std::optional<std::string> metadata_json;      // an object, <= 32 members, <= 4 KiB
    std::optional<std::string> description;
    std::optional<std::string> customer_json;      // PATCH only; sealed before it is stored
    std::vector<std::string> updated_fields;       // the body's fields, in the order given
};

struct UpdateValidation {
    std::optional<UpdateRequest> request;
    std::vector<FieldError> errors;
};

UpdateValidation validate_update(std::string_view body, bool partial);

// An absolute https URL (http only to loopback when allowed): no userinfo, no whitespace or
// control characters, at most 2048 bytes.
bool acceptable_url(std::string_view url, bool allow_http_loopback);

// AES-256-GCM keys for personal data: "ID FILE" entries (paygated's customer_data_key); the first
// seals, every one opens. FILE's first line is 64 hex digits (32 bytes).
class CustomerKeyring {
public:
    bool add(std::string_view spec, std::string& error);   // error names the file, never key bytes
    bool empty() const { return keys_.empty(); }
    const std::string& sealing_key_id() const { return keys_.front().first; }
    // nonce (12) || ciphertext || tag (16); the key id is bound as additional data. Throws.
    std::string seal(std::string_view plaintext, std::string_view context) const;
    // Nothing when the key id is unknown or the data was changed.
    std::optional<std::string> open(std::string_view key_id, std::string_view sealed, std::string_view context) const;

private:
    std::vector<std::pair<std::string, std::string>> keys_;   // (id, 32 raw bytes)
};

// The hosted payment page (confirmation_url): plain HTML, no script, no third-party asset.
struct PageView {
    enum class Kind { Pay, Processing, Expired, Invalid } kind = Kind::Pay;
    std::string token;                     // for the forms' relative actions
    std::string description;
    std::string total;                     // "2500.00 RUB"
    std::vector<std::vector<std::string>> items;   // ticket type, quantity, unit price, visit
    std::vector<std::string> methods;
    long seconds_left = 0;
    std::string back_url;                  // Expired: where "back to the shop" goes (cancel_url)
    std::string error;                     // shown with role="alert" when not empty
};
std::string render_page(const PageView& view);
std::string html_escape(std::string_view text);
// The human name of a payment method ("bank_card" -> "Bank card").
std::string method_label(std::string_view method);
// application/x-www-form-urlencoded: the value of `name`, decoded; nothing when absent or malformed.
std::optional<std::string> form_value(std::string_view body, std::string_view name);

// What the handlers of this surface need from paygated's configuration, loaded once.
struct Settings {
    CustomerKeyring keyring;
    std::string page_url;                 // confirmation_url = page_url + "/" + token
    unsigned session_lifetime_s = 900;
    bool allow_http_loopback = false;
};

}  // namespace paygate::daemon::zooticket

namespace paygate::daemon {
struct Config;
namespace zooticket {
// From the config's customer_data_key / zooticket_* keys (reads the key files). Without any
// customer_data_key the surface still runs but refuses to create sessions (503): personal data
// is never stored unsealed.
bool load_settings(const Config& config, Settings& out, std::string& error);
}  // namespace zooticket
}  // namespace paygate::daemon
