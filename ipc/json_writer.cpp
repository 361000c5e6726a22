// The JSON writers: string escaping, the canonical form (idempotency hashes) and the compact
// form (replies).
#include <algorithm>
#include <string>
#include <vector>

#include "json_internal.hpp"
#include "paygate/json.hpp"

namespace paygate::json {

namespace detail {

// Length of the well-formed UTF-8 sequence at text[i] (1 for ASCII), or 0 if it is not one:
// no overlong forms, no surrogates, nothing above U+10FFFF.
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    if (c < 0x80) return 1;
    std::size_t len;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
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

}  // namespace detail

using detail::utf8_sequence;

void append_string(std::string& out, std::string_view text) {
    static const char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (std::size_t i = 0; i < text.size();) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80) {
            std::size_t len = utf8_sequence(text, i);
            if (len == 0) {
                out += "\xef\xbf\xbd";
                ++i;
            } else {
                out.append(text.data() + i, len);
                i += len;
            }
            continue;
        }
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out.push_back(hex[c >> 4]);
                    out.push_back(hex[c & 0xf]);
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
        ++i;
    }
    out.push_back('"');
}

namespace {

void write(std::string& out, const Value& v, bool canonical_form) {
    switch (v.type()) {
        case Type::Null: out += "null"; break;
        case Type::Bool: out += v.boolean() ? "true" : "false"; break;
        case Type::Number: out += canonical_form ? canonical_number(v.text()) : v.text(); break;
        case Type::String: append_string(out, v.text()); break;
        case Type::Array: {
            out.push_back('[');
            bool first = true;
            for (const Value& item : v.items()) {
                if (!first) out.push_back(',');
                first = false;
                write(out, item, canonical_form);
            }
            out.push_back(']');
            break;
        }
        case Type::Object: {
            out.push_back('{');
            std::vector<const std::pair<std::string, Value>*> members;
            members.reserve(v.members().size());
            for (const auto& m : v.members()) members.push_back(&m);
            if (canonical_form) {
                // std::string compares with char_traits<char>, which orders bytes as unsigned char.
                std::sort(members.begin(), members.end(),
                          [](const auto* a, const auto* b) { return a->first < b->first; });
            }
            bool first = true;
            for (const auto* m : members) {
                if (!first) out.push_back(',');
                first = false;
                append_string(out, m->first);
                out.push_back(':');
                write(out, m->second, canonical_form);
            }
            out.push_back('}');
            break;
        }
    }
}

}  // namespace

std::string canonical(const Value& value) {
    std::string out;
    write(out, value, true);
    return out;
}

std::string serialize(const Value& value) {
    std::string out;
    write(out, value, false);
    return out;
}

}  // namespace paygate::json
