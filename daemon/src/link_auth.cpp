// CURVE keys, allow list and ZAP answers of the front end (see link_auth.hpp).
#include "paygated/link_auth.hpp"

#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <zmq.h>

#include "paygated/log.hpp"

namespace paygate::daemon {

namespace {

constexpr auto kReloadCheckInterval = std::chrono::seconds(1);

bool stamp_of(const std::string& path, dev_t& dev, ino_t& ino, off_t& size, std::int64_t& mtime_ns) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    dev = st.st_dev;
    ino = st.st_ino;
    size = st.st_size;
    mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return true;
}

std::string protocol_reason(std::uint32_t value) {
    switch (value) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "cryptographic error: the peer does not use this daemon's public key";
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "security mechanism mismatch: the peer does not speak CURVE, or this daemon does not";
        default: {
            char hex[16];
            std::snprintf(hex, sizeof hex, "0x%08x", value);
            return std::string("protocol error ") + hex;
        }
    }
}

}  // namespace

std::unique_ptr<LinkAuth> LinkAuth::load(const Config& config, std::string& error) {
    if (!curve::available()) {
        error = "libzmq has no CURVE support (built without libsodium): the link cannot be authenticated";
        return nullptr;
    }
    std::unique_ptr<LinkAuth> auth(new LinkAuth(config));
    if (!curve::load_secret_key(config.curve_secret_key, auth->keys_, error)) {
        error = "curve_secret_key " + error;
        return nullptr;
    }
    FileStamp stamp;
    stamp_of(config.curve_allowed_keys, stamp.dev, stamp.ino, stamp.size, stamp.mtime_ns);
    std::vector<curve::NamedKey> keys;
    if (!curve::load_public_keys(config.curve_allowed_keys, keys, error)) {
        error = "curve_allowed_keys " + error;
        return nullptr;
    }
    auth->allowed_ = curve::AllowList(keys);
    auth->stamp_ = stamp;
    return auth;
}

void LinkAuth::maybe_reload(Clock::time_point now) {
    if (now - last_check_ < kReloadCheckInterval) return;
    last_check_ = now;
    FileStamp stamp;
    if (!stamp_of(allowed_path_, stamp.dev, stamp.ino, stamp.size, stamp.mtime_ns) || stamp == stamp_) return;
    std::vector<curve::NamedKey> keys;
    std::string error;
    if (!curve::load_public_keys(allowed_path_, keys, error)) {
        // Keep serving with the list we have; the operator has to fix the file.
        log::error("curve_allowed_keys_reload_failed").kv("error", error).kv("kept_keys", allowed_.size());
        stamp_ = stamp;   // once per change, not once a second
        return;
    }
    allowed_ = curve::AllowList(keys);
    stamp_ = stamp;
    log::info("curve_allowed_keys_reloaded").kv("file", allowed_path_).kv("keys", allowed_.size());
}

std::vector<std::string> LinkAuth::on_zap_request(const std::vector<std::string>& frames, Clock::time_point now) {
    curve::ZapRequest request;
    std::string error;
    if (!curve::parse_zap_request(frames, request, error)) {
        log::warn("zap_bad_request").kv("error", error);
        request.version = "1.0";
        request.request_id = frames.size() > 1 ? frames[1] : "";
        curve::ZapDecision d;
        d.status_code = "500";
        d.status_text = "malformed ZAP request";
        return curve::zap_reply(request, d);
    }
    maybe_reload(now);
    curve::ZapDecision d = curve::decide(request, allowed_);
    if (d.allowed) {
        log::debug("curve_accepted").kv("public_key", d.client_key).kv("name", d.name).kv("address", request.address);
    } else {
        unsigned long suppressed = 0;
        // Once per key and source address per interval: a refused module retries every second.
        std::string key = (d.client_key.empty() ? request.mechanism : d.client_key) + " " + request.address;
        if (refusals_.should_log(key, now, suppressed)) {
            log::Line line = log::warn("curve_refused");
            line.kv("public_key", d.client_key.empty() ? "-" : d.client_key)
                .kv("address", request.address.empty() ? "-" : request.address)
                .kv("reason", d.status_text);
            if (suppressed > 0) line.kv("refused_since_last", suppressed);
        }
    }
    return curve::zap_reply(request, d);
}

void LinkAuth::on_handshake_failed(std::uint16_t event, std::uint32_t value, const std::string& endpoint,
                                   curve::LogThrottle& throttle, Clock::time_point now) {
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) return;   // a ZAP refusal: logged as curve_refused
    // A protocol error is a peer with the wrong mechanism or keys: a warning. A connection closed
    // mid-handshake is often the same peer (a plain client may hang up first when it sees that
    // the mechanisms differ), but also a port probe or a peer that went away: info.
    bool protocol = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL;
    std::string reason = protocol ? protocol_reason(value)
                                  : std::string("connection closed during the handshake: ") +
                                        std::strerror(static_cast<int>(value));
    unsigned long suppressed = 0;
    if (!throttle.should_log(endpoint + " " + reason, now, suppressed)) return;
    log::Line line(protocol ? LogLevel::Warn : LogLevel::Info, "link_handshake_failed");
    line.kv("endpoint", endpoint).kv("reason", reason);
    if (suppressed > 0) line.kv("failed_since_last", suppressed);
}

}  // namespace paygate::daemon
