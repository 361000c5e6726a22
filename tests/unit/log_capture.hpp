// Test helper: captures paygated's log lines written while it lives (include after cmocka.hpp).
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>

#include "paygated/log.hpp"

class LogCapture {
public:
    LogCapture() {
        char path[] = "/tmp/paygate_test_log_XXXXXX";
        fd_ = mkstemp(path);
        assert_true(fd_ >= 0);
        unlink(path);
        paygate::daemon::log::set_fd(fd_);
    }
    ~LogCapture() {
        paygate::daemon::log::set_fd(2);
        close(fd_);
    }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    std::string text() const {
        std::string out;
        char buf[4096];
        off_t off = 0;
        ssize_t n;
        while ((n = pread(fd_, buf, sizeof buf, off)) > 0) {
            out.append(buf, static_cast<std::size_t>(n));
            off += n;
        }
        return out;
    }
    // Polls until `needle` was logged or `limit` passed (for lines written by other threads).
    bool wait_for(const char* needle, std::chrono::milliseconds limit) const {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (text().find(needle) != std::string::npos) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }
    std::size_t count(const char* needle) const {
        std::string t = text();
        std::size_t n = 0;
        for (std::size_t pos = t.find(needle); pos != std::string::npos; pos = t.find(needle, pos + 1)) ++n;
        return n;
    }

private:
    int fd_;
};
