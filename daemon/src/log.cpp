// The event log: level filter, timestamp, logfmt-style quoting, one write(2) per line.
#include "paygated/log.hpp"

#include <atomic>
#include <cerrno>
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

bool needs_quotes(std::string_view v) {
    if (v.empty()) return true;
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\') return true;
    }
    return false;
}

}  // namespace

void set_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
bool enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }
void set_fd(int fd) { g_fd.store(fd); }

void append_kv(std::string& out, std::string_view key, std::string_view value) {
    static const char hex[] = "0123456789abcdef";
    bool cut = value.size() > kMaxValue;
    if (cut) value = value.substr(0, kMaxValue);
    out.push_back(' ');
    out.append(key);
    out.push_back('=');
    if (!needs_quotes(value) && !cut) {
        out.append(value);
        return;
    }
    out.push_back('"');
    for (char ch : value) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(ch);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        } else {
            out.push_back(ch);
        }
    }
    if (cut) out += "...";
    out.push_back('"');
}

Line::Line(LogLevel level, std::string_view event) : on_(enabled(level)) {
    if (!on_) return;
    buf_.reserve(160);
    buf_ = utc_timestamp(std::chrono::system_clock::now(), true);
    buf_.push_back(' ');
    buf_ += log_level_name(level);
    append_kv(buf_, "event", event);
}

Line& Line::kv(std::string_view key, std::string_view value) {
    if (on_) append_kv(buf_, key, value);
    return *this;
}

Line& Line::kv(std::string_view key, double value) {
    if (!on_) return *this;
    char num[32];
    std::snprintf(num, sizeof num, "%.2f", value);
    return kv(key, std::string_view(num));
}

Line::~Line() {
    if (!on_) return;
    buf_.push_back('\n');
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
