// Binary codec of the module <-> daemon messages (format described in ipc.hpp).
#include "paygate/ipc.hpp"

#include <cstring>

namespace paygate::ipc {

namespace {

constexpr char kMagic0 = 'P';
constexpr char kMagic1 = 'G';
constexpr std::uint8_t kKindRequest = 1;
constexpr std::uint8_t kKindReply = 2;

class Writer {
public:
    explicit Writer(std::size_t reserve) { out_.reserve(reserve); }

    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }

    void fixed(std::uint64_t v, int bytes) {
        for (int i = 0; i < bytes; ++i) {
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
        }
    }

    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
            v >>= 7;
        }
        out_.push_back(static_cast<char>(v));
    }

    void str(std::string_view s) {
        varint(s.size());
        out_.append(s.data(), s.size());
    }

    void list(const std::vector<NameValue>& items) {
        varint(items.size());
        for (const auto& [name, value] : items) {
            str(name);
            str(value);
        }
    }

    void header(std::uint8_t kind, std::uint64_t id) {
        out_.push_back(kMagic0);
        out_.push_back(kMagic1);
        u8(kVersion);
        u8(kind);
        fixed(id, 8);
    }

    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

// Every read checks the remaining length first; the first failure sticks and names the field.
class Reader {
public:
    explicit Reader(std::string_view in) : in_(in) {}

    bool ok() const { return error_.empty(); }
    const std::string& error() const { return error_; }
    bool at_end() const { return pos_ == in_.size(); }

    std::uint8_t u8(const char* what) {
        if (!need(1, what)) return 0;
        return static_cast<std::uint8_t>(in_[pos_++]);
    }

    std::uint64_t fixed(int bytes, const char* what) {
        if (!need(static_cast<std::size_t>(bytes), what)) return 0;
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) {
            v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
        }
        pos_ += static_cast<std::size_t>(bytes);
        return v;
    }

    std::uint64_t varint(const char* what) {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (!need(1, what)) return 0;
            auto byte = static_cast<unsigned char>(in_[pos_++]);
            v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0) return v;
        }
        fail("overlong varint in ", what);
        return 0;
    }

    void str(std::string& out, std::size_t limit, const char* what) {
        std::uint64_t len = varint(what);
        if (!ok()) return;
        if (len > limit) {
            fail("oversized ", what);
            return;
        }
        if (!need(len, what)) return;
        out.assign(in_.data() + pos_, len);
        pos_ += len;
    }

    void list(std::vector<NameValue>& out, const char* what) {
        std::uint64_t count = varint(what);
        if (!ok()) return;
        if (count > kMaxListItems) {
            fail("too many items in ", what);
            return;
        }
        out.clear();
        out.reserve(count);
        for (std::uint64_t i = 0; i < count && ok(); ++i) {
            NameValue item;
            str(item.first, kMaxFieldBytes, what);
            str(item.second, kMaxFieldBytes, what);
            out.push_back(std::move(item));
        }
    }

    void fail(const char* reason, const char* what) {
        if (error_.empty()) error_ = std::string(reason) + what;
    }

private:
    bool need(std::uint64_t n, const char* what) {
        if (!ok()) return false;
        if (n > in_.size() - pos_) {
            fail("truncated frame at ", what);
            return false;
        }
        return true;
    }

    std::string_view in_;
    std::size_t pos_ = 0;
    std::string error_;
};

std::size_t list_bytes(const std::vector<NameValue>& items) {
    std::size_t n = 0;
    for (const auto& [name, value] : items) n += name.size() + value.size() + 4;
    return n;
}

// Reads magic, version and kind; returns the id.
std::uint64_t read_preamble(Reader& in, std::string_view frame, std::uint8_t kind) {
    if (frame.size() > kMaxFrameBytes) {
        in.fail("frame larger than the limit", "");
        return 0;
    }
    if (in.u8("magic") != static_cast<std::uint8_t>(kMagic0) ||
        in.u8("magic") != static_cast<std::uint8_t>(kMagic1)) {
        in.fail("bad magic", "");
        return 0;
    }
    std::uint8_t version = in.u8("version");
    if (in.ok() && version != kVersion) {
        in.fail("unsupported version", "");
        return 0;
    }
    std::uint8_t got_kind = in.u8("kind");
    if (in.ok() && got_kind != kind) {
        in.fail("unexpected message kind", "");
        return 0;
    }
    return in.fixed(8, "id");
}

bool finish(const Reader& in, std::string& error) {
    if (!in.ok()) {
        error = in.error();
        return false;
    }
    if (!in.at_end()) {
        error = "trailing bytes after message";
        return false;
    }
    return true;
}

const std::string* find(const std::vector<NameValue>& items, std::string_view name) {
    for (const auto& item : items) {
        if (item.first == name) return &item.second;
    }
    return nullptr;
}

}  // namespace

std::string_view method_name(Method m) {
    switch (m) {
        case Method::Get: return "GET";
        case Method::Post: return "POST";
        case Method::Put: return "PUT";
        case Method::Patch: return "PATCH";
        case Method::Delete: return "DELETE";
    }
    return "UNKNOWN";
}

bool parse_method(std::string_view name, Method& out) {
    for (Method m : {Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete}) {
        if (name == method_name(m)) {
            out = m;
            return true;
        }
    }
    return false;
}

const std::string* Request::param(std::string_view name) const { return find(params, name); }
const std::string* Request::header(std::string_view name) const { return find(headers, name); }

std::string encode(const Request& r) {
    Writer out(32 + r.route.size() + r.request_id.size() + r.principal.size() + list_bytes(r.params) +
               list_bytes(r.headers) + r.body.size());
    out.header(kKindRequest, r.id);
    out.u8(static_cast<std::uint8_t>(r.method));
    out.str(r.route);
    out.str(r.request_id);
    out.str(r.principal);
    out.fixed(r.timeout_ms, 4);
    out.fixed(r.sent_unix_ms, 8);
    out.list(r.params);
    out.list(r.headers);
    out.str(r.body);
    return out.take();
}

std::string encode(const Reply& r) {
    Writer out(24 + list_bytes(r.headers) + r.body.size());
    out.header(kKindReply, r.id);
    out.fixed(r.status, 2);
    out.varint(r.record_expires_in_ms);
    out.list(r.headers);
    out.str(r.body);
    return out.take();
}

bool decode(std::string_view frame, Request& out, std::string& error) {
    Reader in(frame);
    out.id = read_preamble(in, frame, kKindRequest);
    std::uint8_t method = in.u8("method");
    if (in.ok()) {
        if (method < static_cast<std::uint8_t>(Method::Get) || method > static_cast<std::uint8_t>(Method::Delete)) {
            in.fail("unknown method", "");
        }
        out.method = static_cast<Method>(method);
    }
    in.str(out.route, kMaxFieldBytes, "route");
    in.str(out.request_id, kMaxFieldBytes, "request_id");
    in.str(out.principal, kMaxFieldBytes, "principal");
    out.timeout_ms = static_cast<std::uint32_t>(in.fixed(4, "timeout_ms"));
    out.sent_unix_ms = in.fixed(8, "sent_unix_ms");
    in.list(out.params, "params");
    in.list(out.headers, "headers");
    in.str(out.body, kMaxFrameBytes, "body");
    return finish(in, error);
}

bool decode(std::string_view frame, Reply& out, std::string& error) {
    Reader in(frame);
    out.id = read_preamble(in, frame, kKindReply);
    out.status = static_cast<std::uint16_t>(in.fixed(2, "status"));
    if (in.ok() && (out.status < 100 || out.status > 599)) in.fail("status out of range", "");
    out.record_expires_in_ms = in.varint("record_expires_in_ms");
    in.list(out.headers, "headers");
    in.str(out.body, kMaxFrameBytes, "body");
    return finish(in, error);
}

}  // namespace paygate::ipc
