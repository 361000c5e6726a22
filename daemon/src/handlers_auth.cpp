// Handler of the internal route auth.tokens: the nginx module's poll for the set of valid tokens.
//
// Request: param `since` = the version the module holds (absent or "0": it holds none). Reply 200:
//   {"version":N,"unchanged":true}                                   N == since (since != 0)
//   {"version":N,"tokens":[{"sha256":"<hex>","client_id":"<id>"}...]} every non-revoked token
// N is max(api_tokens.version) (0 when there are no tokens); see sql/0002_payments.sql.
#include "paygated/handlers.hpp"
#include "paygated/store.hpp"

namespace paygate::daemon {

std::optional<std::string> parse_token_version(const std::string* since) {
    if (!since || since->empty()) return std::string("0");
    if (since->size() > 18) return std::nullopt;
    for (char c : *since) {
        if (c < '0' || c > '9') return std::nullopt;
    }
    std::size_t first = since->find_first_not_of('0');
    return first == std::string::npos ? std::string("0") : since->substr(first);
}

ipc::Reply handle_auth_tokens(const ipc::Request& request, WorkerContext& ctx) {
    return guarded(request, ctx, [&] {
        std::optional<std::string> since = parse_token_version(request.param("since"));
        if (!since) throw Refusal{400, "validation_error", "since: must be a decimal version"};
        Session s(ctx.db);
        TokenSnapshot snap = read_tokens(s, *since);
        using json::Value;
        if (snap.unchanged) {
            return value_reply(200, Value::object({{"version", Value::number(snap.version)},
                                                   {"unchanged", Value::from_bool(true)}}));
        }
        std::vector<Value> tokens;
        tokens.reserve(snap.tokens.size());
        for (TokenEntry& t : snap.tokens) {
            tokens.push_back(Value::object({{"sha256", Value::string(std::move(t.sha256))},
                                            {"client_id", Value::string(std::move(t.client_id))}}));
        }
        return value_reply(200, Value::object({{"version", Value::number(snap.version)},
                                               {"tokens", Value::array(std::move(tokens))}}));
    });
}

}  // namespace paygate::daemon
