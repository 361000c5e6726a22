// The auth.tokens chunk codec (see token_sync.hpp).
#include "paygate/token_sync.hpp"

#include <cstring>

namespace paygate::token_sync {

namespace {

constexpr char kMagic[4] = {'P', 'G', 'T', 'D'};
constexpr std::uint8_t kFormat = 1;
constexpr std::uint8_t kFlagReset = 1;
constexpr std::uint8_t kFlagBehind = 2;

void put_u64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

std::uint32_t get_u32(const unsigned char* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

Writer::Writer(std::string& out, const Header& header) : out_(out), start_(out.size()) {
    out_.append(kMagic, sizeof kMagic);
    out_.push_back(static_cast<char>(kFormat));
    out_.push_back(static_cast<char>((header.reset ? kFlagReset : 0) | (header.behind ? kFlagBehind : 0)));
    out_.append(2, '\0');
    put_u64(out_, header.from);
    put_u64(out_, header.upto);
    put_u64(out_, header.head);
    put_u32(out_, header.age_ms);
    put_u32(out_, 0);   // count, set by finish()
}

void Writer::add(const unsigned char* hash, std::uint64_t client_id) {
    out_.append(reinterpret_cast<const char*>(hash), kHashBytes);
    put_u64(out_, client_id);
    ++count_;
}

void Writer::finish() {
    for (int i = 0; i < 4; ++i) out_[start_ + 36 + static_cast<std::size_t>(i)] = static_cast<char>((count_ >> (8 * i)) & 0xff);
}

std::string encode(const Header& header, const std::vector<Entry>& entries) {
    std::string out;
    out.reserve(kHeaderBytes + entries.size() * kEntryBytes);
    Writer w(out, header);
    for (const Entry& e : entries) w.add(e.hash.data(), e.client_id);
    w.finish();
    return out;
}

std::uint64_t View::client_id(std::size_t i) const { return get_u64(entries + i * kEntryBytes + kHashBytes); }

bool decode(std::string_view body, View& out, std::string& error) {
    const auto* p = reinterpret_cast<const unsigned char*>(body.data());
    if (body.size() < kHeaderBytes) {
        error = "token chunk shorter than its header";
        return false;
    }
    if (std::memcmp(p, kMagic, sizeof kMagic) != 0 || p[4] != kFormat) {
        error = "not a token chunk of format 1";
        return false;
    }
    std::uint8_t flags = p[5];
    if ((flags & ~(kFlagReset | kFlagBehind)) != 0 || flags == (kFlagReset | kFlagBehind) || p[6] != 0 || p[7] != 0) {
        error = "token chunk has unknown flags";
        return false;
    }
    Header h;
    h.reset = (flags & kFlagReset) != 0;
    h.behind = (flags & kFlagBehind) != 0;
    h.from = get_u64(p + 8);
    h.upto = get_u64(p + 16);
    h.head = get_u64(p + 24);
    h.age_ms = get_u32(p + 32);
    h.count = get_u32(p + 36);
    if (h.count > kMaxChunkEntries) {
        error = "token chunk has more entries than allowed";
        return false;
    }
    if (body.size() != kHeaderBytes + std::size_t{h.count} * kEntryBytes) {
        error = "token chunk size does not match its count";
        return false;
    }
    if (h.behind) {
        if (h.count != 0 || h.head >= h.from) {
            error = "token chunk says behind but is not";
            return false;
        }
    } else if (h.upto < h.from || h.head < h.upto || (h.reset && h.from != 0) || (h.count > 0 && h.upto == h.from)) {
        error = "token chunk versions out of order";
        return false;
    }
    out.header = h;
    out.entries = p + kHeaderBytes;
    for (std::size_t i = 0; i < h.count; ++i) {
        std::uint64_t client = out.client_id(i);
        if (client > kMaxClientId || (client == 0 && h.reset)) {
            error = "token chunk has a bad client id";
            return false;
        }
    }
    return true;
}

bool hash_from_hex(std::string_view hex, Hash& out) {
    if (hex.size() != 2 * kHashBytes) return false;
    for (std::size_t i = 0; i < kHashBytes; ++i) {
        int hi = hex_digit(hex[2 * i]);
        int lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return true;
}

std::string hash_to_hex(const unsigned char* hash) {
    static const char digits[] = "0123456789abcdef";
    std::string out(2 * kHashBytes, '0');
    for (std::size_t i = 0; i < kHashBytes; ++i) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 0xf];
    }
    return out;
}

}  // namespace paygate::token_sync
