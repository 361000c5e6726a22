// The module's token list: applying auth.tokens replies, lookups by hash, staleness.
#include "cmocka.hpp"

#include <string>

#include "paygate/digest.hpp"
#include "token_cache.hpp"

using paygate::module::TokenCache;
using paygate::sha256_hex;
using Clock = TokenCache::Clock;

namespace {

const std::string kToken = "pgt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string list_body(std::uint64_t version, const std::string& token, const std::string& client) {
    return "{\"version\":" + std::to_string(version) + ",\"tokens\":[{\"sha256\":\"" + sha256_hex(token) +
           "\",\"client_id\":\"" + client + "\"}]}";
}

void sha256_matches_known_vector(void**) {
    assert_string_equal(sha256_hex("abc").c_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

void unusable_until_loaded(void**) {
    TokenCache cache;
    assert_false(cache.usable(Clock::now()));
    assert_false(cache.client_of(kToken).has_value());
}

void lookup_by_token(void**) {
    TokenCache cache;
    std::string error;
    auto now = Clock::now();
    assert_true(cache.apply(list_body(7, kToken, "12"), now, error));
    assert_true(cache.usable(now));
    assert_int_equal(cache.version(), 7);
    assert_string_equal(cache.client_of(kToken)->c_str(), "12");
    assert_false(cache.client_of("").has_value());
    assert_false(cache.client_of(kToken + "x").has_value());
    assert_false(cache.client_of(sha256_hex(kToken)).has_value());   // the hash is not a token
}

void revocation_replaces_the_list(void**) {
    TokenCache cache;
    std::string error;
    auto now = Clock::now();
    assert_true(cache.apply(list_body(7, kToken, "12"), now, error));
    assert_true(cache.apply("{\"version\":8,\"tokens\":[]}", now, error));
    assert_false(cache.client_of(kToken).has_value());
    assert_int_equal(cache.size(), 0);
}

void unchanged_confirms_freshness(void**) {
    TokenCache cache;
    std::string error;
    auto start = Clock::now();
    assert_true(cache.apply(list_body(3, kToken, "1"), start, error));
    auto later = start + TokenCache::kMaxStaleness + std::chrono::milliseconds(1);
    assert_false(cache.usable(later));
    assert_true(cache.apply("{\"version\":3,\"unchanged\":true}", later, error));
    assert_true(cache.usable(later));
    // "unchanged" for a version we do not hold is refused.
    assert_false(cache.apply("{\"version\":4,\"unchanged\":true}", later, error));
    TokenCache empty;
    assert_false(empty.apply("{\"version\":0,\"unchanged\":true}", later, error));
}

void malformed_replies_change_nothing(void**) {
    TokenCache cache;
    std::string error;
    auto now = Clock::now();
    assert_true(cache.apply(list_body(5, kToken, "9"), now, error));
    const std::string bad[] = {
        "", "[]", "{", "{\"tokens\":[]}", "{\"version\":\"5\",\"tokens\":[]}", "{\"version\":-1,\"tokens\":[]}",
        "{\"version\":1.5,\"tokens\":[]}", "{\"version\":6}", "{\"version\":6,\"tokens\":{}}",
        "{\"version\":6,\"tokens\":[{\"sha256\":\"zz\",\"client_id\":\"1\"}]}",
        "{\"version\":6,\"tokens\":[{\"sha256\":\"" + std::string(64, 'A') + "\",\"client_id\":\"1\"}]}",
        "{\"version\":6,\"tokens\":[{\"sha256\":\"" + std::string(64, 'a') + "\"}]}",
    };
    for (const std::string& body : bad) {
        assert_false(cache.apply(body, now, error));
        assert_int_equal(cache.version(), 5);
        assert_string_equal(cache.client_of(kToken)->c_str(), "9");
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_matches_known_vector),
        cmocka_unit_test(unusable_until_loaded),
        cmocka_unit_test(lookup_by_token),
        cmocka_unit_test(revocation_replaces_the_list),
        cmocka_unit_test(unchanged_confirms_freshness),
        cmocka_unit_test(malformed_replies_change_nothing),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
