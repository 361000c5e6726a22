// The sky-technologies provider adapter (seed 001): see docs/providers/sky-technologies.md.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "paygate/json.hpp"
#include "paygated/http_client.hpp"
#include "paygated/provider.hpp"

namespace paygate::crypto {
class EcdsaPrivateKey;
}
namespace paygate::capability {
class Keyring;
}

namespace paygate::daemon {

class SkyTechnologies final : public Provider {
public:
    // Loads both private keys and the callback keyring; throws std::runtime_error naming the
    // config key that is wrong.
    SkyTechnologies(const Config& config, std::shared_ptr<HttpClient> http);
    ~SkyTechnologies() override;

    const std::string& name() const override { return name_; }
    ProviderAnswer charge(const Operation& op) override;
    ProviderAnswer reverse(const Operation& op) override;
    ProviderAnswer status(const Operation& op) override;

    // The capability URL the provider calls back for operation `operation_id`.
    std::string callback_url(const std::string& operation_id) const;

private:
    struct Call {
        HttpResponse response;
        json::Value doc;
        bool parsed = false;   // a JSON object answer
    };
    Call post(const std::string& endpoint, const std::string& body, bool reversal_key);
    std::optional<std::string> open_session(const char* purpose, ProviderAnswer& failed);
    void forget_session(const char* purpose, const std::string& session);
    std::optional<Call> session_call(const char* purpose, const std::string& endpoint,
                                     const std::function<std::string(const std::string&)>& body, ProviderAnswer& failed);
    static ProviderAnswer money_answer(const Call& call, const std::string& what);
    static std::string http_failure(const Call& call);

    std::string name_;
    std::string url_;
    std::string merchant_id_;
    std::string callback_base_url_;
    long connect_timeout_ms_;
    long timeout_ms_;
    std::shared_ptr<HttpClient> http_;
    std::unique_ptr<crypto::EcdsaPrivateKey> payment_key_;
    std::unique_ptr<crypto::EcdsaPrivateKey> reversal_key_;
    std::unique_ptr<capability::Keyring> callback_keys_;
    std::mutex sessions_mutex_;
    // purpose -> (session id, reuse until): one initSession serves many calls (seed 001's API
    // hands out sessions that live expires_in seconds).
    std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> sessions_;
};

}  // namespace paygate::daemon
