// The daemon's side of the authenticated link to nginx (CURVE + ZAP, docs/security.md): its key
// pair, the allow list of module keys (re-read when its file changes), the ZAP handler's answers
// and the log lines about refused peers. No sockets: the broker feeds it frames and events.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "paygate/curve.hpp"
#include "paygated/config.hpp"

namespace paygate::daemon {

class LinkAuth {
public:
    using Clock = std::chrono::steady_clock;

    // Loads the key pair and the allow list named by `config` (config.curve must be on).
    // Null with `error` set when a file is missing, unreadable, too open or malformed.
    static std::unique_ptr<LinkAuth> load(const Config& config, std::string& error);

    const curve::KeyPair& keys() const { return keys_; }
    std::size_t allowed_count() const { return allowed_.size(); }

    // Answers one ZAP request (its frames) and logs the outcome: a refused key is a warning
    // (curve_refused, throttled per key and address), an allowed one a debug line. The allow list is re-read
    // first when its file changed (checked at most once a second).
    std::vector<std::string> on_zap_request(const std::vector<std::string>& frames, Clock::time_point now);

    // A ZMQ_EVENT_HANDSHAKE_FAILED_* event of the front end: logged (link_handshake_failed,
    // throttled per reason) unless it is a ZAP refusal, which on_zap_request logged already.
    static void on_handshake_failed(std::uint16_t event, std::uint32_t value, const std::string& endpoint,
                                    curve::LogThrottle& throttle, Clock::time_point now);

private:
    LinkAuth(const Config& config) : allowed_path_(config.curve_allowed_keys) {}
    void maybe_reload(Clock::time_point now);

    curve::KeyPair keys_;
    std::string allowed_path_;
    curve::AllowList allowed_;
    // What the allow list file looked like when it was read: a change means re-read it.
    struct FileStamp {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        std::int64_t mtime_ns = 0;
        bool operator==(const FileStamp& o) const {
            return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns;
        }
    } stamp_;
    Clock::time_point last_check_{};
    curve::LogThrottle refusals_{std::chrono::seconds(10)};
};

}  // namespace paygate::daemon
