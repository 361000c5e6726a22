// API token text, hashing and the SQL of `paygatectl token` (see tokens.hpp).
#include "paygated/tokens.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "paygate/token_sync.hpp"
#include "paygated/db.hpp"
#include "paygated/migrate.hpp"

namespace paygate::daemon {

std::string token_from_bytes(std::string_view random) {
    if (random.size() != kTokenRandomBytes) throw std::invalid_argument("token_from_bytes: wrong length");
    static const char hex[] = "0123456789abcdef";
    std::string out(kTokenPrefix);
    out.reserve(kTokenLength);
    for (char ch : random) {
        auto b = static_cast<unsigned char>(ch);
        out.push_back(hex[b >> 4]);
        out.push_back(hex[b & 0xf]);
    }
    return out;
}

std::string generate_token() {
    unsigned char bytes[kTokenRandomBytes];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed: no randomness");
    std::string token = token_from_bytes(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
    OPENSSL_cleanse(bytes, sizeof bytes);
    return token;
}

bool is_token_text(std::string_view text) {
    if (text.size() != kTokenLength || text.substr(0, kTokenPrefix.size()) != kTokenPrefix) return false;
    return std::all_of(text.begin() + kTokenPrefix.size(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string token_sha256(std::string_view token) { return sha256_hex(token); }

std::string token_prefix(std::string_view token) { return std::string(token.substr(0, kTokenPrefixLength)); }

bool is_client_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

// --- SQL -------------------------------------------------------------------------------------

namespace {

std::string trimmed_error(const PGresult* r, PGconn* conn) {
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg.empty() ? "unknown error" : msg;
}

// One parameterized statement; nullptr with `error` set unless it succeeded.
PgResult run(PGconn* conn, const char* sql, const std::vector<std::string>& params, std::string& error) {
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    PgResult r(PQexecParams(conn, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
    ExecStatusType st = PQresultStatus(r.get());
    if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) return r;
    error = trimmed_error(r.get(), conn);
    return nullptr;
}

// Rolls back unless committed.
class Transaction {
public:
    explicit Transaction(PGconn* conn) : conn_(conn) {}
    ~Transaction() {
        if (open_) PgResult(PQexec(conn_, "ROLLBACK"));
    }
    bool begin(std::string& error) { return open_ = run(conn_, "BEGIN", {}, error) != nullptr; }
    bool commit(std::string& error) {
        open_ = false;
        return run(conn_, "COMMIT", {}, error) != nullptr;
    }

private:
    PGconn* conn_;
    bool open_ = false;
};

std::string value(const PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}

// The id of client `name`, or "" (and no error) when there is none.
bool client_id(PGconn* conn, const std::string& name, std::string& id, std::string& error) {
    PgResult r = run(conn, "SELECT id FROM clients WHERE name = $1::text", {name}, error);
    if (!r) return false;
    id = PQntuples(r.get()) ? value(r.get(), 0, 0) : std::string();
    return true;
}

#define PAYGATE_UTC_S(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

}  // namespace

bool create_token(PGconn* conn, const std::string& client, CreatedToken& out, std::string& error) {
    if (!is_client_name(client)) {
        error = "bad client name (1-64 characters of A-Z a-z 0-9 . _ -)";
        return false;
    }
    if (client.rfind(kPartnerClientPrefix, 0) == 0) {
        // The partner's own client owns its payments: only its API keys may act for it.
        error = "client names starting with '" + std::string(kPartnerClientPrefix) +
                "' belong to partners (paygatectl partner key create --partner NAME)";
        return false;
    }
    if (client.rfind(kMerchantClientPrefix, 0) == 0) {
        // Likewise a ZooTicket merchant's: a client token there would act on its payments (and
        // take the name its first session needs).
        error = "client names starting with '" + std::string(kMerchantClientPrefix) +
                "' belong to ZooTicket merchants (they authenticate with a JWT: paygatectl jwt mint)";
        return false;
    }
    Transaction tx(conn);
    if (!tx.begin(error)) return false;
    PgResult inserted = run(conn, "INSERT INTO clients (name) VALUES ($1::text) ON CONFLICT (name) DO NOTHING RETURNING id",
                            {client}, error);
    if (!inserted) return false;
    std::string id;
    out.client_created = PQntuples(inserted.get()) == 1;
    if (out.client_created) {
        id = value(inserted.get(), 0, 0);
    } else if (!client_id(conn, client, id, error)) {
        return false;
    } else if (id.empty()) {
        error = "client '" + client + "' vanished while being created";
        return false;
    }
    std::string token = generate_token();
    if (!run(conn, "INSERT INTO api_tokens (client_id, token_sha256, token_prefix) VALUES ($1::bigint, $2::text, $3::text)",
             {id, token_sha256(token), token_prefix(token)}, error)) {
        return false;
    }
    if (!tx.commit(error)) return false;
    out.token = std::move(token);
    return true;
}

bool revoke_token(PGconn* conn, const std::string& token, RevokeOutcome& out, std::string& error) {
    std::string hash = token_sha256(token);
    Transaction tx(conn);
    if (!tx.begin(error)) return false;
    PgResult r = run(conn,
                     "UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = $1::text AND revoked_at IS NULL",
                     {hash}, error);
    if (!r) return false;
    if (std::strcmp(PQcmdTuples(r.get()), "0") != 0) {
        out = RevokeOutcome::Revoked;
    } else {
        PgResult known = run(conn, "SELECT 1 FROM api_tokens WHERE token_sha256 = $1::text", {hash}, error);
        if (!known) return false;
        out = PQntuples(known.get()) ? RevokeOutcome::AlreadyRevoked : RevokeOutcome::Unknown;
    }
    return tx.commit(error);
}

bool revoke_client_tokens(PGconn* conn, const std::string& client, long& count, std::string& error) {
    if (!is_client_name(client)) {
        error = "bad client name (1-64 characters of A-Z a-z 0-9 . _ -)";
        return false;
    }
    Transaction tx(conn);
    if (!tx.begin(error)) return false;
    std::string id;
    if (!client_id(conn, client, id, error)) return false;
    if (id.empty()) {
        error = "no client named '" + client + "'";
        return false;
    }
    PgResult r = run(conn, "UPDATE api_tokens SET revoked_at = now() WHERE client_id = $1::bigint AND revoked_at IS NULL",
                     {id}, error);
    if (!r) return false;
    count = std::strtol(PQcmdTuples(r.get()), nullptr, 10);
    return tx.commit(error);
}

bool list_tokens(PGconn* conn, const std::optional<std::string>& client, std::vector<TokenListRow>& out,
                 std::string& error) {
    static const char* const kList =
        "SELECT t.token_prefix, c.name, " PAYGATE_UTC_S("t.created_at") ", " PAYGATE_UTC_S("t.revoked_at")
        " FROM api_tokens t JOIN clients c ON c.id = t.client_id"
        " WHERE $1::text IS NULL OR c.name = $1::text"
        " ORDER BY c.name, t.created_at, t.id";
    if (client) {
        if (!is_client_name(*client)) {
            error = "bad client name (1-64 characters of A-Z a-z 0-9 . _ -)";
            return false;
        }
        std::string id;
        if (!client_id(conn, *client, id, error)) return false;
        if (id.empty()) {
            error = "no client named '" + *client + "'";
            return false;
        }
    }
    const char* param[1] = {client ? client->c_str() : nullptr};
    PgResult r(PQexecParams(conn, kList, 1, nullptr, param, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
        error = trimmed_error(r.get(), conn);
        return false;
    }
    out.clear();
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        TokenListRow row{value(r.get(), i, 0), value(r.get(), i, 1), value(r.get(), i, 2), std::nullopt};
        if (!PQgetisnull(r.get(), i, 3)) row.revoked_at = value(r.get(), i, 3);
        out.push_back(std::move(row));
    }
    return true;
}

// --- partner API keys ----------------------------------------------------------------------

bool is_key_partner(std::string_view partner) { return token_sync::key_partner_kind(partner) != 0; }

bool is_partner_key_text(std::string_view text) {
    if (text.size() != kTokenLength || text.substr(0, kPartnerKeyPrefix.size()) != kPartnerKeyPrefix) return false;
    return std::all_of(text.begin() + kPartnerKeyPrefix.size(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

namespace {

bool check_partner(const std::string& partner, std::string& error) {
    if (is_key_partner(partner)) return true;
    error = "unknown partner '" + partner + "' (partners with API keys:";
    for (std::string_view p : token_sync::kKeyPartners) error += " " + std::string(p);
    error += ")";
    return false;
}

}  // namespace

bool create_partner_key(PGconn* conn, const std::string& partner, CreatedToken& out, std::string& error) {
    if (!check_partner(partner, error)) return false;
    std::string client = std::string(kPartnerClientPrefix) + partner;
    Transaction tx(conn);
    if (!tx.begin(error)) return false;
    PgResult inserted = run(conn, "INSERT INTO clients (name) VALUES ($1::text) ON CONFLICT (name) DO NOTHING", {client}, error);
    if (!inserted) return false;
    std::string id;
    if (!client_id(conn, client, id, error)) return false;
    std::string token = generate_token();
    std::string key = std::string(kPartnerKeyPrefix) + token.substr(kTokenPrefix.size());
    OPENSSL_cleanse(token.data(), token.size());
    if (!run(conn,
             "INSERT INTO api_tokens (client_id, token_sha256, token_prefix, partner)"
             " VALUES ($1::bigint, $2::text, $3::text, $4::text)",
             {id, token_sha256(key), token_prefix(key), partner}, error)) {
        return false;
    }
    if (!tx.commit(error)) return false;
    out.token = std::move(key);
    return true;
}

bool revoke_partner_keys(PGconn* conn, const std::string& partner, const std::optional<std::string>& key, long& count,
                         std::string& error) {
    if (!check_partner(partner, error)) return false;
    PgResult r = key ? run(conn,
                           "UPDATE api_tokens SET revoked_at = now() WHERE partner = $1::text AND token_sha256 = $2::text"
                           " AND revoked_at IS NULL",
                           {partner, token_sha256(*key)}, error)
                     : run(conn, "UPDATE api_tokens SET revoked_at = now() WHERE partner = $1::text AND revoked_at IS NULL",
                           {partner}, error);
    if (!r) return false;
    count = std::strtol(PQcmdTuples(r.get()), nullptr, 10);
    return true;
}

bool list_partner_keys(PGconn* conn, const std::string& partner, std::vector<TokenListRow>& out, std::string& error) {
    if (!check_partner(partner, error)) return false;
    PgResult r = run(conn,
                     "SELECT token_prefix, partner, " PAYGATE_UTC_S("created_at") ", " PAYGATE_UTC_S("revoked_at")
                     " FROM api_tokens WHERE partner = $1::text ORDER BY created_at, id",
                     {partner}, error);
    if (!r) return false;
    out.clear();
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        TokenListRow row{value(r.get(), i, 0), value(r.get(), i, 1), value(r.get(), i, 2), std::nullopt};
        if (!PQgetisnull(r.get(), i, 3)) row.revoked_at = value(r.get(), i, 3);
        out.push_back(std::move(row));
    }
    return true;
}

std::string format_token_table(const std::vector<TokenListRow>& rows) {
    std::vector<std::vector<std::string>> cells{{"PREFIX", "CLIENT", "CREATED", "REVOKED"}};
    for (const TokenListRow& r : rows) cells.push_back({r.prefix, r.client, r.created_at, r.revoked_at.value_or("-")});
    std::size_t width[4] = {0, 0, 0, 0};
    for (const auto& line : cells) {
        for (std::size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], line[c].size());
    }
    std::string out;
    for (const auto& line : cells) {
        for (std::size_t c = 0; c < 4; ++c) {
            out += line[c];
            if (c + 1 < 4) out.append(width[c] - line[c].size() + 2, ' ');
        }
        out.push_back('\n');
    }
    return out;
}

}  // namespace paygate::daemon
