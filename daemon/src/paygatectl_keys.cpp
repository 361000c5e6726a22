// paygatectl keys / jwt: key material. CURVE key pairs of the nginx <-> paygated link, and the
// ZooTicket merchant's JWT keys and test tokens.
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "paygate/curve.hpp"
#include "paygate/json.hpp"
#include "paygate/jwt.hpp"
#include "paygatectl.hpp"
#include "paygated/ctl.hpp"

namespace paygate::daemon::paygatectl {

const char* const kKeysUsage =
    "paygatectl keys generate --out DIR --name NAME\n"
    "       paygatectl keys public --key FILE\n"
    "  generate: a new CURVE key pair for the nginx <-> paygated link (docs/security.md):\n"
    "            DIR/NAME.key, the secret key (mode 0600), and DIR/NAME.pub, its public key\n"
    "            labelled NAME (mode 0644); prints the public key. Never replaces a file.\n"
    "            e.g. NAME paygated for a daemon, nginx-1 for a module.\n"
    "  public:   prints the public key line of a secret key FILE (for curve_allowed_keys).";

int cmd_keys(const std::vector<std::string>& all) {
    if (all.empty()) return usage_error("keys: which action? (generate, public)", kKeysUsage);
    const std::string action = all.front();
    std::vector<std::string> args(all.begin() + 1, all.end());
    std::map<std::string, std::string> options;
    std::string error;
    if (action == "generate") {
        if (!parse_options(args, {"out", "name"}, options, error)) return usage_error("keys generate: " + error, kKeysUsage);
        if (!options.count("out") || !options.count("name")) {
            return usage_error("keys generate: --out DIR and --name NAME are required", kKeysUsage);
        }
        if (!is_key_name(options["name"])) {
            return usage_error("keys generate: bad name '" + options["name"] +
                                   "' (1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.')",
                               kKeysUsage);
        }
        std::string public_key;
        if (!write_key_pair(options["out"], options["name"], public_key, error)) return fail("keys generate: " + error);
        std::cerr << "paygatectl: wrote " << options["out"] << "/" << options["name"] << ".key (secret, 0600) and "
                  << options["out"] << "/" << options["name"] << ".pub" << std::endl;
        std::cout << public_key << " " << options["name"] << std::endl;
        return 0;
    }
    if (action == "public") {
        if (!parse_options(args, {"key"}, options, error) || !options.count("key")) {
            return usage_error("keys public: --key FILE is required", kKeysUsage);
        }
        paygate::curve::KeyPair pair;
        if (!paygate::curve::load_secret_key(options["key"], pair, error)) return fail("keys public: " + error);
        std::cout << pair.public_key << std::endl;
        return 0;
    }
    return usage_error("keys: unknown action '" + action + "'", kKeysUsage);
}

const char* const kJwtUsage =
    "paygatectl jwt keygen --alg ES256|HS256 --out PREFIX\n"
    "       paygatectl jwt mint --alg ES256|HS256 --kid KID --key FILE --merchant ID [--ttl SECONDS]\n"
    "                           [--iss ISSUER] [--aud AUDIENCE] [--claim NAME]\n"
    "  keygen: ES256 writes PREFIX.key (private, 0600: the merchant's signer) and PREFIX.pub (for\n"
    "          paygate_jwt_key KID ES256 PREFIX.pub); HS256 writes PREFIX.secret (0600), shared by\n"
    "          both sides. Never replaces a file.\n"
    "  mint:   prints a merchant Bearer token (docs/partners/zooticket.md) signed with FILE (ES256:\n"
    "          the private key; HS256: the secret), valid for --ttl seconds (default 3600), naming\n"
    "          the merchant in claim --claim (default merchant_id). For tests and the demo.";

int cmd_jwt(const std::vector<std::string>& all) {
    if (all.empty()) return usage_error("jwt: which action? (keygen, mint)", kJwtUsage);
    const std::string action = all.front();
    std::vector<std::string> args(all.begin() + 1, all.end());
    std::map<std::string, std::string> options;
    std::string error;
    if (action == "keygen") {
        if (!parse_options(args, {"alg", "out"}, options, error) || !options.count("alg") || !options.count("out")) {
            return usage_error("jwt keygen: --alg ES256|HS256 and --out PREFIX are required", kJwtUsage);
        }
        std::optional<paygate::jwt::Algorithm> alg = paygate::jwt::parse_algorithm(options["alg"]);
        if (!alg) return usage_error("jwt keygen: --alg must be ES256 or HS256", kJwtUsage);
        const std::string& prefix = options["out"];
        if (*alg == paygate::jwt::Algorithm::HS256) {
            if (!write_new_file(prefix + ".secret", paygate::jwt::generate_hs256_secret() + "\n", 0600, error)) {
                return fail("jwt keygen: " + error);
            }
            std::cerr << "paygatectl: wrote " << prefix << ".secret (0600)" << std::endl;
            return 0;
        }
        std::string private_pem, public_pem;
        paygate::jwt::generate_es256_pair(private_pem, public_pem);
        if (!write_new_file(prefix + ".key", private_pem, 0600, error) ||
            !write_new_file(prefix + ".pub", public_pem, 0644, error)) {
            return fail("jwt keygen: " + error);
        }
        std::cerr << "paygatectl: wrote " << prefix << ".key (private, 0600) and " << prefix << ".pub" << std::endl;
        return 0;
    }
    if (action != "mint") return usage_error("jwt: unknown action '" + action + "'", kJwtUsage);
    if (!parse_options(args, {"alg", "kid", "key", "merchant", "ttl", "iss", "aud", "claim"}, options, error)) {
        return usage_error("jwt mint: " + error, kJwtUsage);
    }
    for (const char* required : {"alg", "kid", "key", "merchant"}) {
        if (!options.count(required)) return usage_error(std::string("jwt mint: --") + required + " is required", kJwtUsage);
    }
    std::optional<paygate::jwt::Algorithm> alg = paygate::jwt::parse_algorithm(options["alg"]);
    if (!alg) return usage_error("jwt mint: --alg must be ES256 or HS256", kJwtUsage);
    if (!paygate::jwt::valid_kid(options["kid"]) || !paygate::jwt::valid_kid(options["merchant"])) {
        return usage_error("jwt mint: --kid and --merchant are 1-64 of A-Z a-z 0-9 . _ -", kJwtUsage);
    }
    const std::string claim = options.count("claim") ? options["claim"] : "merchant_id";
    long ttl = 3600;
    if (options.count("ttl")) {
        char* end = nullptr;
        ttl = std::strtol(options["ttl"].c_str(), &end, 10);
        if (options["ttl"].empty() || *end != '\0' || ttl < 1 || ttl > 366L * 86400) {
            return usage_error("jwt mint: --ttl takes seconds, 1 to a year", kJwtUsage);
        }
    }
    std::optional<std::string> key = paygate::jwt::load_signing_key(*alg, options["key"], error);
    if (!key) return fail("jwt mint: " + error);
    const long now = static_cast<long>(std::time(nullptr));
    std::string claims = "{";
    paygate::json::append_string(claims, claim);
    claims += ":";
    paygate::json::append_string(claims, options["merchant"]);
    claims += ",\"iat\":" + std::to_string(now) + ",\"exp\":" + std::to_string(now + ttl);
    for (const char* name : {"iss", "aud"}) {
        if (!options.count(name)) continue;
        claims += std::string(",\"") + name + "\":";
        paygate::json::append_string(claims, options[name]);
    }
    claims += "}";
    std::cout << (*alg == paygate::jwt::Algorithm::HS256 ? paygate::jwt::sign_hs256(*key, options["kid"], claims)
                                                         : paygate::jwt::sign_es256(*key, options["kid"], claims))
              << std::endl;
    return 0;
}

}  // namespace paygate::daemon::paygatectl
