// The request line and path as logs show them: credentials in the query string or in a path
// segment masked. Plain C++, no nginx types.
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

// `path` ("/pay/<token>/pay") with its segment number `index` (0 is the one after the first
// slash) cut to its first `keep` bytes followed by "***"; nothing when there is no such segment.
std::optional<std::string> mask_path_segment(std::string_view path, std::size_t index, std::size_t keep);

// The number of `pattern`'s first "{name}" segment, as mask_path_segment counts; nothing if none.
std::optional<std::size_t> parameter_segment(std::string_view pattern);

// `request_line` ("GET /pay/abc HTTP/1.1") with its target (between the first two spaces, or to
// the end of an HTTP/0.9 line) replaced by `target`.
std::string replace_request_target(std::string_view request_line, std::string_view target);

}  // namespace paygate::module
