// The live client tokens of one nginx instance: a hash table in one block of shared memory that
// every worker reads and one worker at a time (the lease holder) keeps current from paygated.
//
// Plain C++, no nginx types: the adapter (paygate_token_sync.cpp) places the block in the slab
// pool of the paygate_token_zone and holds the zone's mutex around every call here; nothing in
// this class locks. Memory is one header and a fixed array of 40-byte slots (the SHA-256 of the
// token text and its client id), so it never grows with the number of tokens changed or with
// the number of workers: the whole instance shares one copy.
//
// Open addressing with linear probing (the hashes are uniform already) and backward-shift
// deletion, so no tombstones pile up. Each slot's upper 16 bits of the client field carry the
// table's epoch: a slot of another epoch is empty, which makes forgetting every token (a reset)
// one increment instead of a rewrite of the whole block.
//
// Versions follow paygated's token_sync chunks (paygate/token_sync.hpp): the table holds every
// change up to version(). It is fresh (usable()) while the daemon confirmed, within kMaxStaleness,
// that nothing newer existed; otherwise the module refuses authenticated requests (503) rather
// than trust a table that may miss a revocation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "paygate/token_sync.hpp"

namespace paygate::module {

struct TokenSlot {
    unsigned char hash[token_sync::kHashBytes];
    std::uint64_t tag;   // epoch << 48 | client id; a slot of another epoch is empty
};

// At the start of the block, followed by the slots. Plain data: it lives in shared memory.
struct TokenTableHeader {
    std::uint64_t magic;
    std::uint64_t capacity;        // slots
    std::uint64_t max_count;       // tokens it takes (3/4 of the slots: probes stay short)
    std::uint64_t count;           // live tokens held
    std::uint64_t epoch;           // 1..0xffff
    std::uint64_t loaded;          // 1 once a sync reached the daemon's head since the last reset
    std::uint64_t version;         // every change up to this version is applied
    std::uint64_t head;            // the daemon's newest version, as of the last chunk
    std::int64_t confirmed_ns;     // steady clock: every change committed before it is applied
    std::int64_t lease_pid;        // the worker that syncs, 0: none
    std::int64_t lease_until_ns;   // its lease runs out then unless renewed
    std::int64_t behind_since_ns;  // the first "behind" answer of a streak, 0: none
    std::uint64_t resets;          // figures
    std::uint64_t full_refusals;   // changes refused because the table was full
};

class TokenTable {
public:
    using Clock = std::chrono::steady_clock;

    // Authenticated requests are refused (503) when the last confirmation is older than this.
    static constexpr std::chrono::milliseconds kMaxStaleness{3000};
    // A worker holding the lease syncs; it renews it on each tick and each chunk. Should it die,
    // another worker takes over once this has passed.
    static constexpr std::chrono::milliseconds kLease{1000};
    // Daemons answering "behind" (their version is older than the table's) for this long means the
    // database went back in time (a restore): the table resets and loads everything again.
    static constexpr std::chrono::milliseconds kBehindReset{2000};

    static std::size_t bytes_for(std::uint64_t capacity);
    static std::uint64_t capacity_for(std::size_t bytes);

    // Lays a new, empty table over `memory` (8-byte aligned, `bytes` long). Slots must read as
    // empty: the memory is zero (fresh shared memory is) or it is cleared here when it is not.
    static TokenTable create(void* memory, std::size_t bytes);
    // A table laid over `memory` before (a reload keeps the zone).
    static TokenTable attach(void* memory);

    TokenTable() = default;
    bool valid() const { return h_ != nullptr; }

    // ---- any worker, under the zone's lock ----

    bool loaded() const { return h_->loaded != 0; }
    // Loaded and confirmed within kMaxStaleness.
    bool usable(Clock::time_point now) const;
    // The client id of the token whose SHA-256 is `hash`, if it is live.
    std::optional<std::uint64_t> client_of_hash(const unsigned char* hash) const;
    std::uint64_t version() const { return h_->version; }
    std::uint64_t size() const { return h_->count; }
    std::uint64_t capacity() const { return h_->capacity; }
    std::uint64_t max_count() const { return h_->max_count; }
    const TokenTableHeader& header() const { return *h_; }

    // ---- the lease ----

    // True when `pid` holds the lease from now (it was free, ran out, or was its own: renewed).
    bool take_lease(long pid, Clock::time_point now);
    bool holds_lease(long pid, Clock::time_point now) const;
    void release_lease(long pid);

    // ---- applying a chunk: the lease holder, the lock taken around each call ----

    enum class Start {
        Apply,         // go on with apply_entries and finish_chunk
        Ignore,        // not ours (lease lost) or not for this version (a stale answer): drop it
        Behind,        // the daemon is behind us: nothing to apply, ask again later
        BehindReset,   // behind for kBehindReset: the table was reset, ask again from 0 at once
    };
    Start begin_chunk(const token_sync::View& chunk, long pid, Clock::time_point now);

    enum class Applied { Ok, LostLease, Full };
    // Applies entries [first, last) of `chunk` (an upsert per live entry, a removal per other).
    // Stops at the first change the table has no room for (Full); the rest of the chunk is not
    // applied and the version does not move, so the sync keeps failing (fail closed) until the
    // zone is made larger.
    Applied apply_entries(const token_sync::View& chunk, std::size_t first, std::size_t last, long pid,
                          Clock::time_point now);

    struct Finished {
        bool ok = false;        // the version moved to the chunk's upto (false: lease lost meanwhile)
        bool at_head = false;   // nothing newer at the daemon: no need to ask again before the next tick
    };
    // The chunk is applied: version = upto. At the daemon's head the table is loaded and
    // confirmed as of `sent_at` (when the request left) less the daemon's own age.
    Finished finish_chunk(const token_sync::View& chunk, long pid, Clock::time_point sent_at, Clock::time_point now);

    // ---- the table itself (tests and the adapter's figures) ----

    bool upsert(const unsigned char* hash, std::uint64_t client_id);   // false: full
    void remove(const unsigned char* hash);
    // Forgets every token (one epoch step); not loaded until a sync reaches the head again.
    void reset();

private:
    explicit TokenTable(TokenTableHeader* h) : h_(h), slots_(reinterpret_cast<TokenSlot*>(h + 1)) {}

    std::uint64_t home(const unsigned char* hash) const;
    bool empty(const TokenSlot& s) const { return (s.tag >> 48) != h_->epoch; }
    std::uint64_t next(std::uint64_t i) const { return i + 1 == h_->capacity ? 0 : i + 1; }
    // The slot holding `hash`, or the empty slot where it would go.
    std::uint64_t find(const unsigned char* hash) const;

    TokenTableHeader* h_ = nullptr;
    TokenSlot* slots_ = nullptr;
};

// The raw SHA-256 of a presented token, for client_of_hash.
void token_hash(std::string_view token, unsigned char out[token_sync::kHashBytes]);

}  // namespace paygate::module
