// The {"code","message"} error body shared by the module and the daemon.
#include "paygate/json_error.hpp"

namespace paygate::ipc {

namespace {

// Length of the well-formed UTF-8 sequence starting at text[i], or 0 if it is not one.
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    std::size_t len;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;       // no overlong forms
        if (c == 0xed) hi = 0x9f;       // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;       // nothing above U+10FFFF
    } else {
        return 0;
    }
    if (i + len > text.size()) return 0;
    if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < len; ++k) {
        if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
    }
    return len;
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
    static const char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (std::size_t i = 0; i < text.size(); ++i) {
        char ch = text[i];
        auto c = static_cast<unsigned char>(ch);
        if (c >= 0x80) {
            // Text may carry client bytes: keep valid UTF-8, replace the rest so the JSON stays valid.
            std::size_t len = utf8_sequence(text, i);
            if (len == 0) {
                out += "\\ufffd";
            } else {
                out.append(text.data() + i, len);
                i += len - 1;
            }
            continue;
        }
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
