// The one message schema between ngx_http_paygate_module and paygated, and its binary codec.
//
// One ZeroMQ frame carries one message. The nginx worker's DEALER sends a Request frame; the
// daemon's ROUTER adds the peer identity, and the reply goes back as one Reply frame. Requests
// and replies are matched by `id`, which is unique within one nginx worker's socket.
//
// Wire format (all integers little-endian, strings are varint length + bytes):
//   magic "PG" | version u8 | kind u8 (1 request, 2 reply) | id u64 | fields of that kind
// A decoder accepts only its own version; an unknown version, kind, truncated or trailing bytes,
// or a field over its limit is rejected with a reason, never read past the buffer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paygate::ipc {

// 2: Reply carries record_expires_in_ms.
inline constexpr std::uint8_t kVersion = 2;

// Bounds that keep a garbage frame from asking for huge allocations.
inline constexpr std::size_t kMaxFrameBytes = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxFieldBytes = 8 * 1024;   // any string but the body
inline constexpr std::size_t kMaxListItems = 64;          // headers, path parameters

enum class Method : std::uint8_t { Get = 1, Post = 2, Put = 3, Patch = 4, Delete = 5 };

std::string_view method_name(Method m);
// "GET" -> Method::Get; false for anything else.
bool parse_method(std::string_view name, Method& out);

using NameValue = std::pair<std::string, std::string>;

struct Request {
    std::uint64_t id = 0;              // matches the reply to the waiting nginx request
    Method method = Method::Get;
    std::string route;                 // route name from routes.hpp, e.g. "health"
    std::string request_id;            // nginx's $request_id: the id every log line carries
    std::string principal;             // authenticated caller ("" when the route is public)
    std::uint32_t timeout_ms = 0;      // the module's deadline; work older than this is dropped
    std::uint64_t sent_unix_ms = 0;    // the module's wall clock at send (0: unknown), for that age
    std::vector<NameValue> params;     // path parameters, e.g. {"payment_id", "..."}
    std::vector<NameValue> headers;    // the few headers the core needs, names lower-case
    std::string body;                  // raw request body

    // Value of a path parameter or header, or nullptr.
    const std::string* param(std::string_view name) const;
    const std::string* header(std::string_view name) const;
};

struct Reply {
    std::uint64_t id = 0;
    std::uint16_t status = 500;
    // A key's recorded outcome (x-paygate-idempotency: stored or replayed): how much longer
    // PostgreSQL replays it, in milliseconds (the row's expires_at - now(), counted from the start
    // of the transaction that read or wrote it). The module's replay zone keeps the reply no longer
    // than that. 0 on every other reply.
    std::uint64_t record_expires_in_ms = 0;
    std::vector<NameValue> headers;    // e.g. {"content-type", "application/json"}
    std::string body;
};

std::string encode(const Request& request);
std::string encode(const Reply& reply);

// On failure `error` says why (for a log line) and `out` is unspecified.
bool decode(std::string_view frame, Request& out, std::string& error);
bool decode(std::string_view frame, Reply& out, std::string& error);

}  // namespace paygate::ipc
