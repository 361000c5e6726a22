// The event log: level filter, timestamp, one JSON object per line, one write(2) per line.
#include "paygated/log.hpp"

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace paygate::daemon {

std::string utc_timestamp(std::chrono::system_clock::time_point when, bool with_millis) {
    using namespace std::chrono;
    auto ms = duration_cast<milliseconds>(when.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    long frac = static_cast<long>(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        --secs;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_millis) {
        std::snprintf(buf + n, sizeof buf - n, ".%03ldZ", frac);
    } else {
        std::snprintf(buf + n, sizeof buf - n, "Z");
    }
    return buf;
}

namespace log {

namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::atomic<int> g_fd{2};
constexpr std::size_t kMaxValue = 256;

// Length of the well-formed UTF-8 sequence at the start of `s` (1 to 4), or 0 if it is not one
// (overlong forms, surrogates and code points past U+10FFFF are not).
std::size_t utf8_sequence(std::string_view s) {
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    unsigned char c = byte(0);
    std::size_t len;
    char32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (s.size() < len) return 0;
    for (std::size_t i = 1; i < len; ++i) {
        if ((byte(i) & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (byte(i) & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return len;
}

// `value` as the body of a JSON string: quotes, backslashes and control bytes escaped, bytes that
// are not UTF-8 replaced by U+FFFD, so every line parses whatever a value held.
void append_escaped(std::string& out, std::string_view value) {
    static const char hex[] = "0123456789abcdef";
    while (!value.empty()) {
        auto c = static_cast<unsigned char>(value[0]);
        std::size_t len = utf8_sequence(value);
        if (len == 0) {
            out += "\\ufffd";
            len = 1;
        } else if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        } else {
            out.append(value.substr(0, len));
        }
        value.remove_prefix(len);
    }
}

void append_key(std::string& out, std::string_view key) {
    out += ",\"";
    append_escaped(out, key);
    out += "\":";
}

}  // namespace

void set_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
bool enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }
void set_fd(int fd) { g_fd.store(fd); }

void append_kv(std::string& out, std::string_view key, std::string_view value) {
    bool cut = value.size() > kMaxValue;
    if (cut) {
        // Cut before a UTF-8 sequence starts, not inside one.
        std::size_t end = kMaxValue;
        while (end > 0 && (static_cast<unsigned char>(value[end]) & 0xc0) == 0x80) --end;
        value = value.substr(0, end);
    }
    append_key(out, key);
    out.push_back('"');
    append_escaped(out, value);
    if (cut) out += "...";
    out.push_back('"');
}

namespace {
void append_number(std::string& out, std::string_view key, std::string_view number) {
    append_key(out, key);
    out.append(number);
}
}  // namespace

Line::Line(LogLevel level, std::string_view event) : on_(enabled(level)) {
    if (!on_) return;
    buf_.reserve(192);
    buf_ = "{\"time\":\"";
    buf_ += utc_timestamp(std::chrono::system_clock::now(), true);
    buf_ += "\",\"level\":\"";
    buf_ += log_level_name(level);
    buf_.push_back('"');
    append_kv(buf_, "event", event);
}

Line& Line::kv(std::string_view key, std::string_view value) {
    if (on_) append_kv(buf_, key, value);
    return *this;
}

Line& Line::kv(std::string_view key, double value) {
    if (!on_) return *this;
    if (!std::isfinite(value)) {
        append_number(buf_, key, "null");   // JSON has no NaN or infinity
        return *this;
    }
    char num[64];
    std::snprintf(num, sizeof num, "%.2f", value);
    append_number(buf_, key, num);
    return *this;
}

Line& Line::number(std::string_view key, std::string_view digits) {
    if (on_) append_number(buf_, key, digits);
    return *this;
}

Line::~Line() {
    if (!on_) return;
    buf_ += "}\n";
    const char* p = buf_.data();
    std::size_t left = buf_.size();
    int fd = g_fd.load(std::memory_order_relaxed);
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

}  // namespace log
}  // namespace paygate::daemon
