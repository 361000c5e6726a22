// The strict JSON reader (numbers kept as written) and the Value it builds.
#include <cstdint>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include "json_internal.hpp"
#include "paygate/json.hpp"

namespace paygate::json {

namespace {

using detail::is_digit;
using detail::NumberParts;
using detail::scan_number;
using detail::utf8_sequence;

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
}

// A key for an error message: at most 64 bytes, cut on a UTF-8 boundary.
std::string quote_key(std::string_view key) {
    constexpr std::size_t kMax = 64;
    std::string out = "\"";
    if (key.size() <= kMax) {
        out.append(key);
    } else {
        std::size_t cut = kMax;
        while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xc0) == 0x80) --cut;
        out.append(key.substr(0, cut));
        out += "...";
    }
    out += '"';
    return out;
}

// ---- the parser -----------------------------------------------------------------------------

class Parser {
public:
    Parser(std::string_view text, const ParseLimits& limits, ParseError& error)
        : text_(text), limits_(limits), error_(error) {}

    bool run(Value& out);

private:
    struct Frame {
        bool is_object = false;
        std::vector<Value> items;
        std::vector<std::pair<std::string, Value>> members;
        std::string key;                          // the member whose value is being parsed
        std::unordered_set<std::string> seen;     // keys, once the object is large enough
    };

    bool fail(std::size_t offset, std::string message) {
        error_.offset = offset;
        error_.message = std::move(message);
        return false;
    }
    bool fail_unexpected(std::size_t offset) {
        if (offset >= text_.size()) return fail(text_.size(), "unexpected end of input");
        auto c = static_cast<unsigned char>(text_[offset]);
        if (c >= 0x21 && c < 0x7f) return fail(offset, std::string("unexpected character '") + text_[offset] + "'");
        static const char hex[] = "0123456789abcdef";
        std::string msg = "unexpected byte 0x";
        msg.push_back(hex[c >> 4]);
        msg.push_back(hex[c & 0xf]);
        return fail(offset, msg);
    }

    void skip_ws() {
        while (pos_ < text_.size()) {
            char c = text_[pos_];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
            ++pos_;
        }
    }
    bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

    bool parse_string(std::string& out);
    bool parse_hex4(std::size_t at, std::uint32_t& out);
    bool parse_literal(std::string_view word, Value&& value, Value& out);
    bool parse_key(Frame& frame);
    bool add_member(Frame& frame, Value&& value);

    std::string_view text_;
    const ParseLimits& limits_;
    ParseError& error_;
    std::size_t pos_ = 0;
};

bool Parser::parse_hex4(std::size_t at, std::uint32_t& out) {
    out = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        if (at + k >= text_.size()) return fail(text_.size(), "unexpected end of input in \\u escape");
        char c = text_[at + k];
        std::uint32_t v;
        if (c >= '0' && c <= '9') {
            v = static_cast<std::uint32_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = static_cast<std::uint32_t>(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v = static_cast<std::uint32_t>(c - 'A' + 10);
        } else {
            return fail(at + k, "invalid hex digit in \\u escape");
        }
        out = out * 16 + v;
    }
    return true;
}

// At an opening quote; leaves pos_ past the closing one.
bool Parser::parse_string(std::string& out) {
    const std::size_t start = pos_;
    ++pos_;
    out.clear();
    while (true) {
        if (pos_ >= text_.size()) return fail(text_.size(), "unterminated string");
        if (out.size() > limits_.max_string_bytes) {
            return fail(start, "string longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
        }
        auto c = static_cast<unsigned char>(text_[pos_]);
        if (c == '"') {
            ++pos_;
            break;
        }
        if (c < 0x20) return fail(pos_, "control character in string (must be escaped)");
        if (c == '\\') {
            const std::size_t esc = pos_;
            if (pos_ + 1 >= text_.size()) return fail(text_.size(), "unterminated string");
            char e = text_[pos_ + 1];
            pos_ += 2;
            switch (e) {
                case '"': out.push_back('"'); break;
                case '\\': out.push_back('\\'); break;
                case '/': out.push_back('/'); break;
                case 'b': out.push_back('\b'); break;
                case 'f': out.push_back('\f'); break;
                case 'n': out.push_back('\n'); break;
                case 'r': out.push_back('\r'); break;
                case 't': out.push_back('\t'); break;
                case 'u': {
                    std::uint32_t cp;
                    if (!parse_hex4(pos_, cp)) return false;
                    pos_ += 4;
                    if (cp >= 0xdc00 && cp <= 0xdfff) return fail(esc, "lone low surrogate in \\u escape");
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (pos_ + 1 >= text_.size() || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
                            return fail(esc, "high surrogate not followed by a low surrogate escape");
                        }
                        std::uint32_t lo;
                        if (!parse_hex4(pos_ + 2, lo)) return false;
                        if (lo < 0xdc00 || lo > 0xdfff) {
                            return fail(esc, "high surrogate not followed by a low surrogate escape");
                        }
                        pos_ += 6;
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    return fail(esc, "invalid escape in string");
            }
            continue;
        }
        std::size_t len = utf8_sequence(text_, pos_);
        if (len == 0) return fail(pos_, "invalid UTF-8 in string");
        out.append(text_.data() + pos_, len);
        pos_ += len;
    }
    if (out.size() > limits_.max_string_bytes) {
        return fail(start, "string longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    }
    return true;
}

bool Parser::parse_literal(std::string_view word, Value&& value, Value& out) {
    if (text_.substr(pos_, word.size()) != word) {
        return fail(pos_, "invalid literal (expected a value: object, array, string, number, true, false or null)");
    }
    pos_ += word.size();
    out = std::move(value);
    return true;
}

// At the key of an object member (after '{' or ','): reads "key" and ':'.
bool Parser::parse_key(Frame& frame) {
    skip_ws();
    if (!at('"')) {
        if (at('}')) return fail(pos_, "trailing comma in object");
        if (pos_ >= text_.size()) return fail_unexpected(pos_);
        return fail(pos_, "expected a string key in object");
    }
    const std::size_t key_at = pos_;
    if (!parse_string(frame.key)) return false;
    bool duplicate = false;
    if (frame.members.size() < 16) {
        for (const auto& m : frame.members) {
            if (m.first == frame.key) {
                duplicate = true;
                break;
            }
        }
    } else {
        if (frame.seen.empty()) {
            for (const auto& m : frame.members) frame.seen.insert(m.first);
        }
        duplicate = frame.seen.count(frame.key) != 0;
    }
    if (duplicate) return fail(key_at, "duplicate key " + quote_key(frame.key));
    skip_ws();
    if (!at(':')) {
        if (pos_ >= text_.size()) return fail_unexpected(pos_);
        return fail(pos_, "expected ':' after object key");
    }
    ++pos_;
    return true;
}

bool Parser::add_member(Frame& frame, Value&& value) {
    if (!frame.seen.empty()) frame.seen.insert(frame.key);
    frame.members.emplace_back(std::move(frame.key), std::move(value));
    frame.key.clear();
    return true;
}

bool Parser::run(Value& out) {
    std::vector<Frame> stack;
    Value value;
    while (true) {
        // Parse the start of one value; containers push a frame and continue with their first child.
        skip_ws();
        if (pos_ >= text_.size()) return fail_unexpected(pos_);
        char c = text_[pos_];
        bool have_value = true;
        if (c == '{' || c == '[') {
            if (stack.size() >= limits_.max_depth) {
                return fail(pos_, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
            }
            ++pos_;
            stack.emplace_back();
            Frame& frame = stack.back();
            frame.is_object = c == '{';
            skip_ws();
            if (at(frame.is_object ? '}' : ']')) {
                ++pos_;
                value = frame.is_object ? Value::object({}) : Value::array({});
                stack.pop_back();
            } else if (frame.is_object) {
                if (!parse_key(frame)) return false;
                have_value = false;
            } else {
                have_value = false;
            }
        } else if (c == '"') {
            std::string s;
            if (!parse_string(s)) return false;
            value = Value::string(std::move(s));
        } else if (c == '-' || is_digit(c)) {
            NumberParts parts;
            std::size_t end = 0;
            const char* why = nullptr;
            if (!scan_number(text_, pos_, parts, end, why)) return fail(end, why);
            value = Value::number(std::string(text_.substr(pos_, end - pos_)));
            pos_ = end;
        } else if (c == 't') {
            if (!parse_literal("true", Value::from_bool(true), value)) return false;
        } else if (c == 'f') {
            if (!parse_literal("false", Value::from_bool(false), value)) return false;
        } else if (c == 'n') {
            if (!parse_literal("null", Value::null(), value)) return false;
        } else if (c == ']' && !stack.empty() && !stack.back().is_object) {
            return fail(pos_, "trailing comma in array");
        } else {
            return fail_unexpected(pos_);
        }
        if (!have_value) continue;

        // Hand the finished value to its parent; close every container that ends here.
        while (true) {
            if (stack.empty()) {
                skip_ws();
                if (pos_ != text_.size()) return fail(pos_, "unexpected data after the JSON value");
                out = std::move(value);
                return true;
            }
            Frame& frame = stack.back();
            if (frame.is_object) {
                add_member(frame, std::move(value));
            } else {
                frame.items.push_back(std::move(value));
            }
            skip_ws();
            const char close = frame.is_object ? '}' : ']';
            if (at(',')) {
                ++pos_;
                if (frame.is_object && !parse_key(frame)) return false;
                break;   // parse the next child
            }
            if (at(close)) {
                ++pos_;
                value = frame.is_object ? Value::object(std::move(frame.members)) : Value::array(std::move(frame.items));
                stack.pop_back();
                continue;
            }
            if (pos_ >= text_.size()) return fail_unexpected(pos_);
            return fail(pos_, frame.is_object ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
        }
    }
}

}  // namespace

std::string_view type_name(Type t) {
    switch (t) {
        case Type::Null: return "null";
        case Type::Bool: return "boolean";
        case Type::Number: return "number";
        case Type::String: return "string";
        case Type::Array: return "array";
        case Type::Object: return "object";
    }
    return "unknown";
}

const Value* Value::find(std::string_view key) const {
    if (type_ != Type::Object) return nullptr;
    for (const auto& m : members_) {
        if (m.first == key) return &m.second;
    }
    return nullptr;
}

Value Value::null() { return Value(); }

Value Value::from_bool(bool b) {
    Value v;
    v.type_ = Type::Bool;
    v.boolean_ = b;
    return v;
}

Value Value::number(std::string lexeme) {
    if (!is_number_lexeme(lexeme)) throw std::invalid_argument("json::Value::number: not a JSON number lexeme");
    Value v;
    v.type_ = Type::Number;
    v.text_ = std::move(lexeme);
    return v;
}

Value Value::string(std::string text) {
    Value v;
    v.type_ = Type::String;
    v.text_ = std::move(text);
    return v;
}

Value Value::array(std::vector<Value> items) {
    Value v;
    v.type_ = Type::Array;
    v.items_ = std::move(items);
    return v;
}

Value Value::object(std::vector<std::pair<std::string, Value>> members) {
    Value v;
    v.type_ = Type::Object;
    v.members_ = std::move(members);
    return v;
}

bool parse(std::string_view text, Value& out, ParseError& error, const ParseLimits& limits) {
    error = ParseError{};
    Parser parser(text, limits, error);
    return parser.run(out);
}

}  // namespace paygate::json
