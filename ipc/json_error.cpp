// The {"code","message"} error body shared by the module and the daemon.
#include "paygate/json_error.hpp"

#include "paygate/json.hpp"

namespace paygate::ipc {

void append_json_string(std::string& out, std::string_view text) { json::append_string(out, text); }

std::string json_error(std::string_view code, std::string_view message) {
    std::string out;
    out.reserve(32 + code.size() + message.size());
    out += "{\"code\":";
    append_json_string(out, code);
    out += ",\"message\":";
    append_json_string(out, message);
    out += '}';
    return out;
}

Reply error_reply(std::uint64_t id, std::uint16_t status, std::string_view code, std::string_view message) {
    Reply reply;
    reply.id = id;
    reply.status = status;
    reply.headers.emplace_back("content-type", "application/json");
    reply.body = json_error(code, message);
    return reply;
}

std::string_view not_executed_name(NotExecuted why) {
    return why == NotExecuted::Draining ? "draining" : "overloaded";
}

Reply not_executed_reply(std::uint64_t id, NotExecuted why) {
    Reply reply = why == NotExecuted::Draining
                      ? error_reply(id, 503, "service_unavailable", "the payment core is restarting; retry")
                      : error_reply(id, 503, "overloaded", "the payment core is overloaded; retry later");
    reply.headers.emplace_back(kNotExecutedHeader, not_executed_name(why));
    return reply;
}

}  // namespace paygate::ipc
