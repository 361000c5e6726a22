// Handler of the internal route auth.tokens: the nginx module's poll for token changes.
//
// Request: param `since` = the change version the module holds (absent or "0": none), `limit` =
// the most entries it wants in one reply. Reply 200, content-type token_sync::kContentType: one
// chunk of the changes above `since` (paygate/token_sync.hpp; docs/daemon.md). Served on the
// broker thread (Runs::Inline) from the token feed's memory: no worker, no database, so a long
// payment queue never delays it. 503 until the feed has read the table once.
#include "paygated/handlers.hpp"
#include "paygated/token_feed.hpp"

#include "paygate/json_error.hpp"
#include "paygate/token_sync.hpp"

namespace paygate::daemon {

namespace {

std::optional<std::uint64_t> parse_decimal(const std::string& text, std::size_t max_digits) {
    if (text.empty() || text.size() > max_digits) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
}

}  // namespace

std::optional<std::uint64_t> parse_token_version(const std::string* since) {
    if (!since || since->empty()) return 0;
    return parse_decimal(*since, 18);
}

std::optional<std::size_t> parse_token_limit(const std::string* limit) {
    if (!limit) return token_sync::kMaxChunkEntries;
    std::optional<std::uint64_t> n = parse_decimal(*limit, 6);
    if (!n || *n == 0 || *n > token_sync::kMaxChunkEntries) return std::nullopt;
    return static_cast<std::size_t>(*n);
}

ipc::Reply handle_auth_tokens(const ipc::Request& request, WorkerContext& ctx) {
    std::optional<std::uint64_t> since = parse_token_version(request.param("since"));
    if (!since) return ipc::error_reply(request.id, 400, "validation_error", "since: must be a decimal version");
    std::optional<std::size_t> limit = parse_token_limit(request.param("limit"));
    if (!limit) return ipc::error_reply(request.id, 400, "validation_error", "limit: must be 1-10000");
    ipc::Reply reply;
    if (ctx.tokens == nullptr || !ctx.tokens->read(*since, *limit, TokenLog::Clock::now(), reply.body)) {
        return ipc::error_reply(request.id, 503, "service_unavailable", "the token list is not loaded yet; retry later");
    }
    reply.status = 200;
    reply.headers.emplace_back("content-type", std::string(token_sync::kContentType));
    return reply;
}

}  // namespace paygate::daemon
