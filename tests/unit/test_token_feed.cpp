// The token sync without a database: the chunk codec (paygate/token_sync.hpp), paygated's token
// log (daemon/include/paygated/token_feed.hpp), and the two ends together: whatever the changes,
// a module that applies chunk after chunk ends with exactly the live tokens.
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "paygate/token_sync.hpp"
#include "paygated/log.hpp"
#include "paygated/token_feed.hpp"
#include "token_table.hpp"

// Last: cmocka's macros (fail, ...) clash with names in standard headers.
#include "cmocka.hpp"

using paygate::daemon::TokenLog;
using paygate::module::TokenTable;
namespace ts = paygate::token_sync;
using Clock = TokenLog::Clock;

namespace {

ts::Hash hash_of(std::uint64_t n) {
    ts::Hash h{};
    std::uint64_t key = n * 0x9e3779b97f4a7c15ULL;
    std::memcpy(h.data(), &key, 8);
    std::memcpy(h.data() + 8, &n, 8);
    return h;
}

TokenLog::Change change(std::uint64_t version, std::uint64_t token, std::uint64_t client) {
    return TokenLog::Change{version, hash_of(token), client};
}

ts::View decoded(const std::string& body) {
    ts::View v;
    std::string error;
    if (!ts::decode(body, v, error)) fail_msg("decode: %s", error.c_str());
    return v;
}

std::string read(const TokenLog& log, std::uint64_t since, std::size_t limit = ts::kMaxChunkEntries,
                 Clock::time_point now = Clock::now()) {
    std::string body;
    assert_true(log.read(since, limit, now, body));
    return body;
}

// A chunk read from the log, with the body its view points into.
struct Got {
    Got(const TokenLog& log, std::uint64_t since, std::size_t limit = ts::kMaxChunkEntries,
        Clock::time_point now = Clock::now())
        : body(read(log, since, limit, now)), v(decoded(body)) {}
    Got(const Got&) = delete;
    std::string body;
    ts::View v;
};

// ---- the codec ----

void codec_round_trip(void**) {
    ts::Header h;
    h.from = 7;
    h.upto = 9;
    h.head = 12;
    h.age_ms = 250;
    std::vector<ts::Entry> entries{{hash_of(1), 42}, {hash_of(2), 0}};
    std::string body = ts::encode(h, entries);
    assert_int_equal(body.size(), ts::kHeaderBytes + 2 * ts::kEntryBytes);
    ts::View v = decoded(body);
    assert_false(v.header.reset || v.header.behind);
    assert_int_equal(v.header.from, 7);
    assert_int_equal(v.header.upto, 9);
    assert_int_equal(v.header.head, 12);
    assert_int_equal(v.header.age_ms, 250);
    assert_int_equal(v.header.count, 2);
    assert_memory_equal(v.hash(0), hash_of(1).data(), ts::kHashBytes);
    assert_int_equal(v.client_id(0), 42);
    assert_int_equal(v.client_id(1), 0);
    ts::Hash back{};
    assert_true(ts::hash_from_hex(ts::hash_to_hex(hash_of(3).data()), back));
    assert_memory_equal(back.data(), hash_of(3).data(), ts::kHashBytes);
    assert_false(ts::hash_from_hex(std::string(64, 'A'), back));
    assert_false(ts::hash_from_hex("ab", back));
}

void codec_refuses_malformed_chunks(void**) {
    ts::Header ok;
    ok.from = 1;
    ok.upto = 2;
    ok.head = 2;
    std::string good = ts::encode(ok, {{hash_of(1), 5}});
    auto refused = [](const std::string& body) {
        ts::View v;
        std::string error;
        bool decoded_ok = ts::decode(body, v, error);
        if (!decoded_ok) assert_false(error.empty());
        return !decoded_ok;
    };
    assert_false(refused(good));
    assert_true(refused(""));
    assert_true(refused(good.substr(0, 39)));
    assert_true(refused(good.substr(0, good.size() - 1)));   // count says one entry, less follows
    assert_true(refused(good + "x"));                         // trailing bytes
    std::string bad = good;
    bad[0] = 'X';
    assert_true(refused(bad));                                // magic
    bad = good;
    bad[4] = 2;
    assert_true(refused(bad));                                // format
    bad = good;
    bad[5] = 4;
    assert_true(refused(bad));                                // unknown flag
    bad = good;
    bad[5] = 3;
    assert_true(refused(bad));                                // reset and behind at once
    bad = good;
    bad[36] = 2;
    assert_true(refused(bad));                                // count
    ts::Header h = ok;
    h.upto = 1;
    assert_true(refused(ts::encode(h, {{hash_of(1), 5}})));   // entries but no version step
    h = ok;
    h.head = 1;
    assert_true(refused(ts::encode(h, {})));                  // upto past head
    h = ok;
    h.reset = true;
    assert_true(refused(ts::encode(h, {})));                  // reset from 1
    h.from = 0;
    assert_true(refused(ts::encode(h, {{hash_of(1), 0}})));   // a removal in a reset
    assert_true(refused(ts::encode(ok, {{hash_of(1), ts::kMaxClientId + 1}})));
    ts::Header behind;
    behind.behind = true;
    behind.from = behind.upto = 5;
    behind.head = 7;
    assert_true(refused(ts::encode(behind, {})));             // not behind at all
    behind.head = 3;
    assert_false(refused(ts::encode(behind, {})));
    assert_true(refused(ts::encode(behind, {{hash_of(1), 5}})));
    std::vector<ts::Entry> many(ts::kMaxChunkEntries + 1, ts::Entry{hash_of(1), 1});
    h = ok;
    h.upto = h.head = 2;
    assert_true(refused(ts::encode(h, many)));
}

// ---- the daemon's token log ----

void nothing_before_the_first_load(void**) {
    TokenLog log;
    std::string body;
    assert_false(log.read(0, 100, Clock::now(), body));
    assert_true(body.empty());
    log.mark_current(Clock::now());
    Got g1(log, 0);
    ts::View v = g1.v;
    assert_true(v.header.reset);
    assert_int_equal(v.header.upto, 0);
    assert_int_equal(v.header.head, 0);
    assert_int_equal(v.header.count, 0);
}

void deltas_since_a_version(void**) {
    TokenLog log;
    log.apply({change(1, 1, 10), change(2, 2, 10), change(3, 3, 11)});
    auto t0 = Clock::now();
    log.mark_current(t0);
    // from nothing: every live token, a reset
    Got g2(log, 0, 100, t0 + std::chrono::milliseconds(120));
    ts::View v = g2.v;
    assert_true(v.header.reset);
    assert_int_equal(v.header.count, 3);
    assert_int_equal(v.header.upto, 3);
    assert_int_equal(v.header.head, 3);
    assert_int_equal(v.header.age_ms, 120);
    // current: nothing to send
    Got g3(log, 3);
    v = g3.v;
    assert_false(v.header.reset);
    assert_int_equal(v.header.count, 0);
    assert_int_equal(v.header.upto, 3);
    // token 2 revoked, token 4 created
    log.apply({change(4, 2, 0), change(5, 4, 12)});
    std::string body = read(log, 3);
    v = decoded(body);
    assert_int_equal(v.header.from, 3);
    assert_int_equal(v.header.upto, 5);
    assert_int_equal(v.header.count, 2);
    assert_memory_equal(v.hash(0), hash_of(2).data(), ts::kHashBytes);
    assert_int_equal(v.client_id(0), 0);
    assert_int_equal(v.client_id(1), 12);
    // from an older version: the newest state of each row, once
    Got g4(log, 1);
    v = g4.v;
    assert_int_equal(v.header.count, 3);   // 3 (v3), 2 revoked (v4), 4 (v5); token 2's v2 is superseded
    // a reset leaves revoked tokens out
    Got g5(log, 0);
    v = g5.v;
    assert_int_equal(v.header.count, 3);
    for (std::size_t i = 0; i < v.header.count; ++i) assert_true(v.client_id(i) != 0);
    // ahead of the log (another daemon, or the database went back): behind
    Got g6(log, 9);
    v = g6.v;
    assert_true(v.header.behind);
    assert_int_equal(v.header.from, 9);
    assert_int_equal(v.header.head, 5);
    assert_int_equal(v.header.count, 0);
}

void chunks_respect_the_limit(void**) {
    TokenLog log;
    std::vector<TokenLog::Change> changes;
    for (std::uint64_t i = 1; i <= 10; ++i) changes.push_back(change(i, i, 1));
    log.apply(changes);
    log.mark_current(Clock::now());
    Got g7(log, 0, 4);
    ts::View v = g7.v;
    assert_int_equal(v.header.count, 4);
    assert_int_equal(v.header.upto, 4);
    assert_int_equal(v.header.head, 10);
    Got g8(log, 4, 4);
    v = g8.v;
    assert_int_equal(v.header.count, 4);
    assert_int_equal(v.header.upto, 8);
    Got g9(log, 8, 4);
    v = g9.v;
    assert_int_equal(v.header.count, 2);
    assert_int_equal(v.header.upto, 10);
    // a reset past many revoked entries looks at no more than 4 x limit of them per chunk
    TokenLog revoked;
    changes.clear();
    for (std::uint64_t i = 1; i <= 20; ++i) changes.push_back(change(i, i, i <= 18 ? 0 : 1));
    revoked.apply(changes);
    revoked.mark_current(Clock::now());
    Got g10(revoked, 0, 2);
    v = g10.v;
    assert_int_equal(v.header.count, 0);
    assert_int_equal(v.header.upto, 8);
    assert_true(v.header.upto < v.header.head);
}

void compaction_raises_the_floor(void**) {
    paygate::daemon::log::set_level(paygate::daemon::LogLevel::Error);
    TokenLog log(4, 2);   // keeps at least 4 revoked entries, compacts past 2 superseded
    std::vector<TokenLog::Change> changes;
    std::uint64_t v = 0;
    for (std::uint64_t t = 1; t <= 4; ++t) changes.push_back(change(++v, t, 1));
    for (std::uint64_t t = 10; t <= 19; ++t) changes.push_back(change(++v, t, 0));   // ten revoked at once
    log.apply(changes);
    log.mark_current(Clock::now());
    TokenLog::Stats s = log.stats();
    assert_true(s.revoked <= 4);
    assert_int_equal(s.live, 4);
    assert_true(s.floor > 4);
    // a module from before the floor gets everything again; one from after it a delta
    Got g11(log, 4);
    ts::View r = g11.v;
    assert_true(r.header.reset);
    assert_int_equal(r.header.count, 4);
    Got g12(log, s.floor);
    r = g12.v;
    assert_false(r.header.reset);
    // superseded entries go too
    changes.clear();
    for (int round = 0; round < 5; ++round) {
        for (std::uint64_t t = 1; t <= 4; ++t) changes.push_back(change(++v, t, 2 + round));
    }
    log.apply(changes);
    s = log.stats();
    assert_true(s.superseded <= 2);
    assert_int_equal(s.live, 4);
}

void cleared_until_current_again(void**) {
    TokenLog log;
    log.apply({change(1, 1, 1), change(2, 2, 1)});
    log.mark_current(Clock::now());
    log.clear();
    std::string body;
    assert_false(log.read(0, 10, Clock::now(), body));
    assert_int_equal(log.version(), 0);
    log.apply({change(1, 3, 1)});
    log.mark_current(Clock::now());
    Got g13(log, 2);
    ts::View v = g13.v;
    assert_true(v.header.behind);   // a module of the old history hears "behind"
    Got g14(log, 0);
    v = g14.v;
    assert_int_equal(v.header.count, 1);
    assert_memory_equal(v.hash(0), hash_of(3).data(), ts::kHashBytes);
}

// ---- both ends ----

// A module syncing chunk after chunk to the head; a reset clears its view first.
struct Module {
    std::map<ts::Hash, std::uint64_t> tokens;
    std::uint64_t version = 0;

    void sync(const TokenLog& log, std::size_t limit) {
        for (int guard = 0; guard < 100000; ++guard) {
            std::string body = read(log, version, limit);
            ts::View v = decoded(body);
            assert_false(v.header.behind);
            if (v.header.reset) tokens.clear();
            assert_int_equal(v.header.from, v.header.reset ? 0 : version);
            for (std::size_t i = 0; i < v.header.count; ++i) {
                ts::Hash h{};
                std::memcpy(h.data(), v.hash(i), ts::kHashBytes);
                if (v.client_id(i) == 0) {
                    tokens.erase(h);
                } else {
                    tokens[h] = v.client_id(i);
                }
            }
            version = v.header.upto;
            if (v.header.upto == v.header.head) return;
        }
        fail_msg("sync never reached the head");
    }
};

void a_module_ends_with_exactly_the_live_tokens(void**) {
    paygate::daemon::log::set_level(paygate::daemon::LogLevel::Error);
    std::mt19937_64 rng(7);
    TokenLog log(16, 8);   // small bounds: compactions and floor resets happen often
    std::map<ts::Hash, std::uint64_t> truth;
    std::vector<Module> modules(4);
    std::uint64_t v = 0;
    log.mark_current(Clock::now());
    for (int round = 0; round < 300; ++round) {
        std::vector<TokenLog::Change> changes;
        int n = static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) {
            std::uint64_t token = rng() % 200;
            std::uint64_t client = rng() % 3 == 0 ? 0 : 1 + rng() % 50;
            changes.push_back(change(++v, token, client));
            if (client == 0) {
                truth.erase(hash_of(token));
            } else {
                truth[hash_of(token)] = client;
            }
        }
        log.apply(changes);
        // modules sync at different paces and chunk sizes; some skip rounds
        for (std::size_t m = 0; m < modules.size(); ++m) {
            if (rng() % (m + 1) != 0) continue;
            modules[m].sync(log, 1 + rng() % (m * 7 + 3));
            assert_true(modules[m].tokens == truth);
        }
    }
}

// The shared table gets the same result as the map above, through the real chunk handling.
void the_shared_table_ends_with_exactly_the_live_tokens(void**) {
    paygate::daemon::log::set_level(paygate::daemon::LogLevel::Error);
    std::mt19937_64 rng(11);
    TokenLog log(16, 8);
    std::vector<std::uint64_t> memory(TokenTable::bytes_for(512) / 8 + 1, 0);
    TokenTable table = TokenTable::create(memory.data(), TokenTable::bytes_for(512));
    std::map<std::uint64_t, std::uint64_t> truth;   // token number -> client
    std::uint64_t v = 0;
    log.mark_current(Clock::now());
    for (int round = 0; round < 200; ++round) {
        std::vector<TokenLog::Change> changes;
        for (int i = static_cast<int>(rng() % 30); i > 0; --i) {
            std::uint64_t token = rng() % 300;
            std::uint64_t client = rng() % 3 == 0 ? 0 : 1 + rng() % 50;
            changes.push_back(change(++v, token, client));
            if (client == 0) truth.erase(token); else truth[token] = client;
        }
        log.apply(changes);
        log.mark_current(Clock::now());
        auto now = Clock::now();
        assert_true(table.take_lease(1, now));
        for (int guard = 0;; ++guard) {
            assert_true(guard < 10000);
            std::string body = read(log, table.version(), 1 + rng() % 20);
            ts::View c = decoded(body);
            assert_int_equal(static_cast<int>(table.begin_chunk(c, 1, now)), static_cast<int>(TokenTable::Start::Apply));
            assert_int_equal(static_cast<int>(table.apply_entries(c, 0, c.header.count, 1, now)),
                             static_cast<int>(TokenTable::Applied::Ok));
            TokenTable::Finished f = table.finish_chunk(c, 1, now, now);
            assert_true(f.ok);
            if (f.at_head) break;
        }
        assert_true(table.usable(now));
        assert_int_equal(table.size(), truth.size());
        for (std::uint64_t token = 0; token < 300; ++token) {
            auto got = table.client_of_hash(hash_of(token).data());
            auto it = truth.find(token);
            assert_int_equal(got.has_value(), it != truth.end());
            if (got) assert_int_equal(*got, it->second);
        }
    }
}

// Readers on another thread while the writer applies a large batch: every chunk read is whole.
void readers_see_whole_chunks_while_the_log_grows(void**) {
    TokenLog log;
    log.mark_current(Clock::now());
    std::atomic<bool> done{false};
    std::thread writer([&] {
        std::vector<TokenLog::Change> changes;
        std::uint64_t v = 0;
        for (int batch = 0; batch < 20; ++batch) {
            changes.clear();
            for (int i = 0; i < 5000; ++i) {
                ++v;
                changes.push_back(change(v, v % 30000, v % 7 == 0 ? 0 : 1 + v % 100));
            }
            log.apply(changes);
        }
        done = true;
    });
    std::uint64_t version = 0;
    std::size_t reads = 0;
    while (!done || version < log.version()) {
        std::string body = read(log, version, 1000);
        ts::View v = decoded(body);
        assert_true(v.header.upto >= version);
        version = v.header.upto;
        ++reads;
    }
    writer.join();
    assert_int_equal(version, 100000);
    assert_true(reads > 0);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trip),
        cmocka_unit_test(codec_refuses_malformed_chunks),
        cmocka_unit_test(nothing_before_the_first_load),
        cmocka_unit_test(deltas_since_a_version),
        cmocka_unit_test(chunks_respect_the_limit),
        cmocka_unit_test(compaction_raises_the_floor),
        cmocka_unit_test(cleared_until_current_again),
        cmocka_unit_test(a_module_ends_with_exactly_the_live_tokens),
        cmocka_unit_test(the_shared_table_ends_with_exactly_the_live_tokens),
        cmocka_unit_test(readers_see_whole_chunks_while_the_log_grows),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
