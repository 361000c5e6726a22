// The provider interface the task engine drives (sky-technologies now; other contractors later),
// and the routing rule that picks one per payment. docs/tasks.md, docs/providers/.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "paygated/config.hpp"

namespace paygate::daemon {

// One money movement we ask of a provider (a provider_operations row).
struct Operation {
    std::string id;                  // our reference: the provider's request_id
    std::string payment_id;
    std::string provider;
    std::string kind;                // "charge", "extra_charge", "reversal"
    std::string amount_minor;        // decimal
    std::string currency;
    std::string method_id;           // the payment's method
    std::optional<std::string> original_id;   // the charge a reversal returns
    std::string state;               // provider_operations.state
    std::string accept_info_json;    // the payment's accept_info (mserver reads its payment type there)
    std::string provider_ref;        // the provider's own id of it, once known (mserver's payment id)
};

// What a provider said about an operation.
struct ProviderAnswer {
    enum class Kind {
        Completed,    // final: done
        Declined,     // final: refused (reason set)
        Processing,   // accepted, not finished: check again later
        NotFound,     // status check: the provider never recorded this reference
        Duplicate,    // the reference is known already: ask its status, never send again
        Unknown,      // timeout / broken connection after sending: outcome unknown
        NotSent,      // refused or unreachable without executing anything: safe to send again
    };
    Kind kind = Kind::Unknown;
    std::string decline_reason;
    std::string detail;              // for logs and last_error; never secrets
    // What the provider told about its own record, when it did (mserver: its payment id and the
    // full cost with commission, `total`, in minor units): stored on the operation.
    std::string provider_ref;
    std::string total_minor;
};

const char* answer_name(ProviderAnswer::Kind k);   // "completed", "not_found", ...

// An answer of `kind` with its log detail and, for a decline, its reason.
inline ProviderAnswer provider_answer(ProviderAnswer::Kind kind, std::string detail, std::string reason = {}) {
    ProviderAnswer a;
    a.kind = kind;
    a.detail = std::move(detail);
    a.decline_reason = std::move(reason);
    return a;
}

class Provider {
public:
    virtual ~Provider() = default;
    virtual const std::string& name() const = 0;
    // Sends the charge (or extra charge) / the reversal. Called only for an operation that was
    // never sent, or that a status check found unknown to the provider.
    virtual ProviderAnswer charge(const Operation& op) = 0;
    virtual ProviderAnswer reverse(const Operation& op) = 0;
    // Asks what became of `op` (by our reference).
    virtual ProviderAnswer status(const Operation& op) = 0;
};

class HttpClient;
class DaemonMetrics;

// The providers a daemon can use, built from its config (keys loaded once at start).
class Providers {
public:
    // Throws std::runtime_error with a clear message when a configured provider cannot be built
    // (unreadable key file, wrong curve, ...).
    // With `metrics`, every call is counted (MeteredProvider, metrics.hpp).
    Providers(const Config& config, std::shared_ptr<HttpClient> http, std::shared_ptr<DaemonMetrics> metrics = nullptr);
    // The provider that serves `currency` (first matching provider_route), or nullptr.
    Provider* route(const std::string& currency) const;
    Provider* find(const std::string& name) const;
    // The provider `name` as its own class (its calls beyond the interface), or nullptr. find()
    // may return a metering wrapper around it (metrics.hpp), which no dynamic_cast sees through.
    template <class T>
    T* find_as(const std::string& name) const {
        auto it = unwrapped_.find(name);
        return it == unwrapped_.end() ? nullptr : dynamic_cast<T*>(it->second);
    }

private:
    std::vector<std::pair<std::string, std::string>> routes_;
    std::map<std::string, std::unique_ptr<Provider>> by_name_;
    std::map<std::string, Provider*> unwrapped_;   // the same providers, never a wrapper
};

// The provider name the routing rule picks for `currency`, or nothing (pure: for handlers and tests).
std::optional<std::string> route_provider(const std::vector<std::pair<std::string, std::string>>& routes,
                                          const std::string& currency);

}  // namespace paygate::daemon
