// The module's shared token table (ngx_module/token_table.hpp): the hash table itself against a
// std::map, resets by epoch, the sync lease, and how chunks from paygated are applied.
#include "cmocka.hpp"

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "paygate/digest.hpp"
#include "paygate/token_sync.hpp"
#include "token_table.hpp"

using paygate::module::TokenTable;
using paygate::token_sync::Hash;
using Clock = TokenTable::Clock;
namespace ts = paygate::token_sync;

namespace {

// A table over its own (zeroed, 8-byte aligned) memory.
struct Owned {
    explicit Owned(std::uint64_t capacity) : memory(TokenTable::bytes_for(capacity) / 8 + 1, 0) {
        table = TokenTable::create(memory.data(), TokenTable::bytes_for(capacity));
    }
    std::vector<std::uint64_t> memory;
    TokenTable table;
};

Hash hash_of(std::uint64_t n, std::uint64_t home_bits = ~0ULL) {
    // The first 8 bytes decide the home slot: `home_bits` folds many hashes onto few homes.
    Hash h{};
    std::uint64_t key = (n * 0x9e3779b97f4a7c15ULL) & home_bits;
    std::memcpy(h.data(), &key, 8);
    std::memcpy(h.data() + 8, &n, 8);
    return h;
}

std::string chunk(ts::Header h, const std::vector<ts::Entry>& entries) {
    h.count = static_cast<std::uint32_t>(entries.size());
    return ts::encode(h, entries);
}

ts::View view_of(const std::string& body) {
    ts::View v;
    std::string error;
    assert_true(ts::decode(body, v, error));
    return v;
}

constexpr long kPid = 100;

// Applies a whole chunk as the adapter does (begin, batches, finish); returns finish's answer.
TokenTable::Finished apply(TokenTable& t, const std::string& body, Clock::time_point sent, Clock::time_point now) {
    ts::View v = view_of(body);
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, now)), static_cast<int>(TokenTable::Start::Apply));
    for (std::size_t i = 0; i < v.header.count; i += 3) {
        assert_int_equal(static_cast<int>(t.apply_entries(v, i, i + 3, kPid, now)), static_cast<int>(TokenTable::Applied::Ok));
    }
    return t.finish_chunk(v, kPid, sent, now);
}

void empty_table_refuses_everything(void**) {
    Owned o(64);
    Hash h = hash_of(1);
    assert_false(o.table.loaded());
    assert_false(o.table.usable(Clock::now()));
    assert_false(o.table.client_of_hash(h.data()).has_value());
    assert_int_equal(o.table.size(), 0);
    assert_int_equal(o.table.max_count(), 48);
}

void upsert_lookup_remove(void**) {
    Owned o(64);
    Hash a = hash_of(1), b = hash_of(2);
    assert_true(o.table.upsert(a.data(), 12));
    assert_true(o.table.upsert(b.data(), 13));
    assert_int_equal(*o.table.client_of_hash(a.data()), 12);
    assert_true(o.table.upsert(a.data(), 14));   // the same token again: its client is replaced
    assert_int_equal(*o.table.client_of_hash(a.data()), 14);
    assert_int_equal(o.table.size(), 2);
    o.table.remove(a.data());
    o.table.remove(a.data());   // twice: nothing more happens
    assert_false(o.table.client_of_hash(a.data()).has_value());
    assert_int_equal(*o.table.client_of_hash(b.data()), 13);
    assert_int_equal(o.table.size(), 1);
    assert_true(o.table.upsert(a.data(), ts::kMaxClientId));
    assert_int_equal(*o.table.client_of_hash(a.data()), ts::kMaxClientId);
}

// A partner key's entry keeps its kind through the table (the epoch bits above 48 do not touch
// it), so the module can tell it from a client token of the same owner.
void credential_kinds_survive(void**) {
    Owned o(64);
    Hash client = hash_of(1), key = hash_of(2);
    const unsigned whitebird = ts::key_partner_kind("whitebird");
    assert_true(o.table.upsert(client.data(), ts::credential_value(ts::kClientToken, 42)));
    assert_true(o.table.upsert(key.data(), ts::credential_value(whitebird, 42)));
    assert_int_equal(ts::credential_kind(*o.table.client_of_hash(client.data())), ts::kClientToken);
    assert_int_equal(ts::credential_kind(*o.table.client_of_hash(key.data())), whitebird);
    assert_int_equal(ts::credential_owner(*o.table.client_of_hash(key.data())), 42);
    o.table.reset();
    assert_true(o.table.upsert(key.data(), ts::credential_value(whitebird, ts::kMaxOwnerId)));
    assert_int_equal(ts::credential_kind(*o.table.client_of_hash(key.data())), whitebird);
    assert_int_equal(ts::credential_owner(*o.table.client_of_hash(key.data())), ts::kMaxOwnerId);
}

// Backward-shift deletion keeps every probe run intact: checked against a map after each change,
// with hashes folded onto a few home slots so that runs are long and wrap around the end.
void matches_a_map_under_random_changes(void**) {
    for (std::uint64_t home_bits : {~0ULL, 0xff00000000000000ULL, 0xf000000000000000ULL}) {
        Owned o(257);
        std::map<std::uint64_t, std::uint64_t> model;
        std::mt19937_64 rng(home_bits);
        for (int step = 0; step < 20000; ++step) {
            std::uint64_t n = rng() % 300;
            Hash h = hash_of(n, home_bits);
            if (rng() % 3 == 0) {
                o.table.remove(h.data());
                model.erase(n);
            } else {
                std::uint64_t client = 1 + rng() % 1000;
                bool room = model.count(n) != 0 || model.size() < o.table.max_count();
                assert_int_equal(o.table.upsert(h.data(), client), room);
                if (room) model[n] = client;
            }
            assert_int_equal(o.table.size(), model.size());
            if (step % 97 == 0 || step > 19900) {
                for (std::uint64_t k = 0; k < 300; ++k) {
                    Hash hk = hash_of(k, home_bits);
                    auto found = o.table.client_of_hash(hk.data());
                    auto it = model.find(k);
                    assert_int_equal(found.has_value(), it != model.end());
                    if (found) assert_int_equal(*found, it->second);
                }
            }
        }
    }
}

void full_table_refuses_new_tokens_only(void**) {
    Owned o(8);   // takes 6
    for (std::uint64_t n = 0; n < 6; ++n) assert_true(o.table.upsert(hash_of(n).data(), n + 1));
    assert_false(o.table.upsert(hash_of(99).data(), 1));
    assert_true(o.table.upsert(hash_of(3).data(), 42));   // one it holds: still updated
    assert_int_equal(*o.table.client_of_hash(hash_of(3).data()), 42);
    assert_int_equal(o.table.header().full_refusals, 1);
    o.table.remove(hash_of(0).data());
    assert_true(o.table.upsert(hash_of(99).data(), 1));
}

void reset_forgets_in_one_step(void**) {
    Owned o(64);
    for (std::uint64_t n = 0; n < 40; ++n) o.table.upsert(hash_of(n).data(), 7);
    o.table.reset();
    assert_int_equal(o.table.size(), 0);
    for (std::uint64_t n = 0; n < 40; ++n) assert_false(o.table.client_of_hash(hash_of(n).data()).has_value());
    assert_true(o.table.upsert(hash_of(5).data(), 8));
    assert_int_equal(*o.table.client_of_hash(hash_of(5).data()), 8);
    // Epochs wrap after 65535 resets: slots written long ago must not come back to life.
    for (int i = 0; i < 70000; ++i) {
        if (i == 30000) o.table.upsert(hash_of(6).data(), 9);
        o.table.reset();
        assert_false(o.table.client_of_hash(hash_of(6).data()).has_value());
        assert_false(o.table.client_of_hash(hash_of(5).data()).has_value());
    }
}

void memory_that_is_not_zero_is_cleared(void**) {
    std::vector<std::uint64_t> memory(TokenTable::bytes_for(64) / 8 + 1, 0x0001a5a5a5a5a5a5ULL);   // epoch 1 junk
    TokenTable t = TokenTable::create(memory.data(), TokenTable::bytes_for(64));
    assert_int_equal(t.size(), 0);
    Hash junk{};
    std::memset(junk.data(), 0xa5, junk.size());
    assert_false(t.client_of_hash(junk.data()).has_value());
    assert_true(TokenTable::attach(memory.data()).valid());
    std::vector<std::uint64_t> other(16, 0);
    assert_false(TokenTable::attach(other.data()).valid());
}

void one_worker_holds_the_lease(void**) {
    Owned o(64);
    auto t0 = Clock::now();
    assert_true(o.table.take_lease(1, t0));
    assert_false(o.table.take_lease(2, t0 + std::chrono::milliseconds(10)));
    assert_true(o.table.take_lease(1, t0 + std::chrono::milliseconds(900)));   // renewed
    assert_false(o.table.take_lease(2, t0 + std::chrono::milliseconds(1800)));
    // holder 1 died: its lease runs out and 2 takes over
    auto later = t0 + std::chrono::milliseconds(900) + TokenTable::kLease;
    assert_true(o.table.take_lease(2, later));
    assert_false(o.table.holds_lease(1, later));
    o.table.release_lease(1);   // not its own: nothing happens
    assert_true(o.table.holds_lease(2, later));
    o.table.release_lease(2);
    assert_true(o.table.take_lease(3, later));
}

void chunks_load_then_confirm(void**) {
    Owned o(1024);
    TokenTable& t = o.table;
    auto t0 = Clock::now();
    assert_true(t.take_lease(kPid, t0));
    // A reset chunk that does not reach the head: applied, not loaded yet.
    ts::Header h;
    h.reset = true;
    h.upto = 5;
    h.head = 9;
    h.age_ms = 40;
    TokenTable::Finished f = apply(t, chunk(h, {{hash_of(1), 11}, {hash_of(2), 12}}), t0, t0);
    assert_true(f.ok);
    assert_false(f.at_head);
    assert_false(t.loaded());
    assert_int_equal(t.version(), 5);
    // The next one reaches it: loaded, and confirmed as of its send time less the daemon's age.
    ts::Header next;
    next.from = 5;
    next.upto = 9;
    next.head = 9;
    next.age_ms = 200;
    auto sent = t0 + std::chrono::milliseconds(10);
    f = apply(t, chunk(next, {{hash_of(3), 13}, {hash_of(1), 0}}), sent, sent);
    assert_true(f.ok && f.at_head);
    assert_true(t.loaded());
    assert_int_equal(t.version(), 9);
    assert_int_equal(t.size(), 2);
    assert_false(t.client_of_hash(hash_of(1).data()).has_value());   // removed by the second chunk
    auto as_of = sent - std::chrono::milliseconds(200);
    assert_true(t.usable(as_of + TokenTable::kMaxStaleness));
    assert_false(t.usable(as_of + TokenTable::kMaxStaleness + std::chrono::milliseconds(1)));
    // An answer to an older request (another version) is dropped.
    ts::Header stale;
    stale.from = 5;
    stale.upto = 9;
    stale.head = 9;
    std::string body = chunk(stale, {{hash_of(1), 11}});
    assert_int_equal(static_cast<int>(t.begin_chunk(view_of(body), kPid, sent)), static_cast<int>(TokenTable::Start::Ignore));
    assert_false(t.client_of_hash(hash_of(1).data()).has_value());
    // "Unchanged" (an empty chunk at the head) confirms again.
    ts::Header same;
    same.from = same.upto = same.head = 9;
    auto much_later = sent + std::chrono::seconds(10);
    assert_false(t.usable(much_later));
    assert_true(t.take_lease(kPid, much_later));
    f = apply(t, chunk(same, {}), much_later, much_later);
    assert_true(f.ok && f.at_head);
    assert_true(t.usable(much_later));
    // A reset chunk forgets what was there.
    ts::Header again;
    again.reset = true;
    again.upto = again.head = 10;
    f = apply(t, chunk(again, {{hash_of(7), 17}}), much_later, much_later);
    assert_true(f.at_head);
    assert_int_equal(t.size(), 1);
    assert_false(t.client_of_hash(hash_of(3).data()).has_value());
    assert_int_equal(*t.client_of_hash(hash_of(7).data()), 17);
}

void only_the_lease_holder_applies(void**) {
    Owned o(64);
    TokenTable& t = o.table;
    auto t0 = Clock::now();
    ts::Header h;
    h.reset = true;
    h.upto = h.head = 3;
    std::string body = chunk(h, {{hash_of(1), 1}, {hash_of(2), 2}, {hash_of(3), 3}, {hash_of(4), 4}});
    ts::View v = view_of(body);
    // without the lease: ignored
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, t0)), static_cast<int>(TokenTable::Start::Ignore));
    assert_true(t.take_lease(kPid, t0));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, t0)), static_cast<int>(TokenTable::Start::Apply));
    assert_int_equal(static_cast<int>(t.apply_entries(v, 0, 2, kPid, t0)), static_cast<int>(TokenTable::Applied::Ok));
    // The holder stalls past its lease between two batches; another worker takes over.
    auto later = t0 + TokenTable::kLease + std::chrono::milliseconds(1);
    assert_true(t.take_lease(kPid + 1, later));
    assert_int_equal(static_cast<int>(t.apply_entries(v, 2, 4, kPid, later)), static_cast<int>(TokenTable::Applied::LostLease));
    assert_false(t.finish_chunk(v, kPid, t0, later).ok);
    assert_false(t.loaded());
    assert_int_equal(t.version(), 0);   // the new holder starts from what is certain
}

void a_full_table_keeps_its_version(void**) {
    Owned o(8);   // takes 6
    TokenTable& t = o.table;
    auto t0 = Clock::now();
    assert_true(t.take_lease(kPid, t0));
    ts::Header h;
    h.reset = true;
    h.upto = h.head = 7;
    std::vector<ts::Entry> entries;
    for (std::uint64_t n = 0; n < 7; ++n) entries.push_back({hash_of(n), n + 1});
    std::string body = chunk(h, entries);
    ts::View v = view_of(body);
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, t0)), static_cast<int>(TokenTable::Start::Apply));
    assert_int_equal(static_cast<int>(t.apply_entries(v, 0, 7, kPid, t0)), static_cast<int>(TokenTable::Applied::Full));
    assert_int_equal(t.version(), 0);
    assert_false(t.loaded());   // fail closed: never usable
}

void behind_daemons_reset_the_table_after_a_while(void**) {
    Owned o(64);
    TokenTable& t = o.table;
    auto t0 = Clock::now();
    assert_true(t.take_lease(kPid, t0));
    ts::Header h;
    h.reset = true;
    h.upto = h.head = 50;
    assert_true(apply(t, chunk(h, {{hash_of(1), 1}}), t0, t0).at_head);
    ts::Header behind;
    behind.behind = true;
    behind.from = behind.upto = 50;
    behind.head = 20;
    std::string body = chunk(behind, {});
    ts::View v = view_of(body);
    auto at = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
    assert_true(t.take_lease(kPid, at(100)));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, at(100))), static_cast<int>(TokenTable::Start::Behind));
    assert_true(t.take_lease(kPid, at(900)));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, at(900))), static_cast<int>(TokenTable::Start::Behind));
    // a daemon that is current in between ends the streak
    ts::Header same;
    same.from = same.upto = same.head = 50;
    assert_true(apply(t, chunk(same, {}), at(1000), at(1000)).at_head);
    assert_true(t.take_lease(kPid, at(1500)));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, at(1500))), static_cast<int>(TokenTable::Start::Behind));
    assert_true(t.take_lease(kPid, at(3000)));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, at(3000))), static_cast<int>(TokenTable::Start::Behind));
    assert_true(t.loaded());
    assert_true(t.take_lease(kPid, at(3600)));
    assert_int_equal(static_cast<int>(t.begin_chunk(v, kPid, at(3600))), static_cast<int>(TokenTable::Start::BehindReset));
    assert_false(t.loaded());
    assert_int_equal(t.version(), 0);
    assert_int_equal(t.size(), 0);
}

void token_hash_is_the_sha256_the_database_keeps(void**) {
    const std::string token = "pgt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    unsigned char raw[ts::kHashBytes];
    paygate::module::token_hash(token, raw);
    assert_string_equal(ts::hash_to_hex(raw).c_str(), paygate::sha256_hex(token).c_str());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_table_refuses_everything),
        cmocka_unit_test(upsert_lookup_remove),
        cmocka_unit_test(credential_kinds_survive),
        cmocka_unit_test(matches_a_map_under_random_changes),
        cmocka_unit_test(full_table_refuses_new_tokens_only),
        cmocka_unit_test(reset_forgets_in_one_step),
        cmocka_unit_test(memory_that_is_not_zero_is_cleared),
        cmocka_unit_test(one_worker_holds_the_lease),
        cmocka_unit_test(chunks_load_then_confirm),
        cmocka_unit_test(only_the_lease_holder_applies),
        cmocka_unit_test(a_full_table_keeps_its_version),
        cmocka_unit_test(behind_daemons_reset_the_table_after_a_while),
        cmocka_unit_test(token_hash_is_the_sha256_the_database_keeps),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
