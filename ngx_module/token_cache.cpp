// The worker's token list (see token_cache.hpp).
#include "token_cache.hpp"

#include <openssl/crypto.h>

#include "paygate/digest.hpp"
#include "paygate/json.hpp"

namespace paygate::module {

namespace {

bool parse_version(const json::Value* v, std::uint64_t& out) {
    if (v == nullptr || !v->is(json::Type::Number)) return false;
    const std::string& text = v->text();
    if (text.empty() || text.size() > 19) return false;
    std::uint64_t n = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = n;
    return true;
}

bool is_sha256_hex(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

}  // namespace

bool TokenCache::apply(std::string_view body, Clock::time_point now, std::string& error) {
    json::Value doc;
    json::ParseError perr;
    if (!json::parse(body, doc, perr) || !doc.is(json::Type::Object)) {
        error = "auth.tokens reply is not a JSON object";
        return false;
    }
    std::uint64_t version = 0;
    if (!parse_version(doc.find("version"), version)) {
        error = "auth.tokens reply lacks a version";
        return false;
    }
    const json::Value* unchanged = doc.find("unchanged");
    if (unchanged != nullptr && unchanged->is(json::Type::Bool) && unchanged->boolean()) {
        if (!loaded_ || version != version_) {
            error = "auth.tokens says unchanged for a version we do not have";
            return false;
        }
        confirmed_at_ = now;
        return true;
    }
    const json::Value* tokens = doc.find("tokens");
    if (tokens == nullptr || !tokens->is(json::Type::Array)) {
        error = "auth.tokens reply lacks tokens";
        return false;
    }
    std::unordered_map<std::string, std::string> next;
    next.reserve(tokens->items().size());
    for (const json::Value& item : tokens->items()) {
        const json::Value* hash = item.find("sha256");
        const json::Value* client = item.find("client_id");
        if (hash == nullptr || client == nullptr || !hash->is(json::Type::String) ||
            !client->is(json::Type::String) || !is_sha256_hex(hash->text()) || client->text().empty()) {
            error = "auth.tokens reply has a malformed token entry";
            return false;
        }
        next.emplace(hash->text(), client->text());
    }
    clients_by_hash_.swap(next);
    version_ = version;
    loaded_ = true;
    confirmed_at_ = now;
    return true;
}

bool TokenCache::usable(Clock::time_point now) const { return loaded_ && now - confirmed_at_ <= kMaxStaleness; }

std::optional<std::string> TokenCache::client_of(std::string_view token) const {
    if (token.empty()) return std::nullopt;
    std::string hash = sha256_hex(token);
    auto it = clients_by_hash_.find(hash);
    // The map lookup compares hashes, which tell an attacker nothing about the token; the final
    // constant-time check is belt and braces.
    if (it == clients_by_hash_.end() || CRYPTO_memcmp(it->first.data(), hash.data(), hash.size()) != 0) {
        return std::nullopt;
    }
    return it->second;
}

}  // namespace paygate::module
