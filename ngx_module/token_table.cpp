// The shared token table (see token_table.hpp).
#include "token_table.hpp"

#include <cstring>
#include <new>

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace paygate::module {

namespace {

constexpr std::uint64_t kMagic = 0x70677462'6c310001ULL;   // "pgtbl1" and a layout number
constexpr std::uint64_t kMaxEpoch = 0xffff;
constexpr std::uint64_t kClientMask = token_sync::kMaxClientId;

std::int64_t ns(TokenTable::Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::int64_t ns(std::chrono::milliseconds d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

}  // namespace

std::size_t TokenTable::bytes_for(std::uint64_t capacity) {
    return sizeof(TokenTableHeader) + static_cast<std::size_t>(capacity) * sizeof(TokenSlot);
}

std::uint64_t TokenTable::capacity_for(std::size_t bytes) {
    if (bytes <= sizeof(TokenTableHeader)) return 0;
    return (bytes - sizeof(TokenTableHeader)) / sizeof(TokenSlot);
}

TokenTable TokenTable::create(void* memory, std::size_t bytes) {
    auto* h = new (memory) TokenTableHeader{};
    h->magic = kMagic;
    h->capacity = capacity_for(bytes);
    h->max_count = h->capacity / 4 * 3;
    h->epoch = 1;
    TokenTable t(h);
    // Fresh shared memory reads as zero (epoch 0: every slot empty) and is left untouched, so the
    // pages are only taken as tokens arrive. Memory that is not zero is cleared once.
    const auto* raw = reinterpret_cast<const unsigned char*>(t.slots_);
    std::size_t span = static_cast<std::size_t>(h->capacity) * sizeof(TokenSlot);
    std::size_t probe = span < 4096 ? span : 4096;
    for (std::size_t i = 0; i < probe; ++i) {
        if (raw[i] != 0) {
            std::memset(t.slots_, 0, span);
            break;
        }
    }
    return t;
}

TokenTable TokenTable::attach(void* memory) {
    auto* h = static_cast<TokenTableHeader*>(memory);
    return h->magic == kMagic ? TokenTable(h) : TokenTable();
}

bool TokenTable::usable(Clock::time_point now) const {
    return h_->loaded != 0 && h_->confirmed_ns != 0 && ns(now) - h_->confirmed_ns <= ns(kMaxStaleness);
}

std::uint64_t TokenTable::home(const unsigned char* hash) const {
    std::uint64_t k = 0;
    std::memcpy(&k, hash, sizeof k);
    // Maps the uniform 64-bit key onto [0, capacity) without a division.
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(k) * h_->capacity) >> 64);
}

std::uint64_t TokenTable::find(const unsigned char* hash) const {
    std::uint64_t i = home(hash);
    // The table is never more than 3/4 full, so an empty slot ends every probe.
    while (!empty(slots_[i]) && std::memcmp(slots_[i].hash, hash, token_sync::kHashBytes) != 0) i = next(i);
    return i;
}

std::optional<std::uint64_t> TokenTable::client_of_hash(const unsigned char* hash) const {
    if (h_->capacity == 0) return std::nullopt;
    const TokenSlot& s = slots_[find(hash)];
    // find() compares hashes, which tell an attacker nothing about the token; the constant-time
    // check of the slot found is belt and braces.
    if (empty(s) || CRYPTO_memcmp(s.hash, hash, token_sync::kHashBytes) != 0) return std::nullopt;
    return s.tag & kClientMask;
}

bool TokenTable::upsert(const unsigned char* hash, std::uint64_t client_id) {
    if (h_->capacity == 0) return false;
    TokenSlot& s = slots_[find(hash)];
    if (empty(s)) {
        if (h_->count >= h_->max_count) {
            ++h_->full_refusals;
            return false;
        }
        std::memcpy(s.hash, hash, token_sync::kHashBytes);
        ++h_->count;
    }
    s.tag = h_->epoch << 48 | (client_id & kClientMask);
    return true;
}

void TokenTable::remove(const unsigned char* hash) {
    if (h_->capacity == 0) return;
    std::uint64_t hole = find(hash);
    if (empty(slots_[hole])) return;
    // Backward shift: pull later entries of the probe run into the hole unless that would move one
    // before its home slot; the run stays unbroken, so lookups need no tombstones.
    for (std::uint64_t j = next(hole);; j = next(j)) {
        if (empty(slots_[j])) break;
        std::uint64_t k = home(slots_[j].hash);
        bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
        if (stays) continue;
        slots_[hole] = slots_[j];
        hole = j;
    }
    slots_[hole].tag = 0;   // epoch 0 is never current
    --h_->count;
}

void TokenTable::reset() {
    if (h_->epoch >= kMaxEpoch) {
        // Once in 65535 resets the epochs wrap: old slots would come back to life, so clear them.
        std::memset(slots_, 0, static_cast<std::size_t>(h_->capacity) * sizeof(TokenSlot));
        h_->epoch = 1;
    } else {
        ++h_->epoch;
    }
    h_->count = 0;
    h_->version = 0;
    h_->loaded = 0;
    ++h_->resets;
}

bool TokenTable::take_lease(long pid, Clock::time_point now) {
    if (h_->lease_pid != 0 && h_->lease_pid != pid && ns(now) < h_->lease_until_ns) return false;
    h_->lease_pid = pid;
    h_->lease_until_ns = ns(now) + ns(kLease);
    return true;
}

bool TokenTable::holds_lease(long pid, Clock::time_point now) const {
    return h_->lease_pid == pid && ns(now) < h_->lease_until_ns;
}

void TokenTable::release_lease(long pid) {
    if (h_->lease_pid == pid) {
        h_->lease_pid = 0;
        h_->lease_until_ns = 0;
    }
}

TokenTable::Start TokenTable::begin_chunk(const token_sync::View& chunk, long pid, Clock::time_point now) {
    // Taking (not just checking) the lease renews it: a long sync keeps it.
    if (!holds_lease(pid, now) || !take_lease(pid, now)) return Start::Ignore;
    const token_sync::Header& c = chunk.header;
    if (c.behind) {
        if (h_->behind_since_ns == 0) h_->behind_since_ns = ns(now);
        if (ns(now) - h_->behind_since_ns < ns(kBehindReset)) return Start::Behind;
        h_->behind_since_ns = 0;
        reset();
        return Start::BehindReset;
    }
    h_->behind_since_ns = 0;
    if (c.reset) {
        reset();
        return Start::Apply;
    }
    return c.from == h_->version ? Start::Apply : Start::Ignore;
}

TokenTable::Applied TokenTable::apply_entries(const token_sync::View& chunk, std::size_t first, std::size_t last,
                                              long pid, Clock::time_point now) {
    if (!holds_lease(pid, now)) return Applied::LostLease;
    if (last > chunk.header.count) last = chunk.header.count;
    for (std::size_t i = first; i < last; ++i) {
        std::uint64_t client = chunk.client_id(i);
        if (client == 0) {
            remove(chunk.hash(i));
        } else if (!upsert(chunk.hash(i), client)) {
            return Applied::Full;
        }
    }
    take_lease(pid, now);
    return Applied::Ok;
}

TokenTable::Finished TokenTable::finish_chunk(const token_sync::View& chunk, long pid, Clock::time_point sent_at,
                                              Clock::time_point now) {
    Finished f;
    const token_sync::Header& c = chunk.header;
    // Another worker may have taken over while the lock was let go between batches.
    if (!holds_lease(pid, now) || h_->version != c.from) return f;
    h_->version = c.upto;
    h_->head = c.head;
    f.ok = true;
    f.at_head = c.upto == c.head;
    if (f.at_head) {
        h_->loaded = 1;
        // The daemon had everything up to its head, as of `age_ms` before it answered, and it
        // answered after the request left: so the table is complete as of sent_at - age.
        std::int64_t as_of = ns(sent_at) - static_cast<std::int64_t>(c.age_ms) * 1000000;
        if (as_of > h_->confirmed_ns) h_->confirmed_ns = as_of;
    }
    return f;
}

void token_hash(std::string_view token, unsigned char out[token_sync::kHashBytes]) {
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), out);
}

}  // namespace paygate::module
