// The error body every paygate component answers with: {"code": "...", "message": "..."}.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "paygate/ipc.hpp"

namespace paygate::ipc {

// Appends `text` to `out` as a JSON string literal (quotes included), escaping as RFC 8259 says;
// bytes that are not well-formed UTF-8 become U+FFFD.
void append_json_string(std::string& out, std::string_view text);

// {"code":"<code>","message":"<message>"}
std::string json_error(std::string_view code, std::string_view message);

// A reply carrying json_error() with content-type application/json.
Reply error_reply(std::uint64_t id, std::uint16_t status, std::string_view code, std::string_view message);

// The internal reply header of a request the daemon refused before any of its work began; its
// value says why. The module may send such a request once more, to another daemon (and strips
// the header from what the client sees). No other reply may carry it.
inline constexpr std::string_view kNotExecutedHeader = "x-paygate-not-executed";
enum class NotExecuted {
    Overloaded,   // the queue for a worker was too long or too old
    Draining,     // the daemon is shutting down (SIGTERM)
};
std::string_view not_executed_name(NotExecuted why);   // "overloaded" | "draining"
// 503 {"code":"overloaded"|"service_unavailable",…} with kNotExecutedHeader.
Reply not_executed_reply(std::uint64_t id, NotExecuted why);

}  // namespace paygate::ipc
