// One JSON object per line on stderr, keys in call order after the three every line has:
//
//   log::info("request").kv("request_id", id).kv("status", 200).kv("ms", 0.41);
//   {"time":"2026-11-24T10:00:00.123Z","level":"info","event":"request","request_id":"5f2c","status":200,"ms":0.41}
//
// The line is written with a single write(2) when the temporary Line dies, so lines from worker
// threads never interleave. Strings are JSON-escaped (bytes that are not UTF-8 become U+FFFD) and
// cut at 256 bytes ("..." appended); integers and doubles (two decimals) are JSON numbers, bools
// JSON booleans. Never pass bodies, tokens, secrets, card data or personal data.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "paygated/config.hpp"

namespace paygate::daemon {

// "2026-11-24T10:00:00Z", or with milliseconds "2026-11-24T10:00:00.123Z".
std::string utc_timestamp(std::chrono::system_clock::time_point when, bool with_millis);

namespace log {

void set_level(LogLevel level);
bool enabled(LogLevel level);
// Redirects output (default 2, stderr); for tests.
void set_fd(int fd);

// Appends `,"key":"value"` to `out`, escaped and cut as above (exposed for tests).
void append_kv(std::string& out, std::string_view key, std::string_view value);

class Line {
public:
    Line(LogLevel level, std::string_view event);
    ~Line();
    Line(const Line&) = delete;
    Line& operator=(const Line&) = delete;

    Line& kv(std::string_view key, std::string_view value);
    Line& kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }
    Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value ? value : "")); }
    Line& kv(std::string_view key, double value);  // two decimals
    Line& kv(std::string_view key, bool value) { return number(key, value ? "true" : "false"); }
    template <typename Int, typename = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>>>
    Line& kv(std::string_view key, Int value) {
        return on_ ? number(key, std::to_string(value)) : *this;
    }

private:
    // `digits` written as they are: a JSON number or literal.
    Line& number(std::string_view key, std::string_view digits);

    bool on_;
    std::string buf_;
};

inline Line debug(std::string_view event) { return Line(LogLevel::Debug, event); }
inline Line info(std::string_view event) { return Line(LogLevel::Info, event); }
inline Line warn(std::string_view event) { return Line(LogLevel::Warn, event); }
inline Line error(std::string_view event) { return Line(LogLevel::Error, event); }

}  // namespace log
}  // namespace paygate::daemon
