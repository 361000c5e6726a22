// Writes a parsed JSON value again with the same meaning but another spelling, and makes values
// of another meaning: the two sides of docs/idempotency.md's "same request?" (key order,
// whitespace, string escapes and the spelling of numbers do not matter; values do).
//
// Written from the JSON grammar (RFC 8259) on purpose, not with paygate's own writer, so a
// fault shared by the reader and the writer cannot hide.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "paygate/json.hpp"

namespace fuzz {

namespace json = paygate::json;

// A JSON number lexeme in parts: -? int (. frac)? ([eE] [+-]? exp)?
struct Lexeme {
    bool negative = false;
    std::string int_digits, frac_digits;
    bool has_exp = false, exp_negative = false;
    std::string exp_digits;
};

inline bool split_lexeme(std::string_view s, Lexeme& out) {
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    std::size_t i = 0;
    out = Lexeme{};
    if (i < s.size() && s[i] == '-') out.negative = true, ++i;
    std::size_t start = i;
    while (i < s.size() && digit(s[i])) ++i;
    out.int_digits = std::string(s.substr(start, i - start));
    if (out.int_digits.empty() || (out.int_digits.size() > 1 && out.int_digits[0] == '0')) return false;
    if (i < s.size() && s[i] == '.') {
        start = ++i;
        while (i < s.size() && digit(s[i])) ++i;
        out.frac_digits = std::string(s.substr(start, i - start));
        if (out.frac_digits.empty()) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        out.has_exp = true;
        ++i;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) out.exp_negative = s[i] == '-', ++i;
        start = i;
        while (i < s.size() && digit(s[i])) ++i;
        out.exp_digits = std::string(s.substr(start, i - start));
        if (out.exp_digits.empty()) return false;
    }
    return i == s.size();
}

class Respeller {
public:
    explicit Respeller(Rng& rng) : rng_(rng) {}

    std::string write(const json::Value& v) {
        std::string out;
        space(out);
        value(out, v);
        space(out);
        return out;
    }

    // The same number, spelled another way ("1.50" -> "15e-1", "0.150E+1", "1.5000").
    std::string number(std::string_view lexeme) {
        Lexeme p;
        FUZZ_CHECK(split_lexeme(lexeme, p), "the reader produced a number that is not a JSON lexeme");
        std::string digits = p.int_digits + p.frac_digits;
        std::size_t lead = digits.find_first_not_of('0');
        std::string_view exp = p.exp_digits;
        while (exp.size() > 1 && exp.front() == '0') exp.remove_prefix(1);
        const bool zero = lead == std::string::npos;
        std::string out = (zero ? rng_.chance(2) : p.negative) ? "-" : "";
        if (zero) {   // zero: any sign, any exponent, any number of zeros
            out += "0";
            if (rng_.chance(2)) out += "." + std::string(1 + rng_.below(3), '0');
            if (rng_.chance(2)) out += exponent(static_cast<std::int64_t>(rng_.below(2000)) - 1000);
            return out;
        }
        if (exp.size() > 15) {   // a huge exponent: keep it, pad the fraction, respell the 'e'
            out += p.int_digits + "." + p.frac_digits + std::string(1 + rng_.below(3), '0');
            std::string e = rng_.chance(2) ? "e" : "E";
            if (p.exp_negative) e += "-"; else if (rng_.chance(2)) e += "+";
            return out + e + std::string(rng_.below(3), '0') + std::string(exp);
        }
        // value = mantissa * 10^e, the mantissa without leading zeros.
        std::string mantissa = digits.substr(lead);
        std::int64_t e = 0;
        for (char c : exp) e = e * 10 + (c - '0');
        if (p.exp_negative) e = -e;
        e -= static_cast<std::int64_t>(p.frac_digits.size());
        std::size_t zeros = rng_.below(4);   // trailing zeros change nothing
        mantissa.append(zeros, '0');
        e -= static_cast<std::int64_t>(zeros);
        const auto len = static_cast<std::int64_t>(mantissa.size());
        switch (rng_.below(3)) {
            case 0:   // integer mantissa: 150e-2
                out += mantissa;
                if (e != 0 || rng_.chance(2)) out += exponent(e);
                break;
            case 1: {   // 0.00150e1
                std::size_t z = rng_.below(3);
                out += "0." + std::string(z, '0') + mantissa + exponent(e + len + static_cast<std::int64_t>(z));
                break;
            }
            default: {   // a point inside the mantissa: 1.50e0, or plain 1.50 when the exponent is 0
                if (len < 2) {
                    out += mantissa + ".0" + exponent(e);
                    break;
                }
                std::size_t at = 1 + rng_.below(mantissa.size() - 1);
                std::int64_t shifted = e + len - static_cast<std::int64_t>(at);
                out += mantissa.substr(0, at) + "." + mantissa.substr(at);
                if (shifted != 0 || rng_.chance(2)) out += exponent(shifted);
            }
        }
        return out;
    }

    // Another spelling of the same text: raw, short escapes, \u escapes (surrogate pairs above
    // the BMP), either hex case.
    std::string string(std::string_view text) {
        std::string out = "\"";
        for (std::size_t i = 0; i < text.size();) {
            std::uint32_t cp = 0;
            std::size_t len = decode_utf8(text, i, cp);
            FUZZ_CHECK(len != 0, "the reader produced a string that is not UTF-8");
            if (cp == '"' || cp == '\\' || cp < 0x20 || rng_.chance(4)) {
                const char* short_form = short_escape(cp);
                if (short_form != nullptr && rng_.chance(2)) {
                    out += short_form;
                } else if (cp >= 0x10000) {
                    std::uint32_t v = cp - 0x10000;
                    hex4(out, 0xd800 + (v >> 10));
                    hex4(out, 0xdc00 + (v & 0x3ff));
                } else {
                    hex4(out, cp);
                }
            } else if (cp == '/' && rng_.chance(2)) {
                out += "\\/";
            } else {
                out.append(text.substr(i, len));
            }
            i += len;
        }
        return out + "\"";
    }

private:
    void space(std::string& out) {
        static const char* const kSpaces[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
        out += kSpaces[rng_.below(sizeof kSpaces / sizeof kSpaces[0])];
    }

    std::string exponent(std::int64_t e) {
        std::string out = rng_.chance(2) ? "e" : "E";
        if (e < 0) {
            out += "-";
        } else if (rng_.chance(2)) {
            out += "+";
        }
        out.append(rng_.below(3), '0');
        std::uint64_t mag = e < 0 ? static_cast<std::uint64_t>(-(e + 1)) + 1 : static_cast<std::uint64_t>(e);
        return out + std::to_string(mag);
    }

    static const char* short_escape(std::uint32_t cp) {
        switch (cp) {
            case '"': return "\\\"";
            case '\\': return "\\\\";
            case '\b': return "\\b";
            case '\f': return "\\f";
            case '\n': return "\\n";
            case '\r': return "\\r";
            case '\t': return "\\t";
            default: return nullptr;
        }
    }

    void hex4(std::string& out, std::uint32_t v) {
        const char* digits = rng_.chance(2) ? "0123456789abcdef" : "0123456789ABCDEF";
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out.push_back(digits[(v >> shift) & 0xf]);
    }

    // Well-formed UTF-8 only (the reader guarantees it); 0 otherwise.
    static std::size_t decode_utf8(std::string_view s, std::size_t i, std::uint32_t& cp) {
        auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
        unsigned char c = b(i);
        std::size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        if (len == 0 || i + len > s.size()) return 0;
        cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
        for (std::size_t k = 1; k < len; ++k) {
            if ((b(i + k) & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (b(i + k) & 0x3f);
        }
        return len;
    }

    void value(std::string& out, const json::Value& v) {
        switch (v.type()) {
            case json::Type::Null: out += "null"; break;
            case json::Type::Bool: out += v.boolean() ? "true" : "false"; break;
            case json::Type::Number: out += number(v.text()); break;
            case json::Type::String: out += string(v.text()); break;
            case json::Type::Array: {
                out += "[";
                space(out);
                for (std::size_t k = 0; k < v.items().size(); ++k) {
                    if (k != 0) out += ",", space(out);
                    value(out, v.items()[k]);
                    space(out);
                }
                out += "]";
                break;
            }
            case json::Type::Object: {
                std::vector<const std::pair<std::string, json::Value>*> members;
                for (const auto& m : v.members()) members.push_back(&m);
                for (std::size_t k = members.size(); k > 1; --k) std::swap(members[k - 1], members[rng_.below(k)]);
                out += "{";
                space(out);
                for (std::size_t k = 0; k < members.size(); ++k) {
                    if (k != 0) out += ",", space(out);
                    out += string(members[k]->first);
                    space(out);
                    out += ":";
                    space(out);
                    value(out, members[k]->second);
                    space(out);
                }
                out += "}";
                break;
            }
        }
    }

    Rng& rng_;
};

// Leaves whose meaning change_leaf() can change: scalars, empty arrays and objects. The
// top-level idempotency_token is left out (it is the key's scope, not the request).
inline std::size_t count_leaves(const json::Value& v, bool top = true) {
    switch (v.type()) {
        case json::Type::Array: {
            std::size_t n = v.items().empty() ? 1 : 0;
            for (const auto& item : v.items()) n += count_leaves(item, false);
            return n;
        }
        case json::Type::Object: {
            std::size_t n = v.members().empty() ? 1 : 0;
            for (const auto& [key, value] : v.members()) {
                if (!(top && key == "idempotency_token")) n += count_leaves(value, false);
            }
            return n;
        }
        default: return 1;
    }
}

// A copy of `v` with leaf number `k` (count_leaves order) given another value: a number gains a
// leading digit 1 (5 -> 15, 0.5 -> 10.5, -0 -> -10), a string a trailing "x", a boolean flips,
// null becomes 0, an empty container gets one null.
inline json::Value change_leaf(const json::Value& v, std::size_t& k, bool top = true) {
    switch (v.type()) {
        case json::Type::Array: {
            if (v.items().empty()) {
                if (k-- == 0) return json::Value::array({json::Value::null()});
                return v;
            }
            std::vector<json::Value> items;
            for (const auto& item : v.items()) items.push_back(change_leaf(item, k, false));
            return json::Value::array(std::move(items));
        }
        case json::Type::Object: {
            if (v.members().empty()) {
                if (k-- == 0) return json::Value::object({{"k", json::Value::null()}});
                return v;
            }
            std::vector<std::pair<std::string, json::Value>> members;
            for (const auto& [key, value] : v.members()) {
                if (top && key == "idempotency_token") {
                    members.emplace_back(key, value);
                } else {
                    members.emplace_back(key, change_leaf(value, k, false));
                }
            }
            return json::Value::object(std::move(members));
        }
        default: break;
    }
    if (k-- != 0) return v;
    switch (v.type()) {
        case json::Type::Null: return json::Value::number("0");
        case json::Type::Bool: return json::Value::from_bool(!v.boolean());
        case json::Type::String: return json::Value::string(v.text() + "x");
        default: {
            std::string lexeme = v.text();
            lexeme.insert(lexeme[0] == '-' ? 1 : 0, "1");
            return json::Value::number(lexeme);
        }
    }
}

}  // namespace fuzz
