#include "paygated/front_guard.hpp"

#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

#include <zmq_addon.hpp>

namespace paygate::daemon {

namespace {

// libzmq asks the ZAP handler bound here (RFC 27) about every CURVE peer of the context.
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kFrontMonitorEndpoint = "inproc://paygated-front-monitor";

}  // namespace

FrontGuard::FrontGuard(zmq::context_t& ctx, std::unique_ptr<LinkAuth> auth) : ctx_(ctx), auth_(std::move(auth)) {}

bool FrontGuard::attach(zmq::socket_t& front, std::string& failed_endpoint, std::string& error) {
    monitor_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
    monitor_.set(zmq::sockopt::linger, 0);
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(front.handle(), kFrontMonitorEndpoint, events) != 0) {
        failed_endpoint = "monitor";
        error = zmq_strerror(zmq_errno());
        return false;
    }
    monitor_.connect(kFrontMonitorEndpoint);
    if (!auth_) return true;
    zap_ = zmq::socket_t(ctx_, zmq::socket_type::rep);
    zap_.set(zmq::sockopt::linger, 0);
    try {
        zap_.bind(kZapEndpoint);
    } catch (const zmq::error_t& e) {
        failed_endpoint = kZapEndpoint;
        error = e.what();
        return false;
    }
    front.set(zmq::sockopt::curve_server, 1);
    front.set(zmq::sockopt::curve_secretkey, auth_->keys().secret_key);
    front.set(zmq::sockopt::zap_domain, curve::kZapDomain);
    return true;
}

void FrontGuard::on_zap() {
    if (!auth_) return;
    std::vector<zmq::message_t> msg;
    for (;;) {
        msg.clear();
        if (!zmq::recv_multipart(zap_, std::back_inserter(msg), zmq::recv_flags::dontwait)) return;
        std::vector<std::string> frames;
        for (const zmq::message_t& m : msg) frames.push_back(m.to_string());
        std::vector<std::string> reply = auth_->on_zap_request(frames, LinkAuth::Clock::now());
        for (std::size_t i = 0; i < reply.size(); ++i) {
            zap_.send(zmq::buffer(reply[i]), i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        }
    }
}

void FrontGuard::on_monitor() {
    std::vector<zmq::message_t> msg;
    for (;;) {
        msg.clear();
        if (!zmq::recv_multipart(monitor_, std::back_inserter(msg), zmq::recv_flags::dontwait)) return;
        if (msg.size() != 2 || msg[0].size() < 6) continue;
        std::uint16_t event = 0;
        std::uint32_t value = 0;
        std::memcpy(&event, msg[0].data(), sizeof event);
        std::memcpy(&value, static_cast<const char*>(msg[0].data()) + 2, sizeof value);
        LinkAuth::on_handshake_failed(event, value, msg[1].to_string(), handshake_log_, LinkAuth::Clock::now());
    }
}

void FrontGuard::close() {
    monitor_.close();
    if (auth_) zap_.close();
}

}  // namespace paygate::daemon
