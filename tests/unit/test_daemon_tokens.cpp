// API tokens without a database: token text and hash, client names, the `paygatectl token list`
// table, auth.tokens' parameters and its handler, which answers from the token feed's memory.
#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "paygate/routes.hpp"
#include "paygated/handlers.hpp"
#include "paygate/token_sync.hpp"
#include "paygated/log.hpp"
#include "paygated/token_feed.hpp"
#include "paygated/tokens.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using namespace paygate;
using namespace paygate::daemon;

namespace {

void token_text_from_bytes(void**) {
    std::string zeros(kTokenRandomBytes, '\0');
    assert_string_equal(token_from_bytes(zeros).c_str(), ("pgt_" + std::string(64, '0')).c_str());
    std::string counting;
    for (int i = 0; i < 32; ++i) counting.push_back(static_cast<char>(i));
    assert_string_equal(token_from_bytes(counting).c_str(),
                        "pgt_000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    std::string high(kTokenRandomBytes, '\xff');
    assert_string_equal(token_from_bytes(high).c_str(), ("pgt_" + std::string(64, 'f')).c_str());
    bool threw = false;
    try {
        token_from_bytes("short");
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    assert_true(threw);
}

void generated_tokens_are_well_formed_and_distinct(void**) {
    std::set<std::string> seen;
    for (int i = 0; i < 200; ++i) {
        std::string t = generate_token();
        assert_int_equal(t.size(), kTokenLength);
        assert_int_equal(t.size(), 68);
        assert_true(is_token_text(t));
        assert_true(seen.insert(t).second);
    }
}

void token_text_recognized(void**) {
    std::string good = "pgt_" + std::string(64, 'a');
    assert_true(is_token_text(good));
    assert_true(is_token_text("pgt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(is_token_text(""));
    assert_false(is_token_text("pgt_"));
    assert_false(is_token_text("pgt_" + std::string(63, 'a')));
    assert_false(is_token_text("pgt_" + std::string(65, 'a')));
    assert_false(is_token_text("pgt_" + std::string(64, 'A')));   // lower-case only
    assert_false(is_token_text("pgt_" + std::string(63, 'a') + "g"));
    assert_false(is_token_text("PGT_" + std::string(64, 'a')));
    assert_false(is_token_text("xyz_" + std::string(64, 'a')));
    assert_false(is_token_text(std::string(68, 'a')));
    assert_false(is_token_text(" pgt_" + std::string(64, 'a')));
}

void token_hash_and_prefix(void**) {
    // sha256("pgt_" + 64 zeros), lower-case hex: what api_tokens.token_sha256 holds.
    std::string token = "pgt_" + std::string(64, '0');
    assert_string_equal(token_sha256(token).c_str(), "2a20c6743e7f5f204e1c50a8c9eef58ab0a51f0672b18727d574523da790a7b9");
    assert_string_equal(token_sha256("abc").c_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(token_prefix(token).c_str(), "pgt_0000");
    std::string t = generate_token();
    assert_int_equal(token_prefix(t).size(), kTokenPrefixLength);
    assert_true(t.compare(0, kTokenPrefixLength, token_prefix(t)) == 0);
    std::string h = token_sha256(t);
    assert_int_equal(h.size(), 64);
    assert_true(h.find_first_not_of("0123456789abcdef") == std::string::npos);
}

void client_names(void**) {
    for (const char* ok : {"acme", "a", "ACME-shop_2.eu", "0", "x.y-z_W"}) assert_true(is_client_name(ok));
    assert_true(is_client_name(std::string(64, 'c')));
    assert_false(is_client_name(std::string(65, 'c')));
    for (const char* bad : {"", "a b", "a/b", "a:b", "naïve", "a\nb", "tab\t", "quote'", "semi;colon", "@x"}) {
        assert_false(is_client_name(bad));
    }
    assert_false(is_client_name(std::string("a\0b", 3)));
}

void token_table(void**) {
    std::vector<TokenListRow> rows = {
        {"pgt_1a2b", "acme", "2026-11-24T10:00:00Z", std::nullopt},
        {"pgt_ffff", "a-much-longer-name", "2026-11-24T10:00:01Z", std::string("2026-11-25T08:30:00Z")},
    };
    std::string expected =
        "PREFIX    CLIENT              CREATED               REVOKED\n"
        "pgt_1a2b  acme                2026-11-24T10:00:00Z  -\n"
        "pgt_ffff  a-much-longer-name  2026-11-24T10:00:01Z  2026-11-25T08:30:00Z\n";
    assert_string_equal(format_token_table(rows).c_str(), expected.c_str());
    assert_string_equal(format_token_table({}).c_str(), "PREFIX  CLIENT  CREATED  REVOKED\n");
}

void since_and_limit_parsing(void**) {
    assert_int_equal(*parse_token_version(nullptr), 0);
    std::string s;
    assert_int_equal(*parse_token_version(&s), 0);
    for (auto [in, out] : {std::pair<const char*, std::uint64_t>{"0", 0}, {"000", 0}, {"7", 7}, {"0042", 42},
                           {"999999999999999999", 999999999999999999ULL}}) {
        s = in;
        std::optional<std::uint64_t> v = parse_token_version(&s);
        assert_true(v.has_value());
        assert_int_equal(*v, out);
    }
    for (const char* bad : {"-1", "+1", "1.0", "1e3", " 1", "1 ", "x", "0x10", "1000000000000000000"}) {
        s = bad;
        assert_false(parse_token_version(&s).has_value());
    }
    assert_int_equal(*parse_token_limit(nullptr), token_sync::kMaxChunkEntries);
    for (auto [in, out] : {std::pair<const char*, std::size_t>{"1", 1}, {"4096", 4096}, {"10000", 10000}}) {
        s = in;
        assert_int_equal(*parse_token_limit(&s), out);
    }
    for (const char* bad : {"", "0", "10001", "-5", "1k", "9999999"}) {
        s = bad;
        assert_false(parse_token_limit(&s).has_value());
    }
}

ipc::Request request(const char* route) {
    ipc::Request r;
    r.id = 11;
    r.route = route;
    r.request_id = "rid-tokens";
    return r;
}

Db unreachable_db() {
    return Db("host=127.0.0.1 port=1 dbname=none user=none", std::make_shared<RetryGate>(std::chrono::milliseconds(2000)),
              3);
}

// auth.tokens needs no database: it answers from the feed's memory, or 503 until that is loaded.
void auth_tokens_from_the_feed(void**) {
    Db db = unreachable_db();
    WorkerContext ctx{0, db};
    ipc::Request r = request("auth.tokens");
    ipc::Reply reply = dispatch(r, ctx);   // no feed at all (a worker's context)
    assert_int_equal(reply.id, 11);
    assert_int_equal(reply.status, 503);
    TokenLog log;
    ctx.tokens = &log;
    reply = dispatch(r, ctx);              // a feed that has not read the table yet
    assert_int_equal(reply.status, 503);
    assert_string_equal(reply.body.c_str(),
                        "{\"code\":\"service_unavailable\",\"message\":\"the token list is not loaded yet; retry later\"}");

    token_sync::Hash h{};
    h[0] = 1;
    log.apply({TokenLog::Change{3, h, 12}});
    log.mark_current(TokenLog::Clock::now());
    r.params.emplace_back("since", "0");
    r.params.emplace_back("limit", "5");
    reply = dispatch(r, ctx);
    assert_int_equal(reply.status, 200);
    assert_int_equal(reply.headers.size(), 1);
    assert_string_equal(reply.headers[0].second.c_str(), std::string(token_sync::kContentType).c_str());
    token_sync::View v;
    std::string error;
    assert_true(token_sync::decode(reply.body, v, error));
    assert_true(v.header.reset);
    assert_int_equal(v.header.count, 1);
    assert_int_equal(v.client_id(0), 12);
    assert_int_equal(v.header.head, 3);

    r.params = {{"since", "12a"}};
    reply = dispatch(r, ctx);
    assert_int_equal(reply.status, 400);
    assert_string_equal(reply.body.c_str(),
                        "{\"code\":\"validation_error\",\"message\":\"since: must be a decimal version\"}");
    r.params = {{"limit", "0"}};
    reply = dispatch(r, ctx);
    assert_int_equal(reply.status, 400);
}

// Off the request queue: served on the broker thread as soon as it is read, never behind payments.
void auth_tokens_is_internal_and_inline(void**) {
    const HandlerEntry* e = find_handler(routes::kAuthTokensRoute);
    assert_non_null(e);
    assert_true(e->runs == Runs::Inline);
    for (const routes::Route& route : routes::table()) {
        assert_true(route.name != routes::kAuthTokensRoute);  // no HTTP path reaches it
    }
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_text_from_bytes),
        cmocka_unit_test(generated_tokens_are_well_formed_and_distinct),
        cmocka_unit_test(token_text_recognized),
        cmocka_unit_test(token_hash_and_prefix),
        cmocka_unit_test(client_names),
        cmocka_unit_test(token_table),
        cmocka_unit_test(since_and_limit_parsing),
        cmocka_unit_test(auth_tokens_from_the_feed),
        cmocka_unit_test(auth_tokens_is_internal_and_inline),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
