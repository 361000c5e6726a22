// Pieces of the JSON reader, writer and number code shared between their files (not API).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace paygate::json::detail {

// The parts of a JSON number lexeme: -? int (. frac)? ([eE] [+-]? exp)?
struct NumberParts {
    bool negative = false;
    std::string_view int_digits;
    std::string_view frac_digits;
    bool exp_negative = false;
    std::string_view exp_digits;   // empty when there is no exponent
};

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Scans a number starting at text[pos]. On success sets `end` past it; on failure sets `end` to
// the offending byte and `why` to the reason. Never reads past the end of `text`.
bool scan_number(std::string_view text, std::size_t pos, NumberParts& parts, std::size_t& end, const char*& why);

// True (with `parts`) when `lexeme` is exactly one JSON number.
bool split_number(std::string_view lexeme, NumberParts& parts);

// Length of the well-formed UTF-8 sequence at text[i] (1 for ASCII), or 0 if it is not one.
std::size_t utf8_sequence(std::string_view text, std::size_t i);

}  // namespace paygate::json::detail
