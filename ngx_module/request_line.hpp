// The request line as logs show it: credentials in its query string masked. Plain C++, no nginx types.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace paygate::module {

// `request_line` ("POST /path?a=1&access_token=s HTTP/1.1") with the value of every query
// parameter named `name` (ASCII case-insensitive, as nginx's $arg_ lookup) replaced by "***";
// nothing when no such parameter has a value. Only the query is looked at: the path, the
// protocol and the other parameters stay byte for byte.
std::optional<std::string> mask_query_parameter(std::string_view request_line, std::string_view name);

}  // namespace paygate::module
