// The mserver wallet adapter (seed 003): see docs/providers/mserver.md.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paygate/json.hpp"
#include "paygated/http_client.hpp"
#include "paygated/provider.hpp"

namespace paygate::daemon {

// The plain parts (no I/O), unit-tested on their own.
namespace mserver {

// The seed's envelope {meta: {code, next_action, ...}, data}. Errors: meta.code != 200 with
// meta.error_type (the seed's codes) and meta.error_message (paygate's reading: the seed names the
// codes, not where they travel).
struct Envelope {
    long code = 0;
    std::string next_action;     // "pay", "get", "update" or empty
    std::string error_type;
    std::string error_message;
    json::Value data;            // null when absent
};
bool parse_envelope(std::string_view body, Envelope& out, std::string& why);

// One wallet payment as mserver shows it (money in minor units: kopecks).
struct WalletPayment {
    std::string id;                  // mserver's payment id (a JSON number or string there)
    std::string client_payment_id;
    std::string type;                // out, p2p, in, inout
    std::string status;              // created, processing, completed, declined
    std::string decline_reason;
    std::string amount_minor;
    std::string total_minor;         // empty when mserver gave no total
    std::string created_at;
};
bool read_payment(const json::Value& data, WalletPayment& out, std::string& why);

// Rubles as JSON number text ("103", "8.03", "100.00") -> kopecks ("10300", "803", "10000").
// Nothing for negatives, exponents or a fraction finer than a kopeck: money is never rounded.
std::optional<std::string> to_minor(std::string_view rubles);
// Kopecks ("10300") -> rubles as a JSON number with two fraction digits ("103.00").
std::string to_rubles(std::string_view minor);

// The decline reason kept on the payment: the seed's three as they are, anything else cleaned.
std::string decline_reason(std::string_view reason);

// What a wallet payment's status means for our operation. `created` (prepared, never paid) is
// NotFound: paying it, or preparing it again with the same client_payment_id, cannot move money twice.
ProviderAnswer payment_answer(const WalletPayment& p, const std::string& what);

enum class Phase { Prepare, Pay };
// An error answer (meta.code != 200) of prepare or pay, by the seed's error codes.
ProviderAnswer error_answer(long http_status, std::string_view error_type, Phase phase, const std::string& what);

// The body of POST /v1/payments from the payment's accept_info.mserver (type and its fields) and
// our amount and client_payment_id; the pay body (the deferred choice) from accept_info.mserver.pay.
// Nothing when accept_info has no usable mserver object (`why` says what is wrong).
std::optional<std::string> prepare_body(const std::string& accept_info_json, const std::string& client_payment_id,
                                        const std::string& amount_minor, std::string& why);
std::string pay_body(const std::string& accept_info_json);

// Reconciliation (paygatectl reconcile mserver): our operations beside mserver's history.
struct OurOperation {
    std::string id;               // = client_payment_id
    std::string payment_id;
    std::string state;            // provider_operations.state
    std::string payment_status;   // payments.status
    std::string provider_ref;     // mserver's id, when known
};
struct Difference {
    std::string payment_id;       // ours, empty when mserver has a payment we never made
    std::string client_payment_id;
    std::string mserver_id;
    std::string ours;             // "completed", "reversed", "open:<state>", "-" (absent)
    std::string theirs;           // mserver's status, "-" when absent from its history
};
// The status mserver should show for `op` (completed; declined also after an undo that reversed
// the payment; processing while open), or empty when any is fine (an open operation never sent).
std::string expected_status(const OurOperation& op);
// Every payment whose status differs between the two sides, plus payments only one side has.
std::vector<Difference> compare(const std::vector<OurOperation>& ours, const std::vector<WalletPayment>& theirs);

}  // namespace mserver

class Mserver final : public Provider {
public:
    // Reads the password file; throws std::runtime_error naming the config key that is wrong.
    Mserver(const Config& config, std::shared_ptr<HttpClient> http);

    const std::string& name() const override { return name_; }
    ProviderAnswer charge(const Operation& op) override;
    ProviderAnswer reverse(const Operation& op) override;
    ProviderAnswer status(const Operation& op) override;

    struct Call {
        HttpResponse response;
        mserver::Envelope envelope;
        bool parsed = false;
        std::string why;   // when not parsed
    };
    // GET /v1/payments/{id} (notifications re-read the payment) and GET /v1/payments?query (reconcile).
    Call get(const std::string& path_and_query);

private:
    Call call(const std::string& method, const std::string& path, const std::string& body);

    std::string name_;
    std::string url_;
    std::string authorization_;   // "Authorization: Basic ..."
    long connect_timeout_ms_;
    long timeout_ms_;
    std::shared_ptr<HttpClient> http_;
};

}  // namespace paygate::daemon
