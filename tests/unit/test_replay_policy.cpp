// The replay zone's rules (ngx_module/replay_policy.hpp): an entry never outlives the record
// PostgreSQL replays, a reply larger than an eighth of the zone is not cached, and one store
// evicts a bounded number of entries.
#include "cmocka.hpp"

#include <cstdint>
#include <vector>

#include "replay_policy.hpp"

namespace policy = paygate::module::replay_policy;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;          // unix seconds
constexpr std::uint64_t kNowMs = kNow * 1000ull;
constexpr std::int64_t kDay = 24 * 60 * 60;

// ---- entry_expiry ------------------------------------------------------------------------------

void record_far_away_the_zone_ttl_decides(void**) {
    // paygated keeps the record for a day, the zone only an hour
    assert_int_equal(policy::entry_expiry(kNow, 3600, kNowMs, kDay * 1000ull), kNow + 3600);
}

void record_near_its_end_decides(void**) {
    // a replay of a record with 2.5 s left: the entry lives 2 s (rounded down), not a zone ttl
    assert_int_equal(policy::entry_expiry(kNow, kDay, kNowMs, 2500), kNow + 2);
    // just stored with a retention of 60 s: 60 s, though the zone would keep it for a day
    assert_int_equal(policy::entry_expiry(kNow, kDay, kNowMs, 60'000), kNow + 60);
}

void counted_from_the_send_not_from_the_reply(void**) {
    // the request left 4.2 s before the reply came (a slow daemon): the record's remaining time
    // counts from then, so the entry ends at or before the row does
    std::uint64_t sent = kNowMs - 4200;
    assert_int_equal(policy::entry_expiry(kNow, kDay, sent, 10'000), kNow + 5);   // 1'799'999'995.8 + 10
    // the whole of it already spent on the way: nothing to store
    assert_int_equal(policy::entry_expiry(kNow, kDay, sent, 4000), 0);
    assert_int_equal(policy::entry_expiry(kNow, kDay, sent, 4200), 0);
}

void no_expiry_no_entry(void**) {
    // a reply without the record's expiry (0) is never cached
    assert_int_equal(policy::entry_expiry(kNow, kDay, kNowMs, 0), 0);
    // under a second left (rounded down to now): already over
    assert_int_equal(policy::entry_expiry(kNow, kDay, kNowMs, 999), 0);
}

void never_past_the_record_for_any_send_time(void**) {
    for (std::uint64_t sent = kNowMs - 5000; sent <= kNowMs; sent += 137) {
        for (std::uint64_t left : {1ull, 999ull, 1000ull, 1001ull, 2999ull, 3000ull, 86'400'000ull}) {
            std::int64_t e = policy::entry_expiry(kNow, kDay, sent, left);
            if (e == 0) continue;
            assert_true(e > kNow);                                           // stored only if it lives
            assert_true(static_cast<std::uint64_t>(e) * 1000 <= sent + left);   // never past the row
        }
    }
}

// ---- fits_zone ---------------------------------------------------------------------------------

void an_eighth_of_the_zone_at_most(void**) {
    assert_true(policy::fits_zone(128 * 1024, 1024 * 1024));
    assert_false(policy::fits_zone(128 * 1024 + 1, 1024 * 1024));
    assert_true(policy::fits_zone(4096, 32 * 1024));        // the smallest zone: 8 pages
    assert_false(policy::fits_zone(4097, 32 * 1024));
    assert_false(policy::fits_zone(1, 0));
}

// ---- allocate_evicting -------------------------------------------------------------------------

struct FakeZone {
    int entries;          // entries that can be evicted
    int free_after;       // allocation succeeds once this many were evicted
    int evicted = 0;
    int allocations = 0;
    int slot = 0;

    int* allocate() {
        ++allocations;
        return evicted >= free_after ? &slot : nullptr;
    }
    bool evict_one() {
        if (entries == 0) return false;
        --entries;
        ++evicted;
        return true;
    }
    int* store(int max) {
        return policy::allocate_evicting([this] { return allocate(); }, [this] { return evict_one(); }, max);
    }
};

void room_at_once_evicts_nothing(void**) {
    FakeZone z{100, 0};
    assert_non_null(z.store(policy::kMaxEvictions));
    assert_int_equal(z.evicted, 0);
    assert_int_equal(z.allocations, 1);
}

void evicts_until_there_is_room(void**) {
    FakeZone z{100, 3};
    assert_non_null(z.store(policy::kMaxEvictions));
    assert_int_equal(z.evicted, 3);
    assert_int_equal(z.allocations, 4);
}

void gives_up_after_the_cap(void**) {
    // a fragmented zone where room would appear only after 50 evictions: the store gives up
    FakeZone z{100, 50};
    assert_null(z.store(policy::kMaxEvictions));
    assert_int_equal(z.evicted, policy::kMaxEvictions);
    assert_int_equal(z.entries, 100 - policy::kMaxEvictions);
    assert_true(policy::kMaxEvictions >= 1 && policy::kMaxEvictions <= 64);
}

void stops_when_nothing_is_left(void**) {
    FakeZone z{2, 5};
    assert_null(z.store(policy::kMaxEvictions));
    assert_int_equal(z.evicted, 2);
    assert_int_equal(z.allocations, 3);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(record_far_away_the_zone_ttl_decides),
        cmocka_unit_test(record_near_its_end_decides),
        cmocka_unit_test(counted_from_the_send_not_from_the_reply),
        cmocka_unit_test(no_expiry_no_entry),
        cmocka_unit_test(never_past_the_record_for_any_send_time),
        cmocka_unit_test(an_eighth_of_the_zone_at_most),
        cmocka_unit_test(room_at_once_evicts_nothing),
        cmocka_unit_test(evicts_until_there_is_room),
        cmocka_unit_test(gives_up_after_the_cap),
        cmocka_unit_test(stops_when_nothing_is_left),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
