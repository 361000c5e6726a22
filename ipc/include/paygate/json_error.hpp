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

}  // namespace paygate::ipc
