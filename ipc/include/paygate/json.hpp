// A strict JSON (RFC 8259) reader that keeps numbers exactly as written, and a canonical writer.
//
// Why not jansson here: jansson turns every number into a double, which loses money
// ("0.1" + "0.2"), and cannot tell "1.0" from "1.00000000000000001". Money and idempotency hashing
// need the number's text. jansson stays for building replies in the daemon.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace paygate::json {

enum class Type { Null, Bool, Number, String, Array, Object };

std::string_view type_name(Type t);   // "null", "boolean", "number", "string", "array", "object"

class Value {
public:
    Type type() const { return type_; }
    bool is(Type t) const { return type_ == t; }

    bool boolean() const { return boolean_; }
    // Number: its lexeme as written ("-1.50e3"); String: the decoded UTF-8 text.
    const std::string& text() const { return text_; }
    const std::vector<Value>& items() const { return items_; }
    // Object members in document order (keys are unique: duplicates are a parse error).
    const std::vector<std::pair<std::string, Value>>& members() const { return members_; }
    // Member by key, or nullptr (also for non-objects).
    const Value* find(std::string_view key) const;

    // Builders (for tests and replies).
    static Value null();
    static Value from_bool(bool b);
    static Value number(std::string lexeme);   // must be a valid JSON number lexeme
    static Value string(std::string text);
    static Value array(std::vector<Value> items);
    static Value object(std::vector<std::pair<std::string, Value>> members);

private:
    Type type_ = Type::Null;
    bool boolean_ = false;
    std::string text_;
    std::vector<Value> items_;
    std::vector<std::pair<std::string, Value>> members_;
};

struct ParseLimits {
    std::size_t max_depth = 32;
    std::size_t max_string_bytes = 64 * 1024;
};

struct ParseError {
    std::size_t offset = 0;     // byte offset of the problem
    std::string message;        // e.g. "duplicate key \"amount\"", "invalid UTF-8 in string"
};

// Parses exactly one JSON value with optional surrounding whitespace. Rejects: trailing data,
// invalid UTF-8 (also in escapes: lone surrogates), control characters in strings, leading zeros,
// "NaN"/"Infinity", duplicate object keys, nesting deeper than max_depth. Never throws on bad
// input (only std::bad_alloc).
bool parse(std::string_view text, Value& out, ParseError& error, const ParseLimits& limits = {});

// Canonical form: no whitespace, object keys sorted by their UTF-8 bytes, strings escaped
// minimally (only '"', '\\' and control characters, as \uXXXX except \b \f \n \r \t), numbers
// normalized exactly (see canonical_number). Two documents with the same data have the same
// canonical form, whatever their key order, whitespace or escapes.
std::string canonical(const Value& value);

// Exact normalization of a number lexeme: "1.50" -> "1.5", "15e-1" -> "1.5", "-0.0" -> "0",
// "1E+2" -> "100", "1e30" -> "1e30"... Equal decimal values give equal strings. Rule: sign,
// then the shortest digits with no trailing zeros and an exponent when that is shorter
// (exactly: the digits and a base-10 exponent, printed as plain decimal when |exponent| <= 20).
std::string canonical_number(std::string_view lexeme);

// True when `lexeme` is exactly one JSON number (RFC 8259 grammar, nothing around it).
// canonical_number() returns anything else unchanged; Value::number() throws
// std::invalid_argument for it.
bool is_number_lexeme(std::string_view lexeme);

// Appends `text` as a JSON string literal with the minimal escaping of the canonical form (only
// '"', '\\' and control characters); bytes that are not well-formed UTF-8 become U+FFFD.
void append_string(std::string& out, std::string_view text);

// Serializes compactly in document order (not canonical) — for replies built from Values.
std::string serialize(const Value& value);

}  // namespace paygate::json
