// The body of an auth.tokens reply: one chunk of the changes to the live client tokens.
//
// The module holds the set of live token hashes at some change version V and asks paygated for
// what changed since V; each reply is one chunk of those changes, in version order. Binary,
// because a chunk carries up to kMaxChunkEntries entries and the module applies it on an nginx
// event loop: a fixed-size record per entry is read in place, with no parser and no allocation.
//
// Layout (integers little-endian), kHeaderBytes then `count` entries of kEntryBytes:
//   "PGTD" | format u8 (1) | flags u8 (1 reset, 2 behind) | 0 u16
//   | from u64 | upto u64 | head u64 | age_ms u32 | count u32
//   entry: sha256 of the token text (32 raw bytes) | client_id u64 (0: the token is not live;
//          otherwise credential_value(): the kind in bits 40..47, the owning client below)
// See docs/daemon.md, "How nginx learns about tokens".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::token_sync {

inline constexpr std::string_view kContentType = "application/x-paygate-token-delta";
inline constexpr std::size_t kHashBytes = 32;
inline constexpr std::size_t kHeaderBytes = 40;
inline constexpr std::size_t kEntryBytes = kHashBytes + 8;
// At most this many entries per reply: about 400 KB, far below ipc::kMaxFrameBytes, and a few
// milliseconds of work for whoever applies it.
inline constexpr std::size_t kMaxChunkEntries = 10000;
// Client ids are bigserials; the module keeps the upper 16 bits of its table slots for itself.
inline constexpr std::uint64_t kMaxClientId = (std::uint64_t{1} << 48) - 1;

// An entry's 48-bit value says whose credential it is: bits 40..47 the kind (kClientToken, or
// the partner number of a partner's API key, see kKeyPartners), bits 0..39 the client id that
// owns it. A client token therefore never passes where a partner key is asked for, nor one
// partner's key for another's: the kind is compared, not only the hash.
inline constexpr unsigned kKindShift = 40;
inline constexpr std::uint64_t kMaxOwnerId = (std::uint64_t{1} << kKindShift) - 1;
inline constexpr unsigned kClientToken = 0;
// The partners that call paygate with an API key, numbered from 1 by their place here; the
// number is what the module's table stores, so entries are only ever appended.
inline constexpr std::string_view kKeyPartners[] = {"whitebird"};

// The kind of `partner`'s API keys, 0 when it has none.
constexpr unsigned key_partner_kind(std::string_view partner) {
    unsigned n = 0;
    for (std::string_view p : kKeyPartners) {
        ++n;
        if (p == partner) return n;
    }
    return 0;
}
constexpr std::uint64_t credential_value(unsigned kind, std::uint64_t owner_id) {
    return std::uint64_t{kind} << kKindShift | owner_id;
}
constexpr unsigned credential_kind(std::uint64_t value) { return static_cast<unsigned>(value >> kKindShift); }
constexpr std::uint64_t credential_owner(std::uint64_t value) { return value & kMaxOwnerId; }

struct Header {
    // The receiver must first forget every token it holds: the entries list live tokens from
    // version 0 on (the receiver asked with since 0, or from before what the sender still knows).
    bool reset = false;
    // The sender is behind the receiver's version (another daemon told it more already, or the
    // database went back in time): nothing to apply, and no confirmation either.
    bool behind = false;
    std::uint64_t from = 0;    // the version these changes apply to (0 with reset)
    std::uint64_t upto = 0;    // the version the receiver holds after applying them
    std::uint64_t head = 0;    // the sender's newest version: upto == head means "you are current"
    std::uint32_t age_ms = 0;  // how long before answering the sender last confirmed head with the database
    std::uint32_t count = 0;   // entries that follow
};

using Hash = std::array<unsigned char, kHashBytes>;

struct Entry {
    Hash hash{};
    std::uint64_t client_id = 0;   // 0: not live (revoked); never 0 in a reset chunk
};

// Writes a chunk incrementally: header first, then entries, then finish() sets the count.
class Writer {
public:
    Writer(std::string& out, const Header& header);
    void add(const unsigned char* hash, std::uint64_t client_id);
    std::uint32_t count() const { return count_; }
    void finish();

private:
    std::string& out_;
    std::size_t start_;
    std::uint32_t count_ = 0;
};

std::string encode(const Header& header, const std::vector<Entry>& entries);   // count taken from entries

// A decoded chunk, pointing into the body it was decoded from (which must outlive it).
struct View {
    Header header;
    const unsigned char* entries = nullptr;

    const unsigned char* hash(std::size_t i) const { return entries + i * kEntryBytes; }
    std::uint64_t client_id(std::size_t i) const;
};

// Checks the whole body (sizes, flags, version order, client ids) before anything is applied;
// false with `error` when it is not a well-formed chunk.
bool decode(std::string_view body, View& out, std::string& error);

// Lower-case hex <-> raw hash.
bool hash_from_hex(std::string_view hex, Hash& out);
std::string hash_to_hex(const unsigned char* hash);

}  // namespace paygate::token_sync
