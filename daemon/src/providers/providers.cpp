// Provider routing: which provider serves a payment, by the config's provider_route rules.
#include "paygated/provider.hpp"

#include "paygated/metrics.hpp"
#include "paygated/mserver.hpp"
#include "paygated/sky_technologies.hpp"

namespace paygate::daemon {

const char* answer_name(ProviderAnswer::Kind k) {
    switch (k) {
        case ProviderAnswer::Kind::Completed: return "completed";
        case ProviderAnswer::Kind::Declined: return "declined";
        case ProviderAnswer::Kind::Processing: return "processing";
        case ProviderAnswer::Kind::NotFound: return "not_found";
        case ProviderAnswer::Kind::Duplicate: return "duplicate";
        case ProviderAnswer::Kind::Unknown: return "unknown";
        case ProviderAnswer::Kind::NotSent: return "not_sent";
    }
    return "unknown";
}

std::optional<std::string> route_provider(const std::vector<std::pair<std::string, std::string>>& routes,
                                          const std::string& currency) {
    for (const auto& [match, provider] : routes) {
        if (match == "*" || match == currency) return provider;
    }
    return std::nullopt;
}

Providers::Providers(const Config& config, std::shared_ptr<HttpClient> http, std::shared_ptr<DaemonMetrics> metrics)
    : routes_(config.provider_routes) {
    for (const auto& route : routes_) {
        if (route.second == "sky-technologies" && !by_name_.count(route.second)) {
            by_name_.emplace(route.second, std::make_unique<SkyTechnologies>(config, http));
        }
        if (route.second == "mserver" && !by_name_.count(route.second)) {
            by_name_.emplace(route.second, std::make_unique<Mserver>(config, http));
        }
    }
    for (auto& [name, provider] : by_name_) unwrapped_[name] = provider.get();
    if (metrics) {
        for (auto& [name, provider] : by_name_) provider = std::make_unique<MeteredProvider>(std::move(provider), metrics);
    }
}

Provider* Providers::route(const std::string& currency) const {
    std::optional<std::string> name = route_provider(routes_, currency);
    return name ? find(*name) : nullptr;
}

Provider* Providers::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second.get();
}

}  // namespace paygate::daemon
