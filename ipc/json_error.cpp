// The {"code","message"} error body shared by the module and the daemon.
#include "paygate/json_error.hpp"

namespace paygate::ipc {

void append_json_string(std::string& out, std::string_view text) {
    static const char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out.push_back(hex[c >> 4]);
                    out.push_back(hex[c & 0xf]);
                } else {
                    out.push_back(ch);
                }
        }
    }
    out.push_back('"');
}

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

}  // namespace paygate::ipc
