// The sky-technologies adapter (seed 001; contract in docs/providers/sky-technologies.md):
// initSession + completeMerchantAcquiring / processPaymentReversal / paymentStatus, each request
// signed with ECDSA P-521/SHA-512 over "timestamp.body" (the reversal key only for reversals).
#include "paygated/sky_technologies.hpp"

#include <cctype>
#include <cstdlib>
#include <ctime>

#include "paygate/capability.hpp"
#include "paygate/crypto.hpp"
#include "paygate/json.hpp"
#include "paygated/http_client.hpp"
#include "paygated/log.hpp"

namespace paygate::daemon {

namespace {

using K = ProviderAnswer::Kind;

std::string json_string(std::string_view s) {
    std::string out;
    json::append_string(out, s);
    return out;
}

const json::Value* string_member(const json::Value& doc, std::string_view key) {
    const json::Value* v = doc.find(key);
    return v && v->is(json::Type::String) ? v : nullptr;
}

// A provider's reason text is kept on the payment: bounded and plain.
std::string clean_reason(const std::string& reason) {
    std::string out;
    for (char c : reason.substr(0, 128)) {
        out.push_back((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
                          ? c
                          : '_');
    }
    return out.empty() ? "unspecified" : out;
}

// COMPLETED / DECLINED / PROCESSING of an answer body.
ProviderAnswer status_answer(const json::Value& doc, const std::string& what) {
    const json::Value* status = string_member(doc, "status");
    if (!status) return provider_answer(K::Unknown, what + ": answer without a status");
    if (status->text() == "COMPLETED") return provider_answer(K::Completed, what + ": COMPLETED");
    if (status->text() == "PROCESSING") return provider_answer(K::Processing, what + ": PROCESSING");
    if (status->text() == "DECLINED") {
        const json::Value* reason = string_member(doc, "decline_reason");
        return provider_answer(K::Declined, what + ": DECLINED", clean_reason(reason ? reason->text() : ""));
    }
    return provider_answer(K::Unknown, what + ": unexpected status");
}

}  // namespace

// "HTTP 403 unknown_merchant": the status and the provider's error code, for last_error.
std::string SkyTechnologies::http_failure(const Call& call) {
    const json::Value* code = call.parsed ? string_member(call.doc, "error") : nullptr;
    std::string out = "HTTP " + std::to_string(call.response.status);
    if (code) {
        std::string clean;
        for (char c : code->text().substr(0, 64)) clean.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
        out += " " + clean;
    }
    return out;
}

SkyTechnologies::SkyTechnologies(const Config& config, std::shared_ptr<HttpClient> http)
    : name_("sky-technologies"),
      url_(config.sky_technologies_url),
      merchant_id_(config.sky_technologies_merchant_id),
      callback_base_url_(config.callback_base_url),
      connect_timeout_ms_(config.provider_connect_timeout_ms),
      timeout_ms_(config.provider_timeout_ms),
      http_(std::move(http)) {
    std::string error;
    auto payment = crypto::EcdsaPrivateKey::load_pem_file(config.sky_technologies_payment_key, error);
    if (!payment) throw std::runtime_error("sky_technologies_payment_key: " + error);
    auto reversal = crypto::EcdsaPrivateKey::load_pem_file(config.sky_technologies_reversal_key, error);
    if (!reversal) throw std::runtime_error("sky_technologies_reversal_key: " + error);
    if (payment->public_pem() == reversal->public_pem()) {
        throw std::runtime_error("sky_technologies_reversal_key is the payment key: the seed requires a pair of its own");
    }
    auto keys = capability::Keyring::load_file(config.callback_keys, error);
    if (!keys) throw std::runtime_error("callback_keys: " + error);
    payment_key_ = std::make_unique<crypto::EcdsaPrivateKey>(std::move(*payment));
    reversal_key_ = std::make_unique<crypto::EcdsaPrivateKey>(std::move(*reversal));
    callback_keys_ = std::make_unique<capability::Keyring>(std::move(*keys));
}

SkyTechnologies::~SkyTechnologies() = default;

std::string SkyTechnologies::callback_url(const std::string& operation_id) const {
    return callback_base_url_ + "/sky-technologies/v1/on_payment_completed?" +
           capability::query(*callback_keys_, operation_id);
}

SkyTechnologies::Call SkyTechnologies::post(const std::string& endpoint, const std::string& body, bool reversal_key) {
    std::string timestamp = std::to_string(static_cast<long long>(std::time(nullptr)));
    const crypto::EcdsaPrivateKey& key = reversal_key ? *reversal_key_ : *payment_key_;
    std::string signature = crypto::base64_encode(key.sign_sha512(timestamp + "." + body));
    HttpRequest request;
    request.url = url_ + "/v1/" + endpoint;
    request.headers = {"Content-Type: application/json", "Accept: application/json",
                       "X-Merchant-Id: " + merchant_id_, "X-Request-Timestamp: " + timestamp,
                       "X-Signature: " + signature};
    request.body = body;
    request.connect_timeout_ms = connect_timeout_ms_;
    request.timeout_ms = timeout_ms_;
    HttpResponse response = http_->post(std::move(request)).get();
    Call call;
    call.response = std::move(response);
    if (call.response.outcome == HttpResponse::Outcome::Answered) {
        json::ParseError error;
        call.parsed = json::parse(call.response.body, call.doc, error) && call.doc.is(json::Type::Object);
    }
    log::debug("provider_call")
        .kv("provider", name_)
        .kv("endpoint", endpoint)
        .kv("http_status", call.response.status)
        .kv("ms", call.response.seconds * 1000.0);
    return call;
}

// A session of `purpose`: the cached one while it lives, else a new one from initSession. On
// failure `failed` holds what to report (the session step sends no money, so its failures never
// make an outcome unknown).
std::optional<std::string> SkyTechnologies::open_session(const char* purpose, ProviderAnswer& failed) {
    using Clock = std::chrono::steady_clock;
    {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        auto it = sessions_.find(purpose);
        if (it != sessions_.end() && Clock::now() < it->second.second) return it->second.first;
    }
    std::string body = "{\"merchant_id\":" + json_string(merchant_id_) + ",\"purpose\":" + json_string(purpose) + "}";
    Call call = post("initSession", body, std::string_view(purpose) == "reversal");
    if (call.response.outcome != HttpResponse::Outcome::Answered) {
        failed = provider_answer(K::NotSent, "initSession: " + call.response.error);
        return std::nullopt;
    }
    const json::Value* session = call.parsed ? string_member(call.doc, "session_id") : nullptr;
    if (call.response.status != 200 || !session || session->text().empty()) {
        failed = provider_answer(K::NotSent, "initSession: " + http_failure(call));
        return std::nullopt;
    }
    // Reused until a minute before it expires (the provider says how long it lives).
    long lifetime_s = 600;
    const json::Value* expires = call.doc.find("expires_in");
    if (expires && expires->is(json::Type::Number)) {
        long given = std::strtol(expires->text().c_str(), nullptr, 10);
        if (given > 0 && given < lifetime_s) lifetime_s = given;
    }
    if (lifetime_s > 60) {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        sessions_[purpose] = {session->text(), Clock::now() + std::chrono::seconds(lifetime_s - 60)};
    }
    return session->text();
}

void SkyTechnologies::forget_session(const char* purpose, const std::string& session) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    auto it = sessions_.find(purpose);
    if (it != sessions_.end() && it->second.first == session) sessions_.erase(it);
}

// Runs `endpoint` with a session of `purpose`. A cached session the provider no longer knows
// (401 invalid_session: refused before anything ran) is replaced once and the call made again.
std::optional<SkyTechnologies::Call> SkyTechnologies::session_call(
    const char* purpose, const std::string& endpoint, const std::function<std::string(const std::string&)>& body,
    ProviderAnswer& failed) {
    for (int round = 0; round < 2; ++round) {
        std::optional<std::string> session = open_session(purpose, failed);
        if (!session) return std::nullopt;
        Call call = post(endpoint, body(*session), std::string_view(purpose) == "reversal");
        const json::Value* code = call.parsed ? string_member(call.doc, "error") : nullptr;
        bool stale = call.response.outcome == HttpResponse::Outcome::Answered && call.response.status == 401 && code &&
                     code->text() == "invalid_session";
        if (!stale || round == 1) return call;
        forget_session(purpose, *session);
    }
    return std::nullopt;
}

// The answer to a charge or reversal request.
ProviderAnswer SkyTechnologies::money_answer(const Call& call, const std::string& what) {
    if (call.response.outcome == HttpResponse::Outcome::NotSent) return provider_answer(K::NotSent, what + ": " + call.response.error);
    if (call.response.outcome == HttpResponse::Outcome::Unknown) return provider_answer(K::Unknown, what + ": " + call.response.error);
    long st = call.response.status;
    if (st == 200 && call.parsed) return status_answer(call.doc, what);
    if (st == 409) return provider_answer(K::Duplicate, what + ": duplicate_request_id");
    // 4xx: refused before anything was executed (signature, session, body): safe to send again.
    if (st >= 400 && st < 500) return provider_answer(K::NotSent, what + ": " + http_failure(call));
    // 5xx or an unreadable 200: the provider may or may not have acted.
    return provider_answer(K::Unknown, what + ": HTTP " + std::to_string(st));
}

ProviderAnswer SkyTechnologies::charge(const Operation& op) {
    ProviderAnswer failed;
    std::optional<Call> call = session_call("payment", "completeMerchantAcquiring", [&](const std::string& session) {
        return "{\"merchant_id\":" + json_string(merchant_id_) + ",\"session_id\":" + json_string(session) +
               ",\"request_id\":" + json_string(op.id) + ",\"payment_id\":" + json_string(op.payment_id) +
               ",\"method_id\":" + json_string(op.method_id) + ",\"amount_minor\":" + json_string(op.amount_minor) +
               ",\"currency\":" + json_string(op.currency) +
               ",\"paymentCompletedCallbackUrl\":" + json_string(callback_url(op.id)) + "}";
    }, failed);
    if (!call) return failed;
    return money_answer(*call, "completeMerchantAcquiring");
}

ProviderAnswer SkyTechnologies::reverse(const Operation& op) {
    if (!op.original_id) return provider_answer(K::NotSent, "reversal without its charge");
    ProviderAnswer failed;
    std::optional<Call> call = session_call("reversal", "processPaymentReversal", [&](const std::string& session) {
        return "{\"merchant_id\":" + json_string(merchant_id_) + ",\"session_id\":" + json_string(session) +
               ",\"request_id\":" + json_string(op.id) + ",\"original_request_id\":" + json_string(*op.original_id) +
               ",\"amount_minor\":" + json_string(op.amount_minor) + ",\"currency\":" + json_string(op.currency) +
               ",\"paymentCompletedCallbackUrl\":" + json_string(callback_url(op.id)) + "}";
    }, failed);
    if (!call) return failed;
    return money_answer(*call, "processPaymentReversal");
}

ProviderAnswer SkyTechnologies::status(const Operation& op) {
    ProviderAnswer failed;
    std::optional<Call> asked = session_call("payment", "paymentStatus", [&](const std::string& session) {
        return "{\"merchant_id\":" + json_string(merchant_id_) + ",\"session_id\":" + json_string(session) +
               ",\"request_id\":" + json_string(op.id) + "}";
    }, failed);
    if (!asked) return provider_answer(K::Unknown, failed.detail);   // nothing learned
    Call& call = *asked;
    if (call.response.outcome != HttpResponse::Outcome::Answered) {
        return provider_answer(K::Unknown, "paymentStatus: " + call.response.error);
    }
    if (call.response.status == 404) return provider_answer(K::NotFound, "paymentStatus: not_found");
    if (call.response.status != 200 || !call.parsed) {
        return provider_answer(K::Unknown, "paymentStatus: HTTP " + std::to_string(call.response.status));
    }
    // The answer must be about this operation, for this amount: anything else is not evidence.
    const json::Value* rid = string_member(call.doc, "request_id");
    const json::Value* amount = string_member(call.doc, "amount_minor");
    const json::Value* currency = string_member(call.doc, "currency");
    if (!rid || rid->text() != op.id || !amount || amount->text() != op.amount_minor || !currency ||
        currency->text() != op.currency) {
        return provider_answer(K::Unknown, "paymentStatus: answer does not match the operation");
    }
    return status_answer(call.doc, "paymentStatus");
}

}  // namespace paygate::daemon
