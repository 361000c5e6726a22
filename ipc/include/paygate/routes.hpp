// The route table: which (method, path) pairs paygate serves and under which route name.
//
// The nginx module matches a request against this table (404/405 never leave nginx) and sends the
// route name plus the path parameters; the daemon dispatches on the route name. Both sides use
// this one table, so a route exists in exactly one place.
#pragma once

#include <string_view>
#include <vector>

#include "paygate/ipc.hpp"

namespace paygate::routes {

enum class Access {
    Public,   // no credentials (health, ping)
    Client,   // x_auth_token checked by the module; the daemon gets the client id as principal
    Partner,  // a partner's callback: capability URL tag + Standard Webhooks signature, checked by
              // the module; the daemon gets "partner:<name>" and the URL's reference
    AppToken, // a partner's notification with app_id + access_token = sha1(app_id + app_secret)
              // (mserver, seed 003), checked by the module; the daemon gets "partner:<name>"
    MerchantJwt, // a merchant's Bearer JWT (ZooTicket, seed 002), verified by the module
                 // (paygate_jwt_key); the daemon gets "merchant:<merchant claim>"
    PartnerKey, // a partner calling our API (WhiteBird, seed 004) with its X-Api-Key, checked by the
                // module against the synced key table; the daemon gets "partner:<name>"
    PathToken,  // the pattern's {token} segment is a bearer credential the daemon checks (the
                // hosted payment page's link): the module masks it in $uri and the request line
};

struct Route {
    std::string_view name;     // what the daemon dispatches on
    ipc::Method method;
    std::string_view pattern;  // "/api/v1/payment/{payment_id}/retrieve": {x} is one path segment
    Access access = Access::Public;
    std::string_view partner = {};   // Access::Partner/AppToken/PartnerKey: whose keys verify it ("sky-technologies")
};

// Routes the module itself calls on the daemon; never reachable over HTTP.
inline constexpr std::string_view kAuthTokensRoute = "auth.tokens";

// Every route paygate serves.
const std::vector<Route>& table();

enum class MatchResult { Found, NotFound, MethodNotAllowed };

struct Match {
    MatchResult result = MatchResult::NotFound;
    const Route* route = nullptr;
    std::vector<ipc::NameValue> params;
    std::string allowed;       // for MethodNotAllowed: the "Allow" header value, e.g. "GET, POST"
};

// True for the ZooTicket merchant surface's paths (/v1/...): their errors use its envelope
// ({"success": false, ...}), also the route table's own 404 and 405.
bool merchant_surface(std::string_view path);

// `method` is the request's method name as sent ("GET"; any other name only ever matches nothing),
// `path` the decoded URI path without query string. A trailing slash is not significant.
Match match(std::string_view method, std::string_view path);

}  // namespace paygate::routes
