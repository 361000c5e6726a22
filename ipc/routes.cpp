// The route table and its matcher (see routes.hpp).
#include "paygate/routes.hpp"

namespace paygate::routes {

namespace {

std::string_view trim_slashes(std::string_view path) {
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    if (!path.empty() && path.back() == '/') path.remove_suffix(1);
    return path;
}

// Segment by segment. A path has exactly as many segments as it has '/' plus one, empty ones
// included, so "health/" (what is left of "/health//") is two segments and never "health".
bool match_pattern(std::string_view pattern, std::string_view path, std::vector<ipc::NameValue>& params) {
    std::string_view pat = trim_slashes(pattern);
    std::string_view got = trim_slashes(path);
    params.clear();
    while (true) {
        const std::size_t pat_slash = pat.find('/');
        const std::size_t got_slash = got.find('/');
        std::string_view want = pat.substr(0, pat_slash);
        std::string_view seg = got.substr(0, got_slash);
        if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
            if (seg.empty()) return false;
            params.emplace_back(std::string(want.substr(1, want.size() - 2)), std::string(seg));
        } else if (want != seg) {
            return false;
        }
        if ((pat_slash == std::string_view::npos) != (got_slash == std::string_view::npos)) return false;
        if (pat_slash == std::string_view::npos) return true;
        pat.remove_prefix(pat_slash + 1);
        got.remove_prefix(got_slash + 1);
    }
}

}  // namespace

const std::vector<Route>& table() {
    static const std::vector<Route> routes = {
        {"health", ipc::Method::Get, "/health"},
        {"ping", ipc::Method::Get, "/ping"},
        {"health", ipc::Method::Get, "/v1/health"},   // the ZooTicket surface's alias (seed 002)
        {"payment.create", ipc::Method::Post, "/api/v1/payment/create", Access::Client},
        {"payment.retrieve", ipc::Method::Get, "/api/v1/payment/{payment_id}/retrieve", Access::Client},
        {"payment.status", ipc::Method::Get, "/api/v1/payment/{payment_id}/retrieve/status", Access::Client},
        {"payment.cancel", ipc::Method::Post, "/api/v1/payment/{payment_id}/cancel", Access::Client},
        {"payment.edit", ipc::Method::Post, "/api/v1/payment/{payment_id}/edit", Access::Client},
        {"payment.accept", ipc::Method::Post, "/api/v1/payment/{payment_id}/accept", Access::Client},
        {"payment.extra_charge", ipc::Method::Post, "/api/v1/payment/{payment_id}/extra_charge", Access::Client},
        {"payment.refund", ipc::Method::Post, "/api/v1/payment/{payment_id}/refund", Access::Client},
        {"zooticket.session.create", ipc::Method::Post, "/v1/payments/sessions", Access::MerchantJwt},
        {"zooticket.payment.get", ipc::Method::Get, "/v1/payments/{payment_id}", Access::MerchantJwt},
        {"zooticket.payment.put", ipc::Method::Put, "/v1/payments/{payment_id}", Access::MerchantJwt},
        {"zooticket.payment.patch", ipc::Method::Patch, "/v1/payments/{payment_id}", Access::MerchantJwt},
        {"zooticket.payment.delete", ipc::Method::Delete, "/v1/payments/{payment_id}", Access::MerchantJwt},
        // The hosted payment page (confirmation_url): the token in the path is the credential.
        {"zooticket.page.show", ipc::Method::Get, "/pay/{token}", Access::PathToken},
        {"zooticket.page.pay", ipc::Method::Post, "/pay/{token}/pay", Access::PathToken},
        {"zooticket.page.cancel", ipc::Method::Post, "/pay/{token}/cancel", Access::PathToken},
        {"callback.sky_technologies", ipc::Method::Post, "/callbacks/sky-technologies/v1/on_payment_completed",
         Access::Partner, "sky-technologies"},
        {"callback.mserver", ipc::Method::Post, "/callbacks/mserver/notify", Access::AppToken, "mserver"},
        {"whitebird.order", ipc::Method::Post, "/partners/whitebird/orders", Access::PartnerKey, "whitebird"},
        {"whitebird.timeout", ipc::Method::Post, "/partners/whitebird/timeout", Access::PartnerKey, "whitebird"},
    };
    return routes;
}

bool merchant_surface(std::string_view path) { return path == "/v1" || path.substr(0, 4) == "/v1/"; }

Match match(std::string_view method, std::string_view path) {
    Match m;
    std::vector<ipc::NameValue> params;
    for (const Route& route : table()) {
        if (!match_pattern(route.pattern, path, params)) continue;
        if (ipc::method_name(route.method) == method) {
            m.result = MatchResult::Found;
            m.route = &route;
            m.params = std::move(params);
            m.allowed.clear();
            return m;
        }
        m.result = MatchResult::MethodNotAllowed;
        if (!m.allowed.empty()) m.allowed += ", ";
        m.allowed += ipc::method_name(route.method);
    }
    return m;
}

}  // namespace paygate::routes
